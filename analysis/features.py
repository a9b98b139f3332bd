"""The feature cache: one hooked pass per (model, weights, images, resolution), saved as tidy parquet.

Flow: image records → model (hooks) → metrics → three tidy frames → parquet under
``<cache>/<model>-<key>/``. The key hashes the model spec, the weights' hash (or seed),
the image set, the resolution and :data:`analysis.metrics.METRIC_VERSION`. An entry is written
batch by batch (parquet row groups, ``.npy`` files of their final shape), so memory stays flat however
many images a pass has, into a temporary folder renamed into place at the end: an interrupted run never
leaves a half-written entry; the next run simply recomputes it.

Frames (one row per …):

* ``norms``     image × block × token: ``image_id, layer, token, kind, row, col, norm``
  (``kind`` is ``cls``, ``register`` or ``patch``; ``row``/``col`` are −1 for prefix tokens);
* ``patches``   image × patch: ``image_id, token, row, col, neighbour_cosine, cls_attention, norm``
  (last block; ``cls_attention`` is the head-mean CLS attention, ``neighbour_cosine`` is
  measured right after patch embedding);
* ``attention`` image × head × token: last block CLS attention per head, all tokens.

A page that needs more than reductions asks for it with ``keep``: ``"output"`` (output tokens after
the final LayerNorm, ``(B, N, D)``, for linear probes and the classifier head) or ``"keys"`` (the last
block's attention keys, for LOST); they are stored as ``.npy`` arrays in the same entry. An entry
that lacks a requested array is recomputed once with everything asked for so far.

Every model pass appends one line to ``<cache>/passes.jsonl``, so the benchmark can count passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from . import hooks, images, metrics, models, twins

DEFAULT_CACHE_ENV = "REGISTERS_CACHE"
FRAMES = ("norms", "patches", "attention")
ARRAYS = ("output", "keys")


def default_cache_dir() -> Path:
    return Path(os.environ.get(DEFAULT_CACHE_ENV, Path.cwd() / "_build" / "cache"))


@dataclass
class Features:
    """A cached pass: tidy frames plus what produced them."""

    norms: pd.DataFrame
    patches: pd.DataFrame
    attention: pd.DataFrame
    meta: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def provenance(self) -> models.Provenance:
        return models.Provenance(**self.meta["provenance"])

    @property
    def depth(self) -> int:
        return int(self.meta["depth"])

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.meta["grid"])

    @property
    def predicted_class(self) -> np.ndarray:
        """``(images,)`` the classifier head's top-1 class per image, −1 where the model has no head."""
        return np.array([image["predicted_class"] for image in self.meta["images"]])

    @property
    def notes(self) -> list[str]:
        """Which images the pass used, and what happened to them: conversions (per image), unreadable files
        skipped, a mixed precision's measured norm deviation."""
        converted = [note for image in self.meta["images"] for note in image.get("notes", [])]
        mixed = ([f"ran in {self.meta['precision']}: token norms within {self.meta['norm_deviation']:.2%} of float32 "
                  "(99th percentile, first batch)"] if self.meta.get("norm_deviation") is not None else [])
        used = [self.meta["image_sample"]] if "image_sample" in self.meta else []
        return used + converted + [f"skipped {problem}" for problem in self.meta.get("skipped", [])] + mixed

    def patch_norms(self, layer: int = -1) -> pd.DataFrame:
        """Patch-token rows of one block (negative counts from the end)."""
        layer = layer + self.depth if layer < 0 else layer
        frame = self.norms
        return frame[(frame.layer == layer) & (frame.kind == "patch")]


