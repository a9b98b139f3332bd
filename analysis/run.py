"""Run the book's notebooks with papermill into the build tree, and build the site.

Source notebooks in ``book/`` are never written to. Executed copies go to
``_build/src/book/`` next to a staged copy of ``_config.yml``, ``_toc.yml`` and the
Markdown pages; Jupyter Book then builds ``_build/html`` from there with warnings as
errors. A notebook is re-executed only when its *execution key* changes (notebook
source, parameters, the ``analysis`` package source, and the files the page declares it
reads), so a warm rebuild of an unchanged book runs no notebook at all.

The pages are the notebooks of ``_toc.yml``, in its order. A page that reads other pages'
results declares it in its notebook metadata, ``"registers": {"reads": ["results/*_claims.parquet"]}``
(globs relative to the build folder); the runner hashes those files into the page's key.
Where the weights, the feature cache and the results live reaches the kernel through the
environment (``REGISTERS_WEIGHTS_DIR``, ``REGISTERS_CACHE``, ``REGISTERS_RESULTS``), so no path
of this machine is written into a page.

The study's own address (:func:`repository_url`) is set by whoever publishes it: ``_config.yml``'s
``repository.url`` when it is filled in, else the clone's ``git remote get-url origin`` (an ssh remote in its https
form). It goes into the staged ``_config.yml`` (repository and launch buttons; with no address known, both are
left out) and into every executed page that declares a ``study`` parameter, as ``git+<address>``: the address its
first cell installs the study from when the page runs outside a clone.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import yaml

from . import params as parameter_sets
from .features import DEFAULT_CACHE_ENV, DiskFullError, is_disk_full, process_alive
from .models import WEIGHTS_DIR_ENV
from .report import RESULTS_ENV

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
KEY_FIELD = "registers_execution_key"


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every page of the book (``book/<name>``, Markdown and notebooks), in ``_toc.yml`` order."""
    spec = yaml.safe_load(toc.read_text())
    return [spec["root"]] + [c["file"] for part in spec.get("parts", []) for c in part["chapters"]]


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The executed pages (notebooks) of the book, in ``_toc.yml`` order."""
    return [Path(f).name for f in toc_files(toc) if (ROOT / f"{f}.ipynb").is_file()]


PAGES = toc_pages()


def toc_part(caption: str, toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The pages of one part of the book (``"Findings"``), in ``_toc.yml`` order."""
    spec = yaml.safe_load(toc.read_text())
    return [Path(c["file"]).name for part in spec.get("parts", []) if part.get("caption") == caption
            for c in part["chapters"]]


def page_reads(page: str) -> list[str]:
    """The build-folder globs a page declares it reads (its notebook's ``registers.reads`` metadata)."""
    return list(nbformat.read(notebook_path(page), as_version=4).metadata.get("registers", {}).get("reads", []))


#: A remote in scp form, ``git@github.com:owner/repo.git``.
SCP_REMOTE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>[^\\]+)$")
#: A remote as a URL: ``ssh://git@github.com/owner/repo.git``, ``https://user:token@host/owner/repo``.
URL_REMOTE = re.compile(r"^(?P<scheme>https?|ssh|git|git\+ssh)://(?:[^@/]*@)?(?P<host>[\w.-]+)(?::\d+)?/(?P<path>.+)$")


def https_url(remote: str | None) -> str | None:
    """A git remote as the web address of its repository: ``git@github.com:o/r.git`` and ``ssh://git@github.com/o/r``
    become ``https://github.com/o/r``; credentials and a trailing ``.git`` are dropped. A local path or ``file://``
    remote has no public address: None."""
    remote = (remote or "").strip()
    match = URL_REMOTE.match(remote)
    if match:
        scheme = "http" if match["scheme"] == "http" else "https"
        host, path = match["host"], match["path"]
    elif (match := SCP_REMOTE.match(remote)) and "/" not in match["host"] and not remote.startswith(("/", ".")):
        scheme, host, path = "https", match["host"], match["path"]
    else:
        return None
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{scheme}://{host}/{path}" if path else None


