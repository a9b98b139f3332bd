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


def capture_overhead(spec: str = models.OFFLINE_MODEL, batch: int = 8, resolution: int = 224, repeats: int = 7) -> dict:
    """Median time of the hooked capture over a bare ``forward_features`` (same model, same batch)."""
    model, _ = models.load_model(spec, img_size=resolution)
    images = torch.randn(batch, 3, resolution, resolution)

    def bare():
        with torch.inference_mode():
            model.forward_features(images)

    def hooked():
        hooks.capture_tokens(model, images, attention_blocks=(-1,))

    bare(), hooked()  # warm-up: allocator, kernels
    bare_times, hooked_times = [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        bare_times.append(_median_time(bare, 1))
        hooked_times.append(_median_time(hooked, 1))
    ratio = statistics.median(hooked_times) / statistics.median(bare_times)
    return {"metric": "capture_overhead", "value": ratio, "unit": "x",
            "detail": f"{spec}, batch {batch} @ {resolution}px: hooked {statistics.median(hooked_times):.3f}s "
                      f"vs bare {statistics.median(bare_times):.3f}s (median of {repeats})"}


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


def throughput(specs: list[str], resolution: int, n_images: int = 2) -> pd.DataFrame:
    """Images/s of one hooked pass per model (random weights: same compute as the pretrained ones)."""
    rows = []
    for spec in specs:
        name = models.ModelSpec.parse(spec).name
        model, _ = models.load_model(f"random:{name}", img_size=resolution)
        images = torch.randn(n_images, 3, resolution, resolution)
        hooks.capture_tokens(model, images[:1])  # warm-up
        seconds = _median_time(lambda: hooks.capture_tokens(model, images), 1)
        rows.append({"model": name, "resolution": resolution, "params_m": _mega_params(name, resolution),
                     "tokens": _token_count(name, resolution), "images_per_s": n_images / seconds, "measured": True})
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis bench")
    parser.add_argument("--quick", action="store_true", help="small models only, fewer images (CI)")
    parser.add_argument("--out", default=str(BENCH_DIR))
    parser.add_argument("--weights-dir", default=None)
    args = parser.parse_args(argv)
    import os

    weights_dir = args.weights_dir or os.environ.get(models.WEIGHTS_DIR_ENV)
    out = Path(args.out)
    rebuild, passes = rebuild_ratio(weights_dir)
    ratios = [capture_overhead(), rss_ratio(2 if args.quick else 4, weights_dir), rebuild]
    frame = pd.DataFrame(ratios)
    frame["target"] = frame.metric.map(TARGETS)
    frame["passed"] = frame.value <= frame.target
    sizes = models.FAMILIES["dinov2"][: 2 if args.quick else 4]
    measured = throughput(sizes, PAPER["norm_histogram"]["resolution"], n_images=1 if args.quick else 2)
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
    return 0 if frame.passed.all() else 1


if __name__ == "__main__":
    sys.exit(main())
