"""A full-size dry run of a parameter set through the real hub-loading path, on random-valued weights.

The ``lite`` set's first real run happens on a reader's laptop, in Colab or in the GitHub workflow, where timm
downloads each model into the Hugging Face cache and loads it from there. This module proves that road here,
where no hub can be reached: :func:`plant_hub_cache` writes every model of the set as a Hugging Face cache of the
layout a real download leaves (``models--<org>--<name>/blobs/<sha256>``, a ``snapshots/<commit>/<file>`` link to
it, ``refs/main``), holding *random-valued* weights of the real architecture and shape; :func:`dry_run` then
executes every page of the set with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointed there, so each model is
resolved and loaded by timm exactly as a real download would be, at full size, on a few images. Its numbers mean
nothing (the weights are random) and it is never published: it measures whether each page runs, how long, and
whether the pass plan's estimate for the set stays within its target.

``python -m analysis.dry_run --set lite`` (CI runs it) writes ``<build>/dry_run_<set>.parquet``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from . import params as parameter_sets

#: The lite set's targets (issue: "at most 30 min on a 4-core CPU"), held against the plan's estimate.
PLAN_TARGET_SECONDS = {"lite": 30 * 60}
#: Pages that run no model of the set (the validation page runs the study's own ViT-Ti twins, proven by the ci
#: book): left out of the dry run.
NOT_OF_THE_SET = ("validation",)


def hub_repository(name: str) -> tuple[str, str, str | None]:
    """``(repository, file, revision)`` timm reads ``name``'s pretrained weights from: its ``hf_hub_id`` and the
    safetensors file timm tries first (:func:`analysis.models.hub_weight_file` looks for the same)."""
    import timm

    from .models import HF_DEFAULT_FILE, _hub_candidates

    cfg = timm.models.get_pretrained_cfg(name)
    if not getattr(cfg, "hf_hub_id", None):
        raise ValueError(f"{name} has no Hugging Face weights in timm: it cannot be planted in a hub cache")
    repository, _, revision = cfg.hf_hub_id.partition("@")
    return repository, _hub_candidates(getattr(cfg, "hf_hub_filename", None) or HF_DEFAULT_FILE)[0], revision or None


def plant_hub_cache(names: list[str], hub_cache: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write each timm model of ``names`` into ``hub_cache`` as a download would leave it, with random values.

    The file holds ``timm.create_model(name).state_dict()`` (the architecture at its default size, as timm's
    hub files are) seeded by ``seed``. Written through a temporary name and linked last, so an interrupted run
    leaves no snapshot that points at half a file; a model already planted is kept. Returns ``{name: file}``.
    """
    import timm
    import torch
    from safetensors.torch import save_file

    planted = {}
    for name in names:
        repository, filename, revision = hub_repository(name)
        folder = Path(hub_cache) / f"models--{repository.replace('/', '--')}"
        commit = revision or hashlib.sha1(f"dry-run:{name}:{seed}".encode()).hexdigest()
        link = folder / "snapshots" / commit / filename
        if link.exists():
            planted[name] = link
            continue
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        state = {key: value.contiguous() for key, value in timm.create_model(name, pretrained=False).state_dict().items()}
        tmp = folder / "blobs" / f".{os.getpid()}.incomplete"
        save_file(state, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        blob = folder / "blobs" / digest
        os.replace(tmp, blob)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
        planted[name] = link
    return planted


def smaller_set(set_name: str, n_images: int = 2) -> dict[str, dict]:
    """``set_name``'s pages with their models kept and their samples shrunk to ``n_images`` (one image per class
    of the shipped digits for the class probe); the pages of :data:`NOT_OF_THE_SET` left out."""
    smaller = {"n_images": n_images, "n_discovery": n_images, "per_class": 1, "image_source": "builtin",
               "labelled_source": "digits", "voc_root": None, "voc_split": None}
    return {page: {name: smaller.get(name, value) for name, value in parameters.items()}
            for page, parameters in parameter_sets.SETS[set_name].items() if page not in NOT_OF_THE_SET}


def _run_pages(set_name: str, build_dir: Path, n_images: int, weights_dir: str | None) -> list[dict]:
    """Every page of the smaller set, in the book's order, in this process (whose environment points the hub at
    the planted cache); a page that fails is a row that says so."""
    from .run import PAGES, declared_parameters, run_page

    rows = []
    pages = smaller_set(set_name, n_images)
    for page in [p for p in PAGES if p in pages]:
        parameters = dict(pages[page])
        if "parameter_set" in declared_parameters(page):
            parameters["parameter_set"] = set_name
        start = time.perf_counter()
        try:
            run_page(page, parameters, build_dir, weights_dir, force=True)
            status = "ran"
        except Exception as error:  # noqa: BLE001 - a failing page is reported, the others still run
            status = "failed: " + str(error).splitlines()[0][:300]
        rows.append({"page": page, "status": status, "seconds": time.perf_counter() - start})
        print(f"[dry run {set_name}] {page}: {status} ({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def plan_check(set_name: str, page_seconds: float = 0.0) -> dict:
    """The pass plan's estimate for the full set on the hosted runner plus ``page_seconds`` (what the pages cost
    besides their passes: kernels, fits, bootstraps, figures — the dry run's own page times, an upper bound since
    they include its small passes), against the set's target."""
    from .plan import build_plan

    plan = build_plan(set_name)
    seconds = float(plan.totals()["seconds"])
    target = PLAN_TARGET_SECONDS.get(set_name)
    return {"passes": int(plan.totals()["passes"]), "estimated_seconds": seconds, "book_seconds": seconds + page_seconds,
            "target_seconds": target, "within_target": target is None or seconds + page_seconds <= target}


def dry_run(set_name: str = "lite", build_dir: str | Path | None = None, n_images: int = 2,
            weights_dir: str | None = None) -> pd.DataFrame:
    """Plant ``set_name``'s models in a hub cache under ``build_dir``, run its pages there in a child process
    (the hub client reads its cache location when imported), and return one row per page plus the plan check."""
    from .run import ROOT

    build_dir = Path(build_dir or ROOT / "_build" / f"dry_run_{set_name}").resolve()
    names = [parameter_sets.ModelSpec.parse(spec).name for spec in parameter_sets.models_of(parameter_sets.SETS[set_name])
             if not parameter_sets.ModelSpec.parse(spec).random]
    hub = build_dir / "hub"
    started = time.perf_counter()
    plant_hub_cache(names, hub)
    print(f"[dry run {set_name}] {len(names)} models planted in {hub} ({time.perf_counter() - started:.0f} s)",
          flush=True)
    environment = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    rows_file = build_dir / "dry_run_pages.json"
    rows_file.unlink(missing_ok=True)
    child = [sys.executable, "-m", "analysis.dry_run", "--child", "--set", set_name, "--build-dir", str(build_dir),
             "--n-images", str(n_images)] + (["--weights-dir", str(weights_dir)] if weights_dir else [])
    result = subprocess.run(child, env=environment)
    if result.returncode or not rows_file.is_file():
        raise RuntimeError(f"the {set_name} dry run stopped (exit status {result.returncode}): see its output above")
    rows = pd.DataFrame(json.loads(rows_file.read_text()))
    for key, value in plan_check(set_name, float(rows.seconds.sum())).items():
        rows[f"plan_{key}"] = value
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.dry_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="lite", choices=[name for name in parameter_sets.SETS if name != "ci"])
    parser.add_argument("--build-dir", default=None)
    parser.add_argument("--n-images", type=int, default=2)
    parser.add_argument("--weights-dir", default=os.environ.get("REGISTERS_WEIGHTS_DIR"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # inside the planted environment: run the pages, hand the rows back in a file
        rows = _run_pages(args.set, Path(args.build_dir), args.n_images, args.weights_dir)
        (Path(args.build_dir) / "dry_run_pages.json").write_text(json.dumps(rows))
        return 0
    rows = dry_run(args.set, args.build_dir, args.n_images, args.weights_dir)
    build_dir = Path(args.build_dir or Path.cwd() / "_build" / f"dry_run_{args.set}")
    from .report import write_parquet

    write_parquet(rows, build_dir / f"dry_run_{args.set}.parquet")
    failed = rows[rows.status != "ran"]
    plan = rows.iloc[0]
    print(f"[dry run {args.set}] {len(rows) - len(failed)} of {len(rows)} pages ran in {rows.seconds.sum():.0f} s; "
          f"plan: {plan.plan_passes} passes, {plan.plan_estimated_seconds / 60:.0f} min estimated on the hosted "
          f"runner, {plan.plan_book_seconds / 60:.0f} min with these page times (target "
          f"{plan.plan_target_seconds / 60:.0f} min)", flush=True)
    if len(failed) or not plan.plan_within_target:
        print(f"[dry run {args.set}] FAILED: " + "; ".join(f"{r.page}: {r.status}" for r in failed.itertuples())
              + ("" if plan.plan_within_target else "; the estimate exceeds the target"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
