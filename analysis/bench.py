"""Benchmark: ratios measured in one run on one machine (never timed tests).

``python -m analysis bench [--quick]`` measures

1. hooked capture (every block's norms + last-block attention + patch embedding) vs a bare
   ``forward_features`` of the same model and batch — target ≤ 1.10×;
2. warm rebuild of the whole book (caches present, nothing changed) vs a cold build — target ≤ 0.15×;
3. peak RSS of a feature pass over 10·N images vs N images — target ≤ 1.3×;
4. throughput (images/s) per model size on this CPU and the projected time of the ``paper`` set.

Results go to ``_build/bench/`` as parquet (``ratios``, ``throughput``) for the book's appendix.
"""

from __future__ import annotations

import argparse
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
TARGETS = {"capture_overhead": 1.10, "warm_over_cold_build": 0.15, "rss_10n_over_n": 1.3}


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


def capture_overhead(spec: str = models.OFFLINE_MODEL, batch: int = 8, resolution: int = 224, repeats: int = 7,
                     device: str = "cpu") -> dict:
    """Median time of the hooked capture over a bare ``forward_features`` (same model, same batch, same device)."""
    from .features import resolve_device

    target = resolve_device(device)
    sync = _synchronised(target)
    model, _ = models.load_model(spec, img_size=resolution)
    model = model.to(target)
    images = torch.randn(batch, 3, resolution, resolution, device=target)

    def bare():
        with torch.inference_mode():
            model.forward_features(images)
        sync()

    def hooked():
        hooks.capture_tokens(model, images, attention_blocks=(-1,))
        sync()

    bare(), hooked()  # warm-up: allocator, kernels
    bare_times, hooked_times = [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        bare_times.append(_median_time(bare, 1))
        hooked_times.append(_median_time(hooked, 1))
    ratio = statistics.median(hooked_times) / statistics.median(bare_times)
    return {"metric": "capture_overhead", "value": ratio, "unit": "x",
            "detail": f"{spec} on {target.type}, batch {batch} @ {resolution}px: hooked "
                      f"{statistics.median(hooked_times):.4f}s vs bare {statistics.median(bare_times):.4f}s "
                      f"(median of {repeats})"}


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
features.extract({spec!r}, {folder!r}, None, 224, cache_dir={cache!r}, weights_dir={weights!r},
                 allow_hub=False, progress=False)
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
               repeats: int = 1) -> pd.DataFrame:
    """Images/s of one hooked pass and of a bare ``forward_features`` per model (random weights: same compute)."""
    from .features import resolve_device

    target = resolve_device(device)
    sync = _synchronised(target)
    rows = []
    for spec in specs:
        name = models.ModelSpec.parse(spec).name
        model, _ = models.load_model(f"random:{name}", img_size=resolution)
        model = model.to(target)
        images = torch.randn(n_images, 3, resolution, resolution, device=target)
        hooks.capture_tokens(model, images[:1])  # warm-up
        sync()

        def hooked():
            hooks.capture_tokens(model, images)
            sync()

        def bare():
            with torch.inference_mode():
                model.forward_features(images)
            sync()

        seconds, bare_seconds = _median_time(hooked, repeats), _median_time(bare, repeats)
        rows.append({"model": name, "resolution": resolution, "device": target.type,
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


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dry_run(spec: str, resolution: int = 448, n_images: int = 2, device: str = "cpu",
            cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Every page's building blocks on ``spec`` at full size with random weights: seconds, peak RSS and peak
    GPU memory per stage. The weights' own size is the reference for the memory target (peak ≤ 2× weights
    plus one batch's activations)."""
    import gc

    from . import discovery, findings, images, intervention, probes
    from .features import extract, resolve_device

    target = resolve_device(device)
    name = models.ModelSpec.parse(spec).name
    weights_mib = _mega_params(name, resolution) * 4  # float32
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(cache_dir or tmp)
        records = images.list_images("builtin")[:n_images]

        def stage(label, work):
            if target.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            result = work()
            _synchronised(target)()
            rows.append({"model": name, "stage": label, "seconds": time.perf_counter() - start,
                         "peak_rss_mib": _peak_rss_mib(), "weights_mib": weights_mib, "device": target.type,
                         "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if target.type == "cuda" else 0.0})
            return result

        random_spec = f"random:{name}"
        feats = stage("norms, attention (norm histogram, attention maps, layer, redundancy, census)",
                      lambda: extract(random_spec, records, None, resolution, cache_dir=cache, device=device,
                                      batch_size=n_images, progress=False, keep=("output",)))
        norms = findings.block_norms(feats)
        stage("layer onset interval", lambda: findings.onset_interval(norms, n_resamples=99))
        high = norms[:, -1] > np.quantile(norms[:, -1], 0.98)  # a stand-in mask: random weights have no outliers
        prefix, patch = feats.meta["num_prefix_tokens"], feats.meta["patch_size"]
        model, _ = stage("load the model again (test-time register)", lambda: models.load_model(random_spec,
                                                                                             img_size=resolution))
        model = model.to(target)
        pixels = images.pixel_batch(records, model, resolution)
        neurons = stage("register units (streamed)", lambda: intervention.choose_neurons(
            model, pixels, torch.from_numpy(high), batch_size=n_images))

        def moved():
            with intervention.test_time_register(model, neurons):
                return hooks.capture_batches(model, pixels, n_images, keep_keys=True)

        capture = stage("test-time register pass", moved)
        stage("LOST on keys", lambda: discovery.find_boxes(capture.keys[:, prefix + 1:].numpy(), capture.grid, patch,
                                                         [(1.0, 1.0)] * n_images))
        stage("local probes", lambda: probes.local_information(
            feats.arrays["output"][:, prefix:], probes.patch_pixels(pixels.numpy(), patch), np.array([0]),
            np.array([1]), capture.grid[1]))
        del model
        gc.collect()
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis bench")
    parser.add_argument("--quick", action="store_true", help="small models only, fewer images (CI)")
    parser.add_argument("--out", default=str(BENCH_DIR))
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    import os

    weights_dir = args.weights_dir or os.environ.get(models.WEIGHTS_DIR_ENV)
    out = Path(args.out)
    rebuild, passes = rebuild_ratio(weights_dir)
    ratios = [capture_overhead(device=args.device), rss_ratio(2 if args.quick else 4, weights_dir), rebuild]
    frame = pd.DataFrame(ratios)
    frame["target"] = frame.metric.map(TARGETS)
    frame["passed"] = frame.value <= frame.target
    sizes = models.FAMILIES["dinov2"][: 2 if args.quick else 4]
    measured = throughput(sizes, PAPER["norm_histogram"]["resolution"], n_images=1 if args.quick else 2,
                          device=args.device)
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
    if not args.quick:  # the paper set's largest models at full size, random weights, every page's blocks
        runs = pd.concat([dry_run(spec, PAPER["norm_histogram"]["resolution"], 2, args.device)
                          for spec in ("vit_giant_patch14_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m")])
        write_parquet(runs, out / "dry_run.parquet")
        print(runs.to_string(index=False))
    return 0 if frame.passed.all() else 1


if __name__ == "__main__":
    sys.exit(main())
