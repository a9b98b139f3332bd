"""Pages open outside a clone: the study's address set once by whoever publishes it, launch buttons on every page
when there is one, and a first cell that installs the study from it (or says in one line that it cannot).

The address is ``_config.yml``'s ``repository.url`` when it is filled in, else the clone's ``origin`` remote in
its https form (:func:`analysis.run.repository_url`); the tests make temporary git repositories for it. The
behavioural test builds a fresh virtual environment that has the study's dependencies but not the study (the
project's own environment is reached through a plain path entry, so its editable install of ``analysis`` is not),
runs a page there with ``study`` pointing at a git repository of this working tree, and reads the executed
notebook: it installs the study, and ends in its "what this run shows" sentence and its verdict as cell outputs.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest
import yaml

from analysis import run

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_PAGES = [p for p in run.PAGES if run.notebook_path(p).suffix == ".ipynb"]
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def install_cell(page: str) -> str:
    """The cell right after the parameters cell (the first that runs code of its own)."""
    cells = json.loads(run.notebook_path(page).read_text())["cells"]
    parameters = next(i for i, cell in enumerate(cells) if "parameters" in cell["metadata"].get("tags", []))
    return "".join(cells[parameters + 1]["source"])


def git(folder: Path, *arguments: str) -> str:
    return subprocess.run([GIT, "-C", str(folder), *arguments], capture_output=True, text=True, check=True).stdout


def clone_with(tmp_path: Path, remote: str | None, url: str | None = None) -> Path:
    """A git repository holding a ``_config.yml`` with ``repository.url`` = ``url``, and ``remote`` as origin."""
    folder = tmp_path / "clone"
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    if remote:
        git(folder, "remote", "add", "origin", remote)
    settings = config()
    settings["repository"]["url"] = url
    (folder / "_config.yml").write_text(yaml.safe_dump(settings))
    return folder


# --- the address --------------------------------------------------------------------------------------------------


def test_the_committed_config_leaves_the_address_to_the_git_remote_and_keeps_colab_and_binder():
    settings = config()
    assert not settings["repository"].get("url"), "an address typed into _config.yml overrides the clone's remote"
    assert settings["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert settings["launch_buttons"]["binderhub_url"] == "https://mybinder.org"


@pytest.mark.parametrize("remote, url", [
    ("git@github.com:someone/registers.git", "https://github.com/someone/registers"),
    ("git@github.com:someone/registers", "https://github.com/someone/registers"),
    ("ssh://git@github.com/someone/registers.git", "https://github.com/someone/registers"),
    ("ssh://git@gitlab.example.org:2222/group/sub/registers.git", "https://gitlab.example.org/group/sub/registers"),
    ("https://github.com/someone/registers.git", "https://github.com/someone/registers"),
    ("https://someone:secret-token@github.com/someone/registers/", "https://github.com/someone/registers"),
    ("git://github.com/someone/registers", "https://github.com/someone/registers"),
    ("/srv/git/registers.git", None),  # a local path or file:// remote has no public address
    ("file:///srv/git/registers.git", None),
    ("../registers", None),
    ("", None),
])
def test_a_git_remote_becomes_the_web_address_of_its_repository(remote, url):
    assert run.https_url(remote) == url


@needs_git
def test_the_git_remote_is_the_address_when_the_config_sets_none(tmp_path):
    clone = clone_with(tmp_path, "git@github.com:someone/registers.git", url="")
    assert run.repository_url(clone) == "https://github.com/someone/registers"


@needs_git
def test_the_configured_address_overrides_the_git_remote(tmp_path):
    clone = clone_with(tmp_path, "git@github.com:someone/registers.git", url="https://github.com/publisher/study/")
    assert run.repository_url(clone) == "https://github.com/publisher/study"
    clone = clone_with(tmp_path / "ssh", "git@github.com:someone/registers.git", url="git@github.com:publisher/study")
    assert run.repository_url(clone) == "https://github.com/publisher/study"  # set in ssh form: the same address


@needs_git
def test_no_remote_and_no_configured_address_means_no_address(tmp_path):
    assert run.repository_url(clone_with(tmp_path, None, url=None)) is None
    shutil.rmtree(tmp_path / "clone" / ".git")  # not a clone at all
    assert run.repository_url(tmp_path / "clone") is None


def staged(tmp_path: Path, url: str | None) -> dict:
    return yaml.safe_load((run.stage_sources(tmp_path / "build", url) / "_config.yml").read_text())


def test_the_staged_config_points_the_buttons_at_the_address(tmp_path):
    settings = staged(tmp_path, "https://github.com/someone/registers")
    assert settings["repository"]["url"] == "https://github.com/someone/registers"
    assert settings["html"]["use_repository_button"] is True
    assert settings["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "analysis.sphinx_guard" not in settings["sphinx"]["extra_extensions"]  # the staged build is the real one


def test_the_staged_config_without_an_address_has_no_repository_or_launch_buttons(tmp_path):
    settings = staged(tmp_path, None)
    assert "launch_buttons" not in settings and settings["repository"]["url"] == ""
    assert not any(settings["html"].get(button) for button in ("use_repository_button", "use_issues_button",
                                                                "use_edit_page_button"))
    assert "analysis.sphinx_guard" not in settings["sphinx"]["extra_extensions"]


def executed_parameters(monkeypatch, tmp_path, url, parameters) -> dict:
    """The parameters :func:`run.run_page` hands papermill when the study's address is ``url``."""
    seen = {}

    def execute(page, parameters, tmp, build_dir):
        seen.update(parameters)
        shutil.copy(run.notebook_path(page), tmp)

    monkeypatch.setattr(run, "repository_url", lambda *args, **kwargs: url)
    monkeypatch.setattr(run, "_execute", execute)
    run.run_page("norm_histogram", parameters, tmp_path / "build", force=True)
    return seen


