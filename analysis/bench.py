"""Benchmark: ratios measured in one run on one machine (never timed tests).

``python -m analysis bench [--quick] [--dry-run] [--device D] [--precision P]`` measures (``--device-checks
--device cuda``: only the capture and probe ratios, whose targets assume a GPU, and the ``lite`` set's passes
timed on that device, in a few minutes)

1. hooked capture (every block's norms + last-block attention + patch embedding) vs a bare
   ``forward_features`` of the same model and batch — target ≤ 1.10×;
2. warm rebuild of the whole book (caches present, nothing changed) vs a cold build — target ≤ 0.15×;
3. peak RSS of a feature pass over 10·N images vs N images — target ≤ 1.3×;
4. throughput (images/s) per model size on this CPU and the projected time of the ``paper`` set;
5. (full run, or ``--dry-run``) every page executed with the ``paper`` set's largest models at full size
   and random weights: seconds and peak memory per page against the interpreter's own peak plus 2× the
   weights plus one batch's activations;
6. the position probe's torch fit vs the scikit-learn fit it replaced, on the information page's problem at
   448 px with real tokens (:func:`position_probe_problem`: the shipped ViT-Ti, 784 positions), with both fits'
   objectives (:func:`probe_fit_ratio`) — target ≤ 0.10× (a ≥ 10× speed-up).

Missed targets are printed and shown on the appendix (a slow machine is not an error); the command fails
only on an error or a page that cannot run at full size.

Results go to ``_build/bench/`` as parquet (``ratios``, ``throughput``; a device check: ``device_ratios``,
``device_passes``) for the book's appendix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import hooks, models
from .params import PAPER, models_of
from .report import write_parquet

BENCH_DIR = Path.cwd() / "_build" / "bench"
#: The ``paper`` set's largest models, run at full size through every page by the full benchmark.
DRY_RUN_MODELS = ("vit_giant_patch14_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m")
TARGETS = {"capture_overhead": 1.05, "capture_overhead_bfloat16": 1.05, "warm_over_cold_build": 0.15,
           "rss_10n_over_n": 1.3,
           "probe_fit_over_sklearn": 0.10}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synchronised(device: torch.device):
    """A barrier so that GPU work is inside the timed interval (a no-op on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def capture_overhead(spec: str = models.OFFLINE_MODEL, batch: int = 8, resolution: int = 224, repeats: int = 9,
                     device: str = "cpu", precision: str = "float32", weights_dir: str | None = None) -> dict:
    """Time of the hooked capture (every block's norms, last-block CLS attention, patch embedding) over a bare
    ``forward_features`` of the same model, batch, device and precision (bfloat16: both under autocast).

    The value is the median over ``repeats`` back-to-back pairs of each pair's ratio, the order inside a pair
    alternating, so that load from other processes — slower than one pair — divides out of each ratio.
    """
    from .features import autocast, resolve_device

    target = resolve_device(device)
    sync = _synchronised(target)
    model, _ = models.load_model(spec, img_size=resolution, weights_dir=weights_dir)
    model = model.to(target)
    images = torch.randn(batch, 3, resolution, resolution, device=target)
    mixed = autocast(target, precision)

    def bare():
        with torch.inference_mode(), mixed:
            model.forward_features(images)
        sync()

    def hooked():
        with mixed:
            hooks.capture_tokens(model, images, attention_blocks=(-1,))
        sync()

    bare(), hooked()  # warm-up: allocator, kernels
    bare_times, hooked_times = [], []
    for index in range(repeats):  # interleaved pairs, alternating which runs first
        first, second = (bare, hooked) if index % 2 == 0 else (hooked, bare)
        times = {first: _median_time(first, 1), second: _median_time(second, 1)}
        bare_times.append(times[bare])
        hooked_times.append(times[hooked])
    ratio = statistics.median(h / b for h, b in zip(hooked_times, bare_times))
    return {"metric": "capture_overhead" + ("" if precision == "float32" else f"_{precision}"), "value": ratio, "unit": "x",
            "detail": f"{spec} on {target.type} in {precision}, batch {batch} @ {resolution}px: hooked "
                      f"{statistics.median(hooked_times):.4f}s vs bare {statistics.median(bare_times):.4f}s "
                      f"(medians of {repeats} interleaved pairs; value: median of the pairs' ratios)"}


def _photo_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` real-photo crops (seeded random crops of the shipped photos) as PNG files."""
    from .images import BUILTIN_PHOTOS
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [BUILTIN_PHOTOS[name]() for name in ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        photo = photo if photo.ndim == 3 else np.stack([photo] * 3, -1)
        h, w = photo.shape[:2]
        size = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        Image.fromarray(photo[top : top + size, left : left + size, :3]).save(folder / f"crop_{index:04d}.png")
    return folder


RSS_CHILD = """
import resource, sys
from analysis import features
features.extract({spec!r}, features.RunOptions({folder!r}, None, 224, cache_dir={cache!r}, weights_dir={weights!r},
                                               allow_hub=False, progress=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(n_images: int, spec: str, weights_dir: str | None, workdir: Path) -> int:
    """Peak resident memory (KiB) of a fresh process that runs one feature pass over ``n_images``."""
    folder = _photo_folder(workdir / f"photos_{n_images}", n_images)
    code = RSS_CHILD.format(spec=spec, folder=str(folder), cache=str(workdir / f"cache_{n_images}"), weights=weights_dir)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def rss_ratio(n_images: int, weights_dir: str | None, spec: str = models.OFFLINE_MODEL) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        small = peak_rss(n_images, spec, weights_dir, Path(tmp))
        large = peak_rss(10 * n_images, spec, weights_dir, Path(tmp))
    return {"metric": "rss_10n_over_n", "value": large / small, "unit": "x",
            "detail": f"{spec}: {n_images} images {small / 1024:.0f} MiB, {10 * n_images} images {large / 1024:.0f} MiB peak RSS"}


def rebuild_ratio(weights_dir: str | None) -> tuple[dict, pd.DataFrame]:
    """Warm over cold build time of the ``ci`` book, and the model passes the cold build ran."""
    from .features import count_passes
    from .run import build_book

    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "_build"
        start = time.perf_counter()
        build_book("ci", build, weights_dir, html=False)
        cold = time.perf_counter() - start
        passes = count_passes(build / "cache")
        start = time.perf_counter()
        build_book("ci", build, weights_dir, html=False)
        warm = time.perf_counter() - start
    passes["triples"] = passes[["spec", "images", "resolution"]].drop_duplicates().shape[0] if len(passes) else 0
    passes["keep"] = passes.get("keep", pd.Series(dtype=object)).map(lambda k: ",".join(k) if isinstance(k, list) else "")
    return ({"metric": "warm_over_cold_build", "value": warm / cold, "unit": "x",
             "detail": f"ci set, notebooks only: cold {cold:.0f}s, warm {warm:.1f}s"}, passes)


def _token_count(name: str, resolution: int) -> int:
    model = models.build_architecture(name, resolution, device="meta")
    grid = model.patch_embed.grid_size
    return grid[0] * grid[1] + model.num_prefix_tokens


def _mega_params(name: str, resolution: int) -> float:
    model = models.build_architecture(name, resolution, device="meta")
    return sum(p.numel() for p in model.parameters()) / 1e6


def throughput(specs: list[str], resolution: int, n_images: int = 2, device: str = "cpu",
               repeats: int = 1, precision: str = "float32") -> pd.DataFrame:
    """Images/s of one hooked pass and of a bare ``forward_features`` per model (random weights: same compute),
    both in ``precision`` (bfloat16: under autocast)."""
    from .features import autocast, resolve_device

    target = resolve_device(device)
    sync = _synchronised(target)
    rows = []
    for spec in specs:
        name = models.ModelSpec.parse(spec).name
        model, _ = models.load_model(f"random:{name}", img_size=resolution)
        model = model.to(target)
        images = torch.randn(n_images, 3, resolution, resolution, device=target)
        mixed = autocast(target, precision)

        def hooked():
            with mixed:
                hooks.capture_tokens(model, images)
            sync()

        def bare():
            with torch.inference_mode(), mixed:
                model.forward_features(images)
            sync()

        hooked()  # warm-up: allocator, kernels
        seconds, bare_seconds = _median_time(hooked, repeats), _median_time(bare, repeats)
        rows.append({"model": name, "resolution": resolution, "device": target.type, "precision": precision,
                     "params_m": _mega_params(name, resolution), "tokens": _token_count(name, resolution),
                     "images_per_s": n_images / seconds, "bare_images_per_s": n_images / bare_seconds,
                     "measured": True})
        del model
    return pd.DataFrame(rows)


def projected_paper_time(measured: pd.DataFrame) -> pd.DataFrame:
    """Seconds the ``paper`` set needs for its model passes (each model runs once thanks to the cache).

    Models not measured are estimated from the measured ones with cost ∝ parameters × tokens
    (the matrix products; attention's quadratic term is ignored, so large inputs are underestimated).
    """
    resolution = PAPER["norm_histogram"]["resolution"]
    n_images = PAPER["norm_histogram"]["n_images"]
    seconds_per_unit = float((1 / (measured.images_per_s * measured.params_m * measured.tokens)).median())
    rows = []
    for spec in models_of(PAPER):
        name = models.ModelSpec.parse(spec).name
        hit = measured[measured.model == name]
        if len(hit):
            rate, was_measured = float(hit.images_per_s.iloc[0]), True
        else:
            cost = _mega_params(name, resolution) * _token_count(name, resolution)
            rate, was_measured = 1 / (seconds_per_unit * cost), False
        rows.append({"model": name, "resolution": resolution, "images": n_images, "images_per_s": rate,
                     "seconds": n_images / rate, "measured": was_measured})
    return pd.DataFrame(rows)


PAGE_CHILD = """
import json, resource, time
from pathlib import Path
from analysis.run import run_page
start = time.perf_counter()
run_page({page!r}, json.loads({parameters!r}), Path({build!r}), {weights!r}, force=True)
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def activation_mib(name: str, resolution: int, batch: int) -> float:
    """The largest activations one block holds at once for ``batch`` images, in MiB (float32): the MLP's
    hidden layer ``(B, N, hidden)`` and the attention matrix ``(B, H, N, N)``."""
    model = models.build_architecture(name, resolution, device="meta")
    block, tokens = model.blocks[0], _token_count(name, resolution)
    hidden = next(layer.out_features for layer in block.mlp.modules() if isinstance(layer, torch.nn.Linear))
    return batch * (tokens * hidden + block.attn.num_heads * tokens**2) * 4 / 2**20


def page_dry_run(specs: tuple[str, ...] = DRY_RUN_MODELS, n_images: int = 2, device: str = "auto",
                 weights_dir: str | None = None, build_dir: str | Path | None = None) -> pd.DataFrame:
    """Every page of the book, executed as a notebook with its models replaced by random-init ``specs`` at
    full size (:func:`analysis.params.dry_run_set`): seconds and the kernel's peak resident memory per page,
    against the memory target: the interpreter with its libraries (the smallest peak of a page that holds no
    model) plus 2× the largest model's weights in float32 plus one batch's activations.

    Each page runs in a fresh process, so its kernel's peak is its own. A page that fails is a row that says
    so; the others still run.
    """
    from .params import dry_run_set
    from .run import toc_pages

    names = [models.ModelSpec.parse(spec).name for spec in specs]
    largest = max(names, key=lambda name: _mega_params(name, 224))
    weights_mib = _mega_params(largest, 224) * 1e6 * 4 / 2**20  # float32 bytes in MiB (pos. embeddings aside)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(build_dir or tmp)
        parameter_set = dry_run_set(list(specs), n_images, device)
        for page in toc_pages():
            parameters = parameter_set.get(page, {})
            ran_on = parameters.get("models") or ([parameters["model"]] if "model" in parameters else [])
            code = PAGE_CHILD.format(page=page, parameters=json.dumps(parameters), build=str(build),
                                     weights=weights_dir)
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            row = {"page": page, "models": ", ".join(models.ModelSpec.parse(m).name for m in ran_on) or "(tables)",
                   "resolution": parameters.get("resolution", 0), "device": device, "weights_mib": weights_mib,
                   "seconds": float("nan"), "peak_rss_mib": float("nan")}
            if result.returncode == 0:
                row.update(json.loads(result.stdout.strip().splitlines()[-1]))
                row["status"] = "ran"
            else:
                row["status"] = "failed: " + (result.stderr.strip().splitlines() or ["?"])[-1][:300]
            row["model_mib"] = (2 * weights_mib + activation_mib(largest, parameters["resolution"], n_images)
                                if ran_on else 0.0)  # a page that only reads tables holds no model
            print(f"[dry run] {page}: {row['status']}, {row['seconds']:.0f}s, "
                  f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
            rows.append(row)
    return memory_targets(pd.DataFrame(rows))


def memory_targets(runs: pd.DataFrame) -> pd.DataFrame:
    """Add each page's memory target to dry-run rows (``peak_rss_mib``, ``model_mib``: 2× weights plus
    activations, 0 for a page that holds no model): the interpreter with its libraries — the smallest peak
    of a page that holds no model — plus ``model_mib``. Pages without a model have no target."""
    runs = runs.copy()
    holds_model = runs.model_mib > 0
    runs["baseline_mib"] = runs.peak_rss_mib[~holds_model].min()
    runs["target_mib"] = (runs.baseline_mib + runs.model_mib).where(holds_model)
    runs["within_target"] = ~holds_model | (runs.peak_rss_mib <= runs.target_mib)
    return runs


def position_probe_problem(weights_dir: str | None, spec: str = models.OFFLINE_MODEL, resolution: int = 448,
                           n_images: int = 10) -> tuple[np.ndarray, np.ndarray, str]:
    """The information page's position probe at 448 px on real tokens: the shipped model's output patch
    tokens for ``n_images`` real-photo crops, the fit half of them (:func:`analysis.probes.split_images`, all
    tokens: fewer than the page's 8000 cap) as ``tokens`` ``(n, D)`` and their grid positions ``(n,)``, and a
    one-line description. (ViT-Ti at 448 px: 5 × 784 = 3920 tokens of 192 channels, 784 classes.)"""
    from . import findings, probes
    from .features import RunOptions, extract

    with tempfile.TemporaryDirectory() as tmp:
        folder = _photo_folder(Path(tmp) / "photos", n_images)
        run = RunOptions(folder, None, resolution, weights_dir=weights_dir, cache_dir=Path(tmp) / "cache",
                         device="cpu", allow_hub=False, progress=False)
        tokens = findings.patch_tokens(extract(spec, run, keep=("output",)))  # (B, Np, D)
    fit, _ = probes.split_images(n_images)
    n_patches = tokens.shape[1]
    return (tokens[fit].reshape(-1, tokens.shape[-1]), np.tile(np.arange(n_patches), len(fit)),
            f"{models.ModelSpec.parse(spec).name} at {resolution}px")


def _softmax_objective(tokens: np.ndarray, labels: np.ndarray, mean, scale, weight, bias) -> float:
    """The probes' objective (mean cross-entropy + ||W||² / 2n, C = 1) in float64 for one fitted model
    acting on standardised ``tokens`` ``(n, D)`` (``weight`` ``(D, K)``, or ``(D, 1)`` for two classes: the
    logit of class 1 against a fixed 0; labels are class indices)."""
    scores = ((np.asarray(tokens, dtype=np.float64) - mean) / scale) @ weight + bias
    if scores.shape[1] == 1:
        scores = np.concatenate([np.zeros_like(scores), scores], 1)
    scores = scores - scores.max(1, keepdims=True)
    cross_entropy = np.log(np.exp(scores).sum(1)) - scores[np.arange(len(labels)), labels]
    return float(cross_entropy.mean() + (weight**2).sum() / (2 * len(labels)))


def probe_fit_ratio(tokens: np.ndarray, labels: np.ndarray, problem: str = "", repeats: int = 3,
                    device: str = "cpu") -> dict:
    """Seconds of the position probe's torch fit (:func:`analysis.probes.fit_softmax`: L-BFGS in whitened
    coordinates, float32, on ``device``) over the scikit-learn fit it replaced (``StandardScaler`` then
    ``LogisticRegression(max_iter=2000, C=1.0)``, as the page ran it), on ``tokens`` ``(n, D)`` labelled with
    grid positions ``labels`` ``(n,)`` = ``0..K-1`` (e.g. :func:`position_probe_problem`). Medians of
    ``repeats`` interleaved fits after a warm-up; target ≤ 0.10, a ≥ 10× speed-up.

    Speed bought by stopping earlier would not count, so the row also reads both fits' objective in float64
    (lower is closer to the common optimum): ``objective_over_sklearn`` ≤ 1 means the torch fit ended at
    least as close to the optimum as scikit-learn's, which :func:`judged` requires of a passing row."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from . import probes
    from .features import resolve_device

    target = resolve_device(device)
    fitted = {}

    def old():
        scaler = StandardScaler().fit(tokens)
        fitted["old"] = (scaler, LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(tokens), labels))

    def new():
        fitted["new"] = probes.fit_softmax(tokens, labels, target)

    probes.fit_softmax(tokens[:256], labels[:256] % 8, target)  # warm-up: thread pools, kernels
    old_times, new_times = [], []
    for _ in range(repeats):  # interleaved so drift (other load on the machine) hits both alike
        old_times.append(_median_time(old, 1))
        new_times.append(_median_time(new, 1))
    old_seconds, new_seconds = statistics.median(old_times), statistics.median(new_times)
    scaler, reference = fitted["old"]
    probe = fitted["new"]
    new_objective = _softmax_objective(tokens, labels, probe.mean, probe.scale, probe.weight, probe.bias)
    old_objective = _softmax_objective(tokens, labels, scaler.mean_, scaler.scale_, reference.coef_.T,
                                       reference.intercept_)
    agree = float((probe.predict(tokens) == reference.predict(scaler.transform(tokens))).mean())
    return {"metric": "probe_fit_over_sklearn", "value": new_seconds / old_seconds, "unit": "x",
            "objective_over_sklearn": new_objective / old_objective,
            "detail": f"{len(np.unique(labels))}-class position probe ({problem}), {len(tokens)} tokens x "
                      f"{tokens.shape[1]} channels: torch L-BFGS on {target.type} {new_seconds:.2f}s vs "
                      f"scikit-learn {old_seconds:.2f}s ({reference.n_iter_[0]} iterations), speed-up "
                      f"{old_seconds / new_seconds:.1f}x; objective {new_objective:.5f} vs {old_objective:.5f}; "
                      f"predictions agree on {agree:.1%} of the fit tokens (median of {repeats})"}


#: The probe fit's objective may exceed scikit-learn's by this fraction (float32 against float64) and still count
#: as "at least as close to the optimum".
OBJECTIVE_SLACK = 1e-6


def judged(ratios: pd.DataFrame) -> pd.DataFrame:
    """Ratio rows with their ``target`` and ``passed``: the value at most the target and, for the probe fit, its
    objective no worse than scikit-learn's (a fit that is fast because it stops early does not pass)."""
    ratios = ratios.copy()
    ratios["target"] = ratios.metric.map(TARGETS)
    objective = ratios.get("objective_over_sklearn", pd.Series(np.nan, index=ratios.index))
    probe = ratios.metric == "probe_fit_over_sklearn"
    closer = ~probe | (objective <= 1 + OBJECTIVE_SLACK)  # a NaN objective (a diverged fit) does not pass
    ratios["passed"] = (ratios.value <= ratios.target) & closer
    return ratios


def accelerator_ratios(device: str, weights_dir: str | None, repeats: int = 3) -> list[dict]:
    """The rows whose targets assume an accelerator: the hooked capture in float32 and in bfloat16, and the
    position probe's fit (``repeats`` interleaved fits), on ``device``."""
    return [capture_overhead(device=device, weights_dir=weights_dir),
            capture_overhead(device=device, precision="bfloat16", weights_dir=weights_dir),
            probe_fit_ratio(*position_probe_problem(weights_dir), repeats=repeats, device=device)]


def _device_name(target: torch.device) -> str:
    return torch.cuda.get_device_name(target) if target.type == "cuda" else target.type


def set_pass_times(set_name: str = "lite", device: str = "auto", weights_dir: str | None = None,
                   pages: list[str] | None = None, overrides: dict | None = None,
                   workdir: str | Path | None = None, plan_file: str | Path | None = None) -> pd.DataFrame:
    """Every pass of ``set_name``'s plan (:func:`analysis.plan.build_plan`; ``plan_file``: the plan that
    ``python -m analysis plan --set NAME --json`` wrote on another machine, for one without the notebooks' tools,
    such as a lent GPU machine), run on ``device`` with each model's
    weights replaced by a random initialisation of the same architecture (the same compute at the same size; no
    weights to fetch): one row per pass with its measured seconds (loading the model included, drawing the
    images not) beside the plan's estimate for a hosted 4-core runner. Each group of passes (a pass and the one
    it needs first) runs in a cache folder of its own, so that two passes the random weights make alike (a
    checkpoint and its random initialisation) both run. A moved pass that its page runs only where the released
    pass has outliers is skipped where the random pass has none (its row says so)."""
    from . import plan as pass_plan
    from .features import resolve_device

    target = resolve_device(device)
    if plan_file is not None:
        planned = pass_plan.plan_from_json(json.loads(Path(plan_file).read_text()))
    else:
        planned = pass_plan.build_plan(set_name, overrides, weights_dir, pages=pages)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        for number, group in enumerate(planned.groups()):
            ran = [dataclasses.replace(p, spec=f"{models.RANDOM_PREFIX}{p.model}", weights_file=None)
                   for p in group]
            done = pass_plan.run_passes(ran, root / f"group_{number:03d}", weights_dir, device, progress=False)
            for p, record in zip(group, done):
                rows.append({"set": planned.set_name, "id": p.id, "model": p.model, "kind": p.kind,
                             "resolution": p.resolution, "images": planned.estimates[p.id].images,
                             "seconds": record["seconds"], "outcome": record["outcome"],
                             "estimated_seconds": planned.estimates[p.id].seconds,
                             "device": _device_name(target), "device_type": target.type})
    return pd.DataFrame(rows)


def device_checks(device: str, weights_dir: str | None, out: Path, pass_set: str | None = "lite",
                  plan_file: str | Path | None = None) -> int:
    """:func:`accelerator_ratios` on ``device``, written to ``out/device_ratios.parquet`` with the device's name,
    and the passes of ``pass_set`` (or of the plan in ``plan_file``) timed there (:func:`set_pass_times`) into
    ``out/device_passes.parquet``; both printed."""
    from .features import resolve_device

    target = resolve_device(device)
    frame = judged(pd.DataFrame(accelerator_ratios(device, weights_dir)))
    frame["device"], frame["device_type"] = _device_name(target), target.type
    frame["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_parquet(frame, out / "device_ratios.parquet")
    print(frame.to_string(index=False))
    if pass_set or plan_file:
        passes = (set_pass_times(device=device, weights_dir=weights_dir, plan_file=plan_file) if plan_file
                  else set_pass_times(pass_set, device, weights_dir))
        passes["date"] = frame["date"].iloc[0]
        write_parquet(passes, out / "device_passes.parquet")
        print(passes.drop(columns=["id"]).to_string(index=False))
        print(f"the {passes.set.iloc[0]} set's {len(passes)} passes on {_device_name(target)}: "
              f"{passes.seconds.sum():.0f} s (the plan estimates {passes.estimated_seconds.sum() / 60:.0f} min on a "
              "hosted 4-core runner)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis bench")
    parser.add_argument("--quick", action="store_true", help="small models only, fewer images (CI)")
    parser.add_argument("--dry-run", action="store_true",
                        help="also run every page with the paper set's largest models (always on without --quick)")
    parser.add_argument("--out", default=str(BENCH_DIR))
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--precision", default="float32", help="float32 or bfloat16 (autocast) for the throughput")
    parser.add_argument("--device-checks", action="store_true",
                        help="only the ratios a GPU decides (capture in float32 and bfloat16, the probe fit) on "
                             "--device, into device_ratios.parquet, and the --pass-set's passes timed there, "
                             "into device_passes.parquet: minutes, for a lent GPU machine")
    parser.add_argument("--pass-set", default="lite", choices=["lite", "ci", "paper", "none"],
                        help="with --device-checks: the parameter set whose passes are timed (none: no passes)")
    parser.add_argument("--pass-plan", default=None, metavar="FILE",
                        help="with --device-checks: time the passes of this plan (`python -m analysis plan --json`, "
                             "written where the notebooks' tools are) instead of planning --pass-set here")
    args = parser.parse_args(argv)
    import os

    weights_dir = args.weights_dir or os.environ.get(models.WEIGHTS_DIR_ENV)
    out = Path(args.out)
    if args.device_checks:
        return device_checks(args.device, weights_dir, out, None if args.pass_set == "none" else args.pass_set,
                             args.pass_plan)
    rebuild, passes = rebuild_ratio(weights_dir)
    ratios = accelerator_ratios(args.device, weights_dir, repeats=1 if args.quick else 3)
    ratios += [rss_ratio(2 if args.quick else 4, weights_dir), rebuild]
    frame = judged(pd.DataFrame(ratios))
    sizes = models.FAMILIES["dinov2"][: 2 if args.quick else 4]
    measured = throughput(sizes, PAPER["norm_histogram"]["resolution"], n_images=1 if args.quick else 2,
                          device=args.device, precision=args.precision)
    projection = projected_paper_time(measured)
    write_parquet(frame, out / "ratios.parquet")
    write_parquet(projection, out / "throughput.parquet")
    write_parquet(passes, out / "passes.parquet")
    (out / "machine.json").write_text(json.dumps({"cpus": os.cpu_count(), "torch": torch.__version__,
                                                   "threads": torch.get_num_threads(), "quick": args.quick,
                                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    print(frame.to_string(index=False))
    print(projection.to_string(index=False))
    print(f"projected model time of the paper set: {projection.seconds.sum() / 60:.1f} min")
    if args.dry_run or not args.quick:  # the paper set's largest models at full size, random weights, every page
        runs = page_dry_run(DRY_RUN_MODELS, 2, args.device, weights_dir)
        write_parquet(runs, out / "dry_run.parquet")
        print(runs.drop(columns=["models"]).to_string(index=False))
        for row in runs[(runs.status == "ran") & ~runs.within_target].itertuples():
            print(f"target missed: {row.page} peaked at {row.peak_rss_mib:.0f} MiB > {row.target_mib:.0f} MiB")
        if (runs.status != "ran").any():  # a page that cannot run at full size is a failure, not a slow machine
            return 1
    for row in frame[~frame.passed].itertuples():  # reported on the appendix; a slow machine is not an error
        print(f"target missed: {row.metric} = {row.value:.2f} > {row.target:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
