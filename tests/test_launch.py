"""Pages open outside a clone: launch buttons on every page, and a first cell that installs the study.

The behavioural test builds a fresh virtual environment that has the study's dependencies but not the study
(the project's own environment is reached through a plain path entry, so its editable install of ``analysis`` is
not), runs a page's first cell there with the study's repository as a local git URL, and then the whole page
to its verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from analysis import run

ROOT = Path(__file__).resolve().parents[1]


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def install_cell(page: str) -> str:
    """The cell right after the parameters cell (the first that runs code of its own)."""
    cells = json.loads(run.notebook_path(page).read_text())["cells"]
    parameters = next(i for i, cell in enumerate(cells) if "parameters" in cell["metadata"].get("tags", []))
    return "".join(cells[parameters + 1]["source"])


def test_launch_buttons_point_at_colab_and_binder_with_the_repository_set_once():
    settings = config()
    assert settings["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert settings["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert settings["repository"]["url"].startswith("https://github.com/")


@pytest.mark.parametrize("page", [p for p in run.PAGES if run.notebook_path(p).suffix == ".ipynb"])
def test_every_page_installs_the_study_from_the_configured_repository_when_it_is_missing(page, monkeypatch):
    study = run.declared_parameters(page)["study"]
    assert run._default(study) == f"git+{config()['repository']['url']}"  # the address of the launch buttons
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, **options: calls.append(command))
    namespace = {"study": "git+file:///somewhere"}
    exec(compile(install_cell(page), page, "exec"), namespace)  # here the study is installed: nothing runs
    assert calls == []
    monkeypatch.setattr(__import__("importlib.util").util, "find_spec", lambda name: None)
    exec(compile(install_cell(page), page, "exec"), namespace)  # without it: pip installs `study`
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "git+file:///somewhere"]]


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


@pytest.mark.slow
def test_a_page_opened_outside_a_clone_installs_the_study_and_runs_to_its_verdict(tmp_path, weights_dir):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("the study is not a git clone here")
    python = _fresh_environment(tmp_path / "venv")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = subprocess.run([str(python), "-c", "import importlib.util; print(importlib.util.find_spec('analysis'))"],
                           cwd=outside, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None"  # the fresh environment does not have the study
    page = outside / "norm_histogram.ipynb"
    page.write_text(run.notebook_path("norm_histogram").read_text())
    environment = {**os.environ, "PIP_NO_DEPS": "1",
                   "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                   "REGISTERS_WEIGHTS_DIR": str(weights_dir), "REGISTERS_CACHE": str(tmp_path / "cache"),
                   "REGISTERS_RESULTS": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    executed = outside / "executed.ipynb"
    result = subprocess.run([str(python), "-m", "papermill", str(page), str(executed), "-k", "python3",
                             "-p", "n_images", "8", "-p", "study", f"git+file://{ROOT}", "--cwd", str(outside)],
                            cwd=outside, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    installed = subprocess.run([str(python), "-c", "import analysis, os; print(analysis.__file__)"], cwd=outside,
                               capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "venv") in installed  # installed into the fresh environment, not found in the clone
    claims = __import__("pandas").read_parquet(tmp_path / "results" / "norm_histogram_claims.parquet")
    assert len(claims) and set(claims.verdict) <= {"reproduced", "not reproduced", "inconclusive", "not testable"}