def test_a_built_page_installs_the_study_from_its_address(monkeypatch, tmp_path):
    assert executed_parameters(monkeypatch, tmp_path, "https://github.com/someone/registers", {"n_images": 3}) == \
        {"n_images": 3, "study": "git+https://github.com/someone/registers"}
    explicit = executed_parameters(monkeypatch, tmp_path, "https://github.com/someone/registers",
                                   {"study": "git+file:///elsewhere"})
    assert explicit == {"study": "git+file:///elsewhere"}  # `-p study ...` wins
    assert executed_parameters(monkeypatch, tmp_path, None, {"n_images": 3}) == {"n_images": 3}  # default: None


# --- the install cell ---------------------------------------------------------------------------------------------


def run_install_cell(page: str, study, monkeypatch, installed: bool) -> tuple[list, str]:
    """The page's install cell run here with ``study``: the pip commands it ran and what it printed."""
    import importlib.util

    calls, printed = [], io.StringIO()
    with monkeypatch.context() as patch, redirect_stdout(printed):
        patch.setattr(subprocess, "run", lambda command, **options: calls.append(command))
        if not installed:
            patch.setattr(importlib.util, "find_spec", lambda name, *args: None)
        exec(compile(install_cell(page), page, "exec"), {"study": study})
    return calls, printed.getvalue()


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_page_installs_the_study_from_study_or_says_in_one_line_how(page, monkeypatch):
    assert run._default(run.declared_parameters(page)["study"]) is None  # the build fills the address in
    assert run_install_cell(page, "git+file:///somewhere", monkeypatch, installed=True) == ([], "")
    calls, printed = run_install_cell(page, "git+file:///somewhere", monkeypatch, installed=False)
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "git+file:///somewhere"]] and printed == ""
    calls, printed = run_install_cell(page, None, monkeypatch, installed=False)
    assert calls == [] and len(printed.strip().splitlines()) == 1
    assert "no address of the study is known" in printed.lower() and "pip install git+" in printed


# --- a page outside a clone, to its verdict -----------------------------------------------------------------------


def _fresh_environment(folder: Path) -> Path:
    """A virtual environment with the study's dependencies (a path entry to this one's packages), without it."""
    base_python = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter this environment was made from
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    (theirs / "study-dependencies.pth").write_text(f"{own}\n")  # a plain entry: own .pth files are not read
    return python


def _repository_of_this_tree(folder: Path) -> Path:
    """A git repository of this working tree's package (committed or not): what `pip install git+…` reads."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "analysis", folder / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", "the study")
    return folder


def outputs(notebook) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


@needs_git
@pytest.mark.slow
def test_a_page_opened_outside_a_clone_installs_the_study_and_shows_its_conclusions(tmp_path, weights_dir):
    python = _fresh_environment(tmp_path / "venv")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = subprocess.run([str(python), "-c", "import importlib.util; print(importlib.util.find_spec('analysis'))"],
                           cwd=outside, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None"  # the fresh environment does not have the study
    study = _repository_of_this_tree(tmp_path / "study")
    page = outside / "norm_histogram.ipynb"
    page.write_text(run.notebook_path("norm_histogram").read_text())
    environment = {**os.environ, "PIP_NO_DEPS": "1",
                   "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                   "REGISTERS_WEIGHTS_DIR": str(weights_dir), "REGISTERS_CACHE": str(tmp_path / "cache"),
                   "REGISTERS_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    executed = outside / "executed.ipynb"
    result = subprocess.run([str(python), "-m", "papermill", str(page), str(executed), "-k", "python3",
                             "-p", "n_images", "8", "-p", "study", f"git+file://{study}", "--cwd", str(outside)],
                            cwd=outside, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    installed = subprocess.run([str(python), "-c", "import analysis, os; print(analysis.__file__)"], cwd=outside,
                               capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "venv") in installed  # installed into the fresh environment, not found in the clone
    claims = __import__("pandas").read_parquet(tmp_path / "results" / "norm_histogram_claims.parquet")
    verdicts = {"reproduced", "not reproduced", "inconclusive", "not testable"}
    assert len(claims) and set(claims.verdict) <= verdicts

    # what Jupyter, JupyterLab and Colab show (text/html), with no MyST they cannot read
    shown = [output["data"] for output in outputs(nbformat.read(executed, 4)) if "data" in output]
    assert not [data for data in shown for text in data.values() if isinstance(text, str) and "{glue:" in text]
    html = "\n".join(data.get("text/html", "") for data in shown)
    verdict = re.search(r"Verdict of this run: ([^<]+)</p>", html)
    assert verdict and any(word in verdict[1] for word in verdicts), html[-2000:]
    assert "Rule:" in html and claims.measured.iloc[0] in html  # each claim with the interval its rule read
    assert re.search(r"On 8 images, .+ has \d+\.\d+% \[\d+\.\d+%, \d+\.\d+%\] \(95 % interval over\s+images\)", html)
    assert "Weights of this run" in html and "```" not in html and "{admonition}" not in html
    assert sum("Verdict of this run" in data.get("text/html", "") for data in shown) == 1