def git_remote(root: Path = ROOT, name: str = "origin") -> str | None:
    """``git remote get-url <name>`` of the clone at ``root`` (None: not a clone, no such remote, no git)."""
    try:
        found = subprocess.run(["git", "-C", str(root), "remote", "get-url", name], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (found.stdout.strip() or None) if found.returncode == 0 else None


def repository_url(root: Path = ROOT, config: Path | None = None) -> str | None:
    """The study's public address: ``repository.url`` of ``config`` (``_config.yml``) when it is set, else the
    https form of the clone's ``origin`` remote, else None (nothing to point launch buttons or an install at)."""
    settings = yaml.safe_load(Path(config or root / "_config.yml").read_text()) or {}
    configured = str((settings.get("repository") or {}).get("url") or "").strip()
    if configured:
        return https_url(configured) or configured.rstrip("/")
    return https_url(git_remote(root))


def study_parameter(page: str, url: str | None) -> dict:
    """``{"study": "git+<url>"}`` for a page that declares ``study`` when the address is known, else ``{}``."""
    return {"study": f"git+{url}"} if url and "study" in declared_parameters(page) else {}


class ParameterError(ValueError):
    """A parameter the page's notebook does not declare, or a page that does not exist."""


def notebook_path(page: str) -> Path:
    path = BOOK / f"{page}.ipynb"
    if page not in PAGES or not path.is_file():
        raise ParameterError(f"unknown page {page!r}; pages: {', '.join(PAGES)}")
    return path


def declared_parameters(page: str) -> dict[str, dict]:
    """The names and defaults in the notebook's ``parameters`` cell (papermill's own parser)."""
    import papermill

    return papermill.inspect_notebook(str(notebook_path(page)))


def _default(declared: dict) -> object:
    try:
        return ast.literal_eval(declared["default"])
    except (ValueError, SyntaxError):
        return None


def check_type(name: str, value, default):
    """``value`` converted to the type of the notebook's ``default``, or a :class:`ParameterError` with an example.

    A plain string where a list is expected becomes a one-element list (``-p models vit_...``); a string that
    starts like a JSON list but does not parse is refused. ``None`` defaults take a string or None.
    """
    example = {list: f"-p {name} '[\"a\", \"b\"]'", bool: f"-p {name} true", int: f"-p {name} 12",
               float: f"-p {name} 0.5", str: f"-p {name} text"}
    if default is None or value is None:
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ParameterError(f"{name} must be a text value or null, got {value!r}")
    expected = type(default)
    if expected is list:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [value]
        if isinstance(value, list):
            return value
        raise ParameterError(f"{name} must be a JSON list, e.g. {example[list]}, got {value!r}")
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, expected):
        return value
    raise ParameterError(f"{name} must be {'an' if expected is int else 'a'} {expected.__name__}, "
                         f"e.g. {example.get(expected, name)}, got {value!r}")