def cache_key(provenance: models.Provenance, spec: str, image_key: str, resolution: int, square: bool = False,
              precision: str = "float32") -> str:
    identity = {
        "spec": spec,
        "weights": provenance.sha256 or provenance.location,
        "seed": provenance.seed,
        "images": image_key,
        "resolution": resolution,
        "metric_version": metrics.METRIC_VERSION,
    }
    if square:  # whole image squeezed to a square instead of a centre crop
        identity["transform"] = "square"
    if precision != "float32":
        identity["precision"] = precision
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _token_layout(num_prefix: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token ``kind``, ``row``, ``col`` arrays for ``num_prefix + h*w`` tokens (CLS first when there is one)."""
    h, w = grid
    kinds = np.array((["cls"] + ["register"] * (num_prefix - 1) if num_prefix else []) + ["patch"] * (h * w))
    rows = np.concatenate([np.full(num_prefix, -1), np.repeat(np.arange(h), w)])
    cols = np.concatenate([np.full(num_prefix, -1), np.tile(np.arange(w), h)])
    return kinds, rows, cols


def frames_from_capture(capture: hooks.Capture, image_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Reduce one batch's :class:`~analysis.hooks.Capture` to the three tidy frames."""
    batch, depth, num_tokens = capture.block_norms.shape
    prefix, grid = capture.num_prefix_tokens, capture.grid
    kinds, rows, cols = _token_layout(prefix, grid)
    ids = np.asarray(image_ids, dtype=object)

    norms = pd.DataFrame(
        {
            "image_id": np.repeat(ids, depth * num_tokens),
            "layer": np.tile(np.repeat(np.arange(depth), num_tokens), batch),
            "token": np.tile(np.arange(num_tokens), batch * depth),
            "kind": np.tile(kinds, batch * depth),
            "row": np.tile(rows, batch * depth),
            "col": np.tile(cols, batch * depth),
            "norm": capture.block_norms.reshape(-1).cpu().numpy(),
        }
    )

    num_patches = grid[0] * grid[1]
    embed_grid = capture.patch_embed.reshape(batch, grid[0], grid[1], -1).float().cpu()
    if capture.cls_attention:
        cls_attention = capture.cls_attention[max(capture.cls_attention)].float().cpu()  # (B, H, N)
    else:  # a model without a CLS token: no CLS attention (nan), no per-head rows
        cls_attention = torch.full((batch, 0, num_tokens), float("nan"))
    heads = cls_attention.shape[1]
    patches = pd.DataFrame(
        {
            "image_id": np.repeat(ids, num_patches),
            "token": np.tile(np.arange(prefix, num_tokens), batch),
            "row": np.tile(rows[prefix:], batch),
            "col": np.tile(cols[prefix:], batch),
            "neighbour_cosine": metrics.neighbour_cosine(embed_grid).reshape(-1).numpy(),
            "cls_attention": (cls_attention[:, :, prefix:].mean(1) if heads else
                              torch.full((batch, num_patches), float("nan"))).reshape(-1).numpy(),
            "norm": capture.block_norms[:, -1, prefix:].reshape(-1).cpu().numpy(),
        }
    )
    attention = pd.DataFrame(
        {
            "image_id": np.repeat(ids, heads * num_tokens),
            "head": np.tile(np.repeat(np.arange(heads), num_tokens), batch),
            "token": np.tile(np.arange(num_tokens), batch * heads),
            "kind": np.tile(kinds, batch * heads),
            "row": np.tile(rows, batch * heads),
            "col": np.tile(cols, batch * heads),
            "attention": cls_attention.reshape(-1).numpy(),
        }
    )
    return {"norms": norms, "patches": patches, "attention": attention}


def _read_entry(folder: Path) -> Features:
    meta = json.loads((folder / "meta.json").read_text())
    # memory-mapped: a page reads the rows it needs, not thousands of images' tokens at once
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta.get("kept", [])}
    return Features(*(pd.read_parquet(folder / f"{name}.parquet") for name in FRAMES), meta=meta, arrays=arrays)


def log_pass(cache_dir: Path, record: dict) -> None:
    """Append one model pass to ``<cache>/passes.jsonl`` (read by the benchmark)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "passes.jsonl", "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def count_passes(cache_dir: str | Path) -> pd.DataFrame:
    """The model passes logged under ``cache_dir``: one row each (spec, images, resolution, keep)."""
    path = Path(cache_dir) / "passes.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["spec", "images", "resolution", "keep", "square"])
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_abandoned(folder: Path) -> None:
    """Delete temporary folders of ``folder``'s entry left by killed runs (their process is gone)."""
    for stale in folder.parent.glob(f".tmp-{folder.name}-*"):
        pid = stale.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