def check_parameters(page: str, parameters: dict) -> dict:
    """The parameters, each checked against (and converted to) the type of the notebook's default."""
    declared = declared_parameters(page)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ParameterError(
            f"page {page!r} has no parameter {', '.join(map(repr, unknown))}; it takes: {', '.join(sorted(declared))}"
        )
    parameters = {name: check_type(name, value, _default(declared[name])) for name, value in parameters.items()}
    if "threshold" in parameters:
        value = parameters["threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParameterError(f"threshold must be a positive number (the paper uses 150), got {value!r}")
    return parameters


def parse_value(text: str):
    """A ``-p key value`` value: JSON when it parses (numbers, lists, true/null), else the string."""
    aliases = {"None": None, "True": True, "False": False}
    if text in aliases:
        return aliases[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _package_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "analysis").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execution_key(page: str, parameters: dict, build_dir: Path, weights_dir: str | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(notebook_path(page).read_bytes())
    digest.update(json.dumps([parameters, weights_dir], sort_keys=True, default=str).encode())
    digest.update(_package_hash().encode())
    for pattern in page_reads(page):  # what the page reads from other pages (results, benchmark)
        for path in sorted(build_dir.glob(pattern)):
            if path.stem == page or path.stem.startswith(f"{page}_"):  # its own output: not an input
                continue
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def page_environment(build_dir: Path, weights_dir: str | None) -> dict[str, str]:
    """Where the kernel finds weights and writes cache and results (inherited environment variables)."""
    environment = {DEFAULT_CACHE_ENV: str(build_dir / "cache"), RESULTS_ENV: str(build_dir / "results"),
                   # the kernel's connection file goes where the next run can find it if this one is killed
                   "JUPYTER_RUNTIME_DIR": str(build_dir / "runtime" / str(os.getpid()))}
    weights = weights_dir or os.environ.get(WEIGHTS_DIR_ENV)
    if weights:
        environment[WEIGHTS_DIR_ENV] = str(weights)
    return environment


def remove_abandoned_runs(build_dir: Path) -> list[Path]:
    """Delete the temporary notebooks and kernel runtime folders of runs whose process is gone."""
    removed = []
    for stale in (build_dir / "src" / "book").glob(".*.running.ipynb"):
        pid = stale.name.split(".")[-3]
        if not pid.isdigit() or not process_alive(int(pid)):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    for stale in (build_dir / "runtime").glob("*"):
        if stale.name.isdigit() and not process_alive(int(stale.name)):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def _is_current(output: Path, key: str) -> bool:
    """Is ``output`` an executed copy made with this execution ``key`` (nothing it depends on changed)?"""
    return output.is_file() and nbformat.read(output, as_version=4).metadata.get(KEY_FIELD) == key


@contextmanager
def _kernel_environment(build_dir: Path, weights_dir: str | None) -> Iterator[None]:
    """:func:`page_environment` set for the kernel papermill starts, and this process's own values restored."""
    names = (DEFAULT_CACHE_ENV, RESULTS_ENV, WEIGHTS_DIR_ENV, "JUPYTER_RUNTIME_DIR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(page_environment(build_dir, weights_dir))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _ipc_kernel_manager():
    """A kernel manager whose kernel talks over Unix sockets in a private temporary folder instead of TCP on
    localhost: nothing else on the machine can connect to it, and ipykernel has no unencrypted-TCP warning to print
    once per page. The folder is short (a socket path may not exceed about 100 bytes) and removed with the kernel."""
    import tempfile

    from jupyter_client.manager import KernelManager

    class IpcKernelManager(KernelManager):
        def __init__(self, **options):
            super().__init__(**options)
            self._socket_folder = tempfile.mkdtemp(prefix="registers-kernel-")
            self.transport, self.ip = "ipc", os.path.join(self._socket_folder, "k")

        def cleanup_resources(self, restart: bool = False) -> None:
            super().cleanup_resources(restart)
            if not restart:
                shutil.rmtree(self._socket_folder, ignore_errors=True)

    return IpcKernelManager


def _execute(page: str, parameters: dict, tmp: Path, build_dir: Path) -> None:
    """papermill into ``tmp``; a failing cell moves the notebook to ``build_dir/failed/`` and is one line."""
    import papermill

    try:
        papermill.execute_notebook(
            str(notebook_path(page)), str(tmp), parameters=parameters, kernel_name="python3",
            cwd=str(ROOT), progress_bar=False, kernel_manager_class=_ipc_kernel_manager(),
        )
    except papermill.PapermillExecutionError as error:
        failed = build_dir / "failed" / f"{page}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, failed)
        raise RuntimeError(
            f"page {page!r} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
            f"executed notebook kept at {failed}"
        ) from None


def machine_words() -> str:
    """This machine in a few words: "Linux x86_64, 2 CPU cores, 24 GB memory, no CUDA GPU"."""
    import platform

    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.0f} GB memory"
    except (ValueError, OSError, AttributeError):
        memory = ""
    try:
        import torch

        gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no CUDA GPU"
    except Exception:  # noqa: BLE001 - a broken CUDA set-up is still a machine without a usable GPU
        gpu = "no CUDA GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{memory}, {gpu}"


def run_time_words(seconds: float) -> str:
    """``42`` → "42 s", ``125`` → "2 min 5 s", ``3725`` → "1 h 2 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


RUN_TIME_TAG = "run-time"


def _mark_executed(tmp: Path, key: str, seconds: float | None = None) -> None:
    """Stamp the execution key into the executed notebook, fold its default parameters away, and say beside the
    parameters this run used how long the page took on which machine (``seconds``: the whole execution)."""
    notebook = nbformat.read(tmp, as_version=4)
    notebook.metadata[KEY_FIELD] = key
    injected = any("injected-parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    for cell in notebook.cells:  # the defaults fold away; the values this run used stay visible
        if injected and "parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "hide-cell"]
    marker = "injected-parameters" if injected else "parameters"  # the cell that holds this run's values
    position = next((i + 1 for i, c in enumerate(notebook.cells) if marker in c.metadata.get("tags", [])), None)
    if seconds is not None and position is not None:
        note = nbformat.v4.new_markdown_cell(f"*This page ran in {run_time_words(seconds)} on {machine_words()}, "
                                             "with the parameters above.*")
        note.metadata["tags"] = [RUN_TIME_TAG]
        notebook.cells.insert(position, note)
    nbformat.write(notebook, tmp)


def verdict_counts(page: str, build_dir: Path) -> dict[str, int]:
    """``{verdict: count}`` of the claims a page saved (``results/<page>_claims.parquet``); empty without claims."""
    import pandas as pd

    path = Path(build_dir) / "results" / f"{page}_claims.parquet"
    if not path.is_file():
        return {}
    counts = pd.read_parquet(path, columns=["verdict"]).verdict.value_counts()
    order = ["reproduced", "not reproduced", "inconclusive", "not testable"]
    return {verdict: int(counts[verdict]) for verdict in order if verdict in counts}


def counts_words(counts: dict[str, int]) -> str:
    """``{"reproduced": 1, "inconclusive": 2}`` → "1 reproduced, 2 inconclusive"; "no claims" when empty."""
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) or "no claims"


def _page_disk_full(page: str, folder: Path) -> DiskFullError:
    """One line for a page whose notebook could not be written: where, and how much space is free."""
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:,.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"page {page!r} could not be written: the disk holding {folder} is full ({free}); "
                         "free some space or pass --build-dir on a larger disk (nothing was published)")


def run_page(
    page: str,
    parameters: dict,
    build_dir: Path,
    weights_dir: str | None = None,
    force: bool = False,
) -> Path:
    """Execute one page's notebook with ``parameters`` into ``build_dir/src/book/<page>.ipynb``.

    Returns the executed notebook's path. Skips execution when the executed copy's key matches. The notebook is
    written to a temporary file renamed into place at the end: a failure (a cell, a full disk) publishes nothing.
    A page that declares ``study`` gets the study's address (:func:`repository_url`) unless ``parameters`` set it.
    """
    parameters = check_parameters(page, {**study_parameter(page, repository_url()), **parameters})
    build_dir = Path(build_dir).resolve()
    output = build_dir / "src" / "book" / f"{page}.ipynb"
    key = execution_key(page, parameters, build_dir, weights_dir)
    if not force and _is_current(output, key):
        print(f"[{page}] unchanged, reusing {output}", flush=True)
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_runs(build_dir)
    tmp = output.with_name(f".{page}.{os.getpid()}.running.ipynb")
    print(f"[{page}] executing with {json.dumps(parameters, default=str)}", flush=True)
    started = time.perf_counter()
    try:
        with _kernel_environment(build_dir, weights_dir):
            _execute(page, parameters, tmp, build_dir)
        seconds = time.perf_counter() - started
        _mark_executed(tmp, key, seconds)
        os.replace(tmp, output)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise _page_disk_full(page, output.parent) from None
        raise
    print(f"[{page}] done in {run_time_words(seconds)}: {counts_words(verdict_counts(page, build_dir))}", flush=True)
    return output


def staged_config(url: str | None, config: Path = ROOT / "_config.yml") -> dict:
    """The ``_config.yml`` the site is built with: no guard extension, the study's address ``url`` as the
    repository; with no address, no repository button and no launch buttons (nothing to point them at)."""
    settings = yaml.safe_load(config.read_text())
    extensions = settings.get("sphinx", {}).get("extra_extensions", [])
    settings.setdefault("sphinx", {})["extra_extensions"] = [e for e in extensions if e != "analysis.sphinx_guard"]
    repository = settings.setdefault("repository", {})
    if url:
        repository["url"] = url
        settings.setdefault("html", {})["use_repository_button"] = True  # off in _config.yml: a bare URL-less build
    else:
        repository["url"] = ""  # not Jupyter Book's default address
        settings.pop("launch_buttons", None)
        for button in ("use_repository_button", "use_edit_page_button", "use_issues_button"):
            settings.setdefault("html", {})[button] = False
    return settings


#: :func:`stage_sources` without an address given: it resolves one (:func:`repository_url`).
RESOLVE = "resolve"


def stage_sources(build_dir: Path, url: str | None = RESOLVE) -> Path:
    """Copy the book's configuration (:func:`staged_config` with ``url``, by default :func:`repository_url`; None:
    no address) and Markdown pages next to the executed notebooks."""
    src = Path(build_dir).resolve() / "src"
    (src / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "_toc.yml", src / "_toc.yml")
    settings = staged_config(repository_url() if url == RESOLVE else url)  # the staged build is the real one
    (src / "_config.yml").write_text("# Staged by analysis.run.stage_sources from the study's _config.yml.\n"
                                     + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    shutil.copytree(BOOK / "_static", src / "_static", dirs_exist_ok=True)  # the site's stylesheet
    for path in BOOK.iterdir():
        if path.suffix != ".ipynb" and path.is_file():
            target = src / "book" / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                shutil.copy2(path, target)
    return src


def build_html(build_dir: Path) -> Path:
    """Jupyter Book build of the staged tree with warnings as errors; returns the site's folder: ``html`` in the
    build folder (Jupyter Book writes ``<path-output>/_build/html``, so a build folder of another name than
    ``_build`` gets its site in ``<build folder>/_build/html``)."""
    build_dir = Path(build_dir).resolve()
    output = build_dir.parent if build_dir.name == "_build" else build_dir
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(build_dir / "src"),
               "--path-output", str(output), "--warningiserror", "--keep-going", "--quiet"]
    print("[book] " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return output / "_build" / "html"


def build_book(
    set_name: str = "auto",
    build_dir: str | Path | None = None,
    weights_dir: str | None = None,
    overrides: dict | None = None,
    html: bool = True,
) -> Path:
    """Run every page with a named parameter set and build the site. Returns the html folder."""
    started = time.perf_counter()
    build_dir = Path(build_dir or ROOT / "_build").resolve()
    chosen = parameter_sets.choose(set_name, weights_dir)
    missing = parameter_sets.missing_weights("paper", weights_dir) if set_name == "auto" else []
    reason = f" (paper weights missing offline: {', '.join(missing)})" if missing else ""
    print(f"[book] parameter set: {chosen}{reason}", flush=True)
    url = repository_url()
    unknown = ("none known (no repository.url in _config.yml, no git remote origin): no launch buttons, and a page "
               "run outside a clone says how to install the study")
    print(f"[book] the study's address: {url or unknown}", flush=True)
    stage_sources(build_dir, url)
    for page in PAGES:
        page_parameters = {**study_parameter(page, url), **parameter_sets.SETS[chosen][page]}
        if "parameter_set" in declared_parameters(page):
            page_parameters["parameter_set"] = chosen
        for key, value in (overrides or {}).items():
            if key in declared_parameters(page):
                page_parameters[key] = value
        run_page(page, page_parameters, build_dir, weights_dir)
    total: dict[str, int] = {}
    for page in PAGES:
        for verdict, count in verdict_counts(page, build_dir).items():
            total[verdict] = total.get(verdict, 0) + count
    print(f"[book] {len(PAGES)} pages in {run_time_words(time.perf_counter() - started)}, set {chosen}: "
          f"{sum(total.values())} claims: {counts_words(total)}", flush=True)
    return build_html(build_dir) if html else build_dir