class EntryWriter:
    """Writes one cache entry batch by batch, so memory stays flat however many images the pass has.

    Frames are appended to parquet files as row groups and kept arrays are written into ``.npy``
    files of their final shape, all inside a private temporary folder named after the writing process;
    :meth:`commit` renames it into place, so readers never see a partial entry, and a later run can
    tell the leftovers of a killed run from a write still in progress and remove them.
    """

    def __init__(self, folder: Path, n_images: int):
        self.folder, self.n_images, self.written = folder, n_images, 0
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(folder)
        self.tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.tables: dict[str, pq.ParquetWriter] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def add_batch(self, frames: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray], batch: int) -> None:
        """Append one batch of ``batch`` images: its tidy frames, and its kept arrays ``(B, ...)``."""
        for name in FRAMES:
            table = pa.Table.from_pandas(frames[name], preserve_index=False)
            if name not in self.tables:
                self.tables[name] = pq.ParquetWriter(self.tmp / f"{name}.parquet", table.schema)
            self.tables[name].write_table(table.cast(self.tables[name].schema))
        for name, array in arrays.items():
            if name not in self.arrays:
                self.arrays[name] = np.lib.format.open_memmap(
                    self.tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(self.n_images, *array.shape[1:]))
            self.arrays[name][self.written : self.written + batch] = array
        self.written += batch

    def commit(self, meta: dict) -> None:
        """Close the files, write ``meta.json`` last, and rename the folder into place."""
        try:
            for writer in self.tables.values():
                writer.close()
            for array in self.arrays.values():
                array.flush()
            self.arrays.clear()
            (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            if self.folder.is_dir() and not set(meta["kept"]) <= set(
                    json.loads((self.folder / "meta.json").read_text()).get("kept", [])):
                shutil.rmtree(self.folder, ignore_errors=True)  # an older entry with fewer arrays: replaced
            try:
                os.rename(self.tmp, self.folder)
            except OSError:  # another run finished the same entry first: keep theirs
                if not (self.folder / "meta.json").is_file():
                    raise
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the temporary folder (after a commit, whatever the rename left)."""
        for writer in self.tables.values():
            writer.close()
        self.tables.clear()
        self.arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


#: Precisions a pass may run in; bfloat16 runs under autocast, after :func:`check_precision` agreed.
PRECISIONS = ("float32", "bfloat16")
#: bfloat16 is allowed where the 99th percentile of every token's relative norm change (all blocks,
#: first batch) stays at or below this. ViT-Ti on CPU measures 0.8 % (median 0.16 %).
PRECISION_TOLERANCE = 0.02


class PrecisionError(ValueError):
    """Mixed precision would move the token norms further from float32 than the stated tolerance."""


def autocast(device: torch.device, precision: str):
    """A context that runs the pass in ``precision`` on ``device`` (float32: nothing changes)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def norm_deviation(model: torch.nn.Module, pixels: torch.Tensor, precision: str) -> float:
    """99th percentile over images, blocks and tokens of ``|norm(precision) − norm(float32)| / norm(float32)``
    for one batch ``pixels`` ``(B, 3, H, W)`` on the model's device."""
    exact = hooks.capture_tokens(model, pixels, attention_blocks=()).block_norms
    with autocast(pixels.device, precision):
        mixed = hooks.capture_tokens(model, pixels, attention_blocks=()).block_norms
    relative = ((mixed - exact).abs() / exact.clamp_min(1e-6)).flatten().float()
    return float(torch.quantile(relative[:: max(1, len(relative) // 1_000_000)], 0.99))  # quantile caps its input


def check_precision(model: torch.nn.Module, pixels: torch.Tensor, precision: str, name: str,
                    tolerance: float = PRECISION_TOLERANCE) -> float | None:
    """The measured norm deviation of ``precision`` (None for float32); raises :class:`PrecisionError`
    when it exceeds ``tolerance``."""
    if precision == "float32":
        return None
    deviation = norm_deviation(model, pixels, precision)
    if deviation > tolerance:
        raise PrecisionError(
            f"{precision} changes {name}'s token norms by {deviation:.2%} (99th percentile over the first batch), "
            f"more than the {tolerance:.1%} allowed: run it with precision='float32'")
    return deviation


def resolve_device(device: str | None) -> torch.device:
    """``"auto"`` (or None): CUDA when available, else CPU; otherwise the named device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available here (use 'auto' or 'cpu')")
    return resolved


def extract(
    spec: str,
    image_source: str | Path | list[images.ImageRecord] = "builtin",
    n_images: int | None = None,
    resolution: int = 224,
    *,
    seed: int = 0,
    weights_dir: str | Path | None = None,
    weights_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 4,
    keep: tuple[str, ...] = (),
    square: bool = False,
    device: str | None = "auto",
    precision: str = "float32",
    allow_hub: bool = True,
    progress: bool = True,
    plant: "twins.Plant | None" = None,
) -> Features:
    """Features of ``spec`` on a seeded sample of ``n_images`` from ``image_source`` at ``resolution`` px.

    ``image_source``: ``"builtin"``, a folder, or a list of image records (e.g. labelled digits);
    ``keep``: arrays to store besides the reductions (``"output"``, ``"keys"``); ``square``: squeeze
    the whole image to a square instead of taking the centre crop (boxes then map back by scaling);
    ``precision``: ``"bfloat16"`` runs under autocast once its norms agreed with float32 on the first
    batch within :data:`PRECISION_TOLERANCE` (else :class:`PrecisionError`);
    ``plant``: run the model as a twin with planted high-norm tokens (:mod:`analysis.twins`); the plant
    goes into the cache key, ``meta["plant"]`` and, per image, what was planted into ``meta["planted"]``.
    Reads the cache when the same pass was done before; otherwise runs the model once.
    """
    autocast(torch.device("cpu"), precision)  # an unknown precision is refused before anything runs
    unknown = set(keep) - set(ARRAYS)
    if unknown:
        raise ValueError(f"unknown array(s) to keep: {sorted(unknown)}; choose from {ARRAYS}")
    candidates = image_source if isinstance(image_source, list) else images.list_images(image_source)
    ordered = images.sample_order(candidates, n_images, seed)  # the sample first, then its replacements
    images.check_resolution_value(resolution)
    provenance = models.resolve_weights(
        spec, weights_file=weights_file, weights_dir=weights_dir, seed=seed, allow_hub=allow_hub
    )
    architecture = models.build_architecture(provenance.model, resolution, device="meta")
    images.check_resolution(resolution, models.patch_size(architecture))
    image_key = f"{images.image_set_key(ordered)}:{n_images}"
    key = cache_key(provenance, spec, image_key, resolution, square, precision)
    if plant is not None:
        key = twins.cache_key(key, plant)
    cache = Path(cache_dir or default_cache_dir())
    twin = f"twin-{plant.name}-" if plant is not None else ""
    folder = cache / f"{provenance.model}-{'random-' if provenance.is_random else ''}{twin}{key}"
    if (folder / "meta.json").is_file():
        kept = json.loads((folder / "meta.json").read_text()).get("kept", [])
        if set(keep) <= set(kept):
            return _read_entry(folder)
        keep = tuple(sorted(set(keep) | set(kept)))

    sample = images.readable_sample(candidates, n_images, seed)  # unreadable files skipped and listed
    records = sample.records
    target = resolve_device(device)
    model, provenance = models.load_model(
        spec, img_size=resolution, weights_file=weights_file, weights_dir=weights_dir, seed=seed, allow_hub=allow_hub
    )
    model = model.to(target)
    transform = (images.make_square_transform if square else images.make_transform)(model, resolution)
    writer = EntryWriter(folder, len(records))
    batches = images.iter_batches(records, transform, batch_size)
    total = -(-len(records) // batch_size)
    capture, predicted, deviation, planted = None, [], None, {}
    planting = ExitStack()  # a twin's hooks (analysis.twins), removed in `finally`
    try:
        ledger = planting.enter_context(twins.attach(model, plant)) if plant is not None else None
        for chunk, pixels in tqdm(batches, total=total, desc=f"{spec} @ {resolution}px", unit="batch",
                                  disable=None if progress else True):  # None: only on a terminal
            pixels = pixels.to(target)
            if capture is None:
                deviation = check_precision(model, pixels, precision, spec)
            with autocast(target, precision):
                capture = hooks.capture_tokens(model, pixels, attention_blocks=(-1,),
                                               keep_output="output" in keep, keep_keys="keys" in keep)
            writer.add_batch(frames_from_capture(capture, [r.image_id for r in chunk]),
                             {name: getattr(capture, name).float().cpu().numpy() for name in keep}, len(chunk))
            predicted += capture.predicted_class.tolist()
            if ledger is not None:
                planted.update(ledger.last_pass([r.image_id for r in chunk]))
        meta = {
            "spec": spec,
            "provenance": provenance.as_dict(),
            "resolution": resolution,
            "patch_size": models.patch_size(model),
            "grid": list(capture.grid),
            "depth": len(model.blocks),
            "num_prefix_tokens": capture.num_prefix_tokens,
            "num_registers": capture.num_prefix_tokens - int(hooks.has_cls_token(model)),
            "has_cls_token": hooks.has_cls_token(model),
            "embed_dim": model.embed_dim,
            "images": [{"image_id": r.image_id, "origin": r.origin, "notes": r.notes, "label": r.label,
                        "predicted_class": label} for r, label in zip(records, predicted)],
            "image_sample": images.describe_sample(records, image_source),
            "skipped": sample.skipped,
            "metric_version": metrics.METRIC_VERSION,
            "torch": torch.__version__,
            "device": str(target),
            "precision": precision,
            "norm_deviation": deviation,
            "square": square,
            "kept": sorted(keep),
        }
        if plant is not None:
            meta["plant"], meta["planted"] = plant.as_dict(), planted
        writer.commit(meta)
    except BaseException:  # interrupted or failed before the rename: no temporary folder is left behind
        writer.abort()
        raise
    finally:
        planting.close()
    log_pass(cache, {"spec": spec, "images": image_key, "resolution": resolution,
                     "keep": sorted(keep), "square": square, **({"plant": plant.name} if plant is not None else {})})
    return _read_entry(folder)
