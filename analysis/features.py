"""The feature cache: one hooked pass per (model, weights, images, resolution), saved as tidy parquet.

Flow: image records → model (hooks) → metrics → three tidy frames → parquet under
``<cache>/<model>-<key>/``. The key hashes the model spec, the weights' hash (or seed),
the image set, the resolution and :data:`analysis.metrics.METRIC_VERSION`. An entry is written
batch by batch (parquet row groups, ``.npy`` files of their final shape), so memory stays flat however
many images a pass has, into a temporary folder renamed into place at the end: an interrupted run never
leaves a half-written entry; the next run simply recomputes it.

Frames (one row per …):

* ``norms``     image × block × token: ``image_id, block, token, kind, row, col, norm``
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

A long pass may run in parts (:func:`extract_part`: contiguous, batch-aligned ranges of its seeded sample, each
written under ``<cache>/parts/``, on any machine); :func:`assemble_parts` joins a complete set into the entry the
whole pass writes (the pass plan's ``pass``/``merge`` commands do both).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from . import hooks, images, intervention, metrics, models, twins

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

    def patch_rows(self, block: int = -1) -> pd.DataFrame:
        """The ``norms`` frame's patch-token rows of one block (negative counts from the end)."""
        block = block + self.depth if block < 0 else block
        frame = self.norms
        return frame[(frame.block == block) & (frame.kind == "patch")]


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


def _token_frame(ids: np.ndarray, inner: str, values: np.ndarray, layout: tuple[np.ndarray, np.ndarray, np.ndarray],
                 column: str) -> pd.DataFrame:
    """Tidy rows of ``values`` ``(B, I, N)``: one per image × ``inner`` index (block or head) × token, with the
    token's ``kind``, ``row`` and ``col`` from ``layout`` (:func:`_token_layout`)."""
    batch, size, num_tokens = values.shape
    kinds, rows, cols = layout
    return pd.DataFrame({
        "image_id": np.repeat(ids, size * num_tokens),
        inner: np.tile(np.repeat(np.arange(size), num_tokens), batch),
        "token": np.tile(np.arange(num_tokens), batch * size),
        "kind": np.tile(kinds, batch * size),
        "row": np.tile(rows, batch * size),
        "col": np.tile(cols, batch * size),
        column: values.reshape(-1),
    })


def _last_cls_attention(capture: hooks.Capture) -> torch.Tensor:
    """``(B, H, N)`` the last captured block's CLS attention; ``(B, 0, N)`` for a model without a CLS token."""
    batch, _, num_tokens = capture.block_norms.shape
    if capture.cls_attention:
        return capture.cls_attention[max(capture.cls_attention)].float().cpu()
    return torch.full((batch, 0, num_tokens), float("nan"))


def frames_from_capture(capture: hooks.Capture, image_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Reduce one batch's :class:`~analysis.hooks.Capture` to the three tidy frames (module docstring)."""
    batch, _, num_tokens = capture.block_norms.shape
    prefix, grid = capture.num_prefix_tokens, capture.grid
    layout = _token_layout(prefix, grid)
    ids = np.asarray(image_ids, dtype=object)
    norms = _token_frame(ids, "block", capture.block_norms.cpu().numpy(), layout, "norm")

    num_patches = grid[0] * grid[1]
    embed_grid = capture.patch_embed.reshape(batch, grid[0], grid[1], -1).float().cpu()
    cls_attention = _last_cls_attention(capture)  # (B, H, N)
    mean_attention = (cls_attention[:, :, prefix:].mean(1) if cls_attention.shape[1]
                      else torch.full((batch, num_patches), float("nan")))  # no CLS token: nan
    patches = pd.DataFrame({
        "image_id": np.repeat(ids, num_patches),
        "token": np.tile(np.arange(prefix, num_tokens), batch),
        "row": np.tile(layout[1][prefix:], batch),
        "col": np.tile(layout[2][prefix:], batch),
        "neighbour_cosine": metrics.neighbour_cosine(embed_grid).reshape(-1).numpy(),
        "cls_attention": mean_attention.reshape(-1).numpy(),
        "norm": capture.block_norms[:, -1, prefix:].reshape(-1).cpu().numpy(),
    })
    attention = _token_frame(ids, "head", cls_attention.numpy(), layout, "attention")
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


class DiskFullError(OSError):
    """The disk holding the feature cache has too little free space for a pass's entry (``errno`` ENOSPC).

    The message is one line naming the folder, the free space and what the pass needs; nothing is left behind.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC  # set after construction: str() stays the one line, without "[Errno 28]"


#: Bytes one row of each frame takes on disk, rounded up from ViT-Ti/16 entries (parquet, 8 images: 6.3, 21
#: and 7.3): the float32 value is all that does not compress; ids and positions dictionary-encode to little.
ROW_BYTES = {"norms": 8, "patches": 24, "attention": 8}
#: ``meta.json``, parquet footers and row-group headers: small, but never zero.
ENTRY_OVERHEAD_BYTES = 1 << 20


def entry_bytes(n_images: int, blocks: int, tokens: int, heads: int,
                kept: dict[str, tuple[int, ...]] | None = None) -> int:
    """About how many bytes a cache entry of ``n_images`` takes on disk (an upper estimate).

    Rows: ``norms`` images × ``blocks`` × ``tokens``, ``patches`` images × ``tokens`` (prefix tokens counted:
    an upper bound), ``attention`` images × ``heads`` × ``tokens``; ``kept``: each kept array's per-image
    shape, e.g. ``{"output": (tokens, dim)}``, stored as float32 ``(n_images, *shape)``.
    """
    rows = {"norms": blocks * tokens, "patches": tokens, "attention": heads * tokens}
    frames = sum(ROW_BYTES[name] * count for name, count in rows.items())
    arrays = sum(4 * int(np.prod(shape)) for shape in (kept or {}).values())
    return n_images * (frames + arrays) + ENTRY_OVERHEAD_BYTES


def _batch_estimate(n_images: int, frames: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray],
                    batch: int) -> int:
    """:func:`entry_bytes` of ``n_images`` read off one batch of ``batch`` images (its frames and arrays)."""
    tokens = int(frames["norms"]["token"].max()) + 1
    blocks = len(frames["norms"]) // (batch * tokens)
    heads = len(frames["attention"]) // (batch * tokens)
    return entry_bytes(n_images, blocks, tokens, heads, {name: array.shape[1:] for name, array in arrays.items()})


def is_disk_full(error: BaseException) -> bool:
    """An OSError that means the disk (or the user's quota) is full; pyarrow's carry no errno, only the text."""
    return isinstance(error, OSError) and (
        error.errno in (errno.ENOSPC, errno.EDQUOT)
        or any(text in str(error) for text in ("No space left on device", "Disk quota exceeded")))


def _megabytes(size: int | float) -> str:
    return f"{size / 1e6:,.1f} MB" if size < 1e9 else f"{size / 1e9:,.2f} GB"


def _preallocate(path: Path) -> None:
    """Reserve ``path``'s blocks now: a memory-mapped write into a sparse file on a full disk is a SIGBUS
    that kills the kernel (and leaves the temporary folder), where ``posix_fallocate`` raises ENOSPC."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as error:
            if is_disk_full(error):
                raise
            # EOPNOTSUPP / EINVAL: a file system without preallocation; writes then find out


class EntryWriter:
    """Writes one cache entry batch by batch, so memory stays flat however many images the pass has.

    Frames are appended to parquet files as row groups and kept arrays are written into ``.npy``
    files of their final shape, all inside a private temporary folder named after the writing process;
    :meth:`commit` renames it into place, so readers never see a partial entry, and a later run can
    tell the leftovers of a killed run from a write still in progress and remove them.

    Disk space: before anything is written (``expected_bytes`` when the caller knows the entry's size, see
    :func:`entry_bytes`; otherwise from the first batch) the free space is checked, and a full disk met while
    writing is the same :class:`DiskFullError`, with the temporary folder removed.
    """

    def __init__(self, folder: Path, n_images: int, expected_bytes: int | None = None):
        self.folder, self.n_images, self.written = folder, n_images, 0
        self.needed = expected_bytes  # bytes the entry will take, once known
        self.tables: dict[str, pq.ParquetWriter] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(folder)
            if expected_bytes is not None:
                self._check_free_space(expected_bytes)
            self.tmp.mkdir()
        except OSError as error:
            self._raise_if_disk_full(error)
            raise

    def _disk_full(self, free: int | None = None) -> DiskFullError:
        """The one-line error: where, how much is free, how much the pass needs."""
        if free is None:
            try:
                free = shutil.disk_usage(self.folder.parent).free
            except OSError:
                free = 0
        needs = (f"the pass needs about {_megabytes(self.needed)} ({self.n_images} images)" if self.needed
                 else f"the pass writes {self.n_images} images")
        return DiskFullError(f"not enough disk space for the feature cache in {self.folder.parent}: "
                             f"{_megabytes(free)} free, {needs}; free some space or set {DEFAULT_CACHE_ENV} "
                             "to a folder on a larger disk (nothing was written)")

    def _check_free_space(self, needed: int) -> None:
        self.needed = needed
        free = shutil.disk_usage(self.folder.parent).free
        if free < needed:
            self.abort()
            raise self._disk_full(free)

    def _raise_if_disk_full(self, error: OSError) -> None:
        """Turn ENOSPC (or a full quota) into :class:`DiskFullError`, removing the temporary folder first."""
        if isinstance(error, DiskFullError):
            return
        if is_disk_full(error):
            self.abort()
            raise self._disk_full() from None

    def add_batch(self, frames: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray], batch: int) -> None:
        """Append one batch of ``batch`` images: its tidy frames, and its kept arrays ``(B, ...)``."""
        if self.needed is None:  # first batch: its shapes give the entry's size before a byte is written
            self._check_free_space(_batch_estimate(self.n_images, frames, arrays, batch))
        try:
            for name in FRAMES:
                table = pa.Table.from_pandas(frames[name], preserve_index=False)
                if name not in self.tables:
                    self.tables[name] = pq.ParquetWriter(self.tmp / f"{name}.parquet", table.schema)
                self.tables[name].write_table(table.cast(self.tables[name].schema))
            for name, array in arrays.items():
                if name not in self.arrays:
                    path = self.tmp / f"{name}.npy"
                    self.arrays[name] = np.lib.format.open_memmap(
                        path, mode="w+", dtype=np.float32, shape=(self.n_images, *array.shape[1:]))
                    _preallocate(path)
                self.arrays[name][self.written : self.written + batch] = array
        except OSError as error:
            self._raise_if_disk_full(error)
            raise
        self.written += batch

    def add_part(self, folder: Path, keep: Sequence[str], count: int) -> None:
        """Append the ``count`` images of a part folder (:func:`extract_part`): its frames' row groups as they were
        written, and its kept arrays ``keep``, copied a few images at a time (memory stays flat)."""
        try:
            for name in FRAMES:
                source = pq.ParquetFile(folder / f"{name}.parquet")
                for group in range(source.num_row_groups):
                    table = source.read_row_group(group)
                    if name not in self.tables:
                        self.tables[name] = pq.ParquetWriter(self.tmp / f"{name}.parquet", table.schema)
                    self.tables[name].write_table(table.cast(self.tables[name].schema))
            for name in keep:
                array = np.load(folder / f"{name}.npy", mmap_mode="r")
                if name not in self.arrays:
                    path = self.tmp / f"{name}.npy"
                    self.arrays[name] = np.lib.format.open_memmap(
                        path, mode="w+", dtype=np.float32, shape=(self.n_images, *array.shape[1:]))
                    _preallocate(path)
                for start in range(0, count, 16):
                    stop = min(count, start + 16)
                    self.arrays[name][self.written + start : self.written + stop] = array[start:stop]
        except OSError as error:
            self._raise_if_disk_full(error)
            raise
        self.written += count

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
        except OSError as error:
            self._raise_if_disk_full(error)
            raise
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the temporary folder (after a commit, whatever the rename left)."""
        for writer in self.tables.values():
            try:
                writer.close()
            except OSError:  # closing writes the footer: on a full disk it fails too, and the folder goes anyway
                pass
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


@dataclass(frozen=True)
class RunOptions:
    """How a page runs its passes, built once from its parameters cell and handed to every :func:`extract`.

    ``image_source``: ``"builtin"``, ``"imagenette"``, a folder, one image file, or a list of image records
    (e.g. labelled digits); ``n_images``: the seeded sample's size (None: all); ``resolution``: input side in
    pixels; ``seed``: image sampling and random initialisation; ``device``: ``"auto"`` (CUDA when there is
    one), ``"cpu"``, ``"cuda"``; ``precision``: ``"bfloat16"`` runs under autocast once its norms agreed with
    float32 on the first batch within :data:`PRECISION_TOLERANCE` (else :class:`PrecisionError`).
    """

    image_source: str | Path | list = "builtin"
    n_images: int | None = None
    resolution: int = 224
    seed: int = 0
    weights_dir: str | Path | None = None
    device: str | None = "auto"
    precision: str = "float32"
    cache_dir: str | Path | None = None
    batch_size: int = 4
    allow_hub: bool = True
    progress: bool = True

    def replace(self, **changes) -> "RunOptions":
        """A copy with some options changed, e.g. ``run.replace(resolution=448)``."""
        return dataclasses.replace(self, **changes)


def pass_request(spec: str, ordered: list[images.ImageRecord], run: RunOptions, square: bool = False,
                 plant: "twins.Plant | None" = None, register: Sequence[intervention.RegisterNeuron] = (),
                 weights_file: str | Path | None = None) -> dict:
    """What a pass was asked for, without the weights' hash: stored in every entry's ``meta["request"]``, so a
    machine without the weights (the book job of a sharded build) can find the entry another machine computed."""
    return {"spec": spec, "weights_file": Path(weights_file).name if weights_file else None,
            "images": f"{images.image_set_key(ordered, run.n_images)}:{run.n_images}",
            "resolution": run.resolution, "square": square, "precision": run.precision,
            "metric_version": metrics.METRIC_VERSION, "plant": plant.key() if plant is not None else None,
            "register": [[neuron.block, neuron.neuron] for neuron in register]}


def recorded_entry(spec: str, request: dict, keep: tuple[str, ...], cache_dir: str | Path | None = None
                   ) -> Features | None:
    """The cache entry computed for ``request`` on another machine, read without the weights (whose provenance it
    records), or None when there is none, or more than one (then only the weights can tell them apart)."""
    cache = Path(cache_dir or default_cache_dir())
    found = []
    for path in cache.glob(f"{models.ModelSpec.parse(spec).name}-*/meta.json"):
        meta = json.loads(path.read_text())
        if meta.get("request") == request and set(keep) <= set(meta.get("kept", [])):
            found.append(path.parent)
    return _read_entry(found[0]) if len(found) == 1 else None


@dataclass(frozen=True)
class _Entry:
    """Where a pass's cache entry lives, and what identifies it."""

    folder: Path
    image_key: str
    request: dict
    keep: tuple[str, ...]  # sorted; what the entry will hold (what was asked for, plus what it held before)
    cached: bool  # the entry exists and holds everything asked for: no pass needed


def _check_request(run: RunOptions, keep: tuple[str, ...]) -> None:
    autocast(torch.device("cpu"), run.precision)  # an unknown precision is refused before anything runs
    unknown = set(keep) - set(ARRAYS)
    if unknown:
        raise ValueError(f"unknown array(s) to keep: {sorted(unknown)}; choose from {ARRAYS}")
    images.check_resolution_value(run.resolution)


def register_key(base_key: str, register: Sequence[intervention.RegisterNeuron]) -> str:
    """A cache key for a pass with a test-time register moving ``register``'s units, on top of ``base_key``."""
    units = [[neuron.block, neuron.neuron] for neuron in register]
    return hashlib.sha256(f"{base_key}|test-time-register|{json.dumps(units)}".encode()).hexdigest()[:16]


def _locate_entry(spec: str, provenance: models.Provenance, ordered: list[images.ImageRecord], run: RunOptions,
                  keep: tuple[str, ...], square: bool, plant: "twins.Plant | None",
                  register: Sequence[intervention.RegisterNeuron], weights_file: str | Path | None = None) -> _Entry:
    """The cache folder of this pass; ``keep`` grows to what an existing entry already holds."""
    architecture = models.build_architecture(provenance.model, run.resolution, device="meta")
    images.check_resolution(run.resolution, models.patch_size(architecture))
    image_key = f"{images.image_set_key(ordered, run.n_images)}:{run.n_images}"
    key = cache_key(provenance, spec, image_key, run.resolution, square, run.precision)
    if plant is not None:
        key = twins.cache_key(key, plant)
    if register:
        key = register_key(key, register)
    twin = (f"twin-{plant.name}-" if plant is not None else "") + ("ttr-" if register else "")
    cache = Path(run.cache_dir or default_cache_dir())
    folder = cache / f"{provenance.model}-{'random-' if provenance.is_random else ''}{twin}{key}"
    held = (set(json.loads((folder / "meta.json").read_text()).get("kept", []))
            if (folder / "meta.json").is_file() else None)
    request = pass_request(spec, ordered, run, square, plant, register, weights_file)
    return _Entry(folder, image_key, request, tuple(sorted(set(keep) | (held or set()))),
                  cached=held is not None and set(keep) <= held)


def _pass_meta(spec: str, provenance: models.Provenance, model: torch.nn.Module, capture: hooks.Capture,
               sample: images.ImageSample, predicted: list[int], run: RunOptions, target: torch.device,
               deviation: float | None, square: bool, keep: tuple[str, ...], request: dict,
               records: list[images.ImageRecord] | None = None) -> dict:
    """``meta.json`` of an entry: what produced it, on which images, and what it holds (``records``: the images
    this run computed, a part's range of ``sample``; the sample's description and skipped files are the whole
    sample's, so that every part of a pass records the same)."""
    records = sample.records if records is None else records
    return {
        "spec": spec,
        "provenance": provenance.as_dict(),
        "resolution": run.resolution,
        "patch_size": models.patch_size(model),
        "grid": list(capture.grid),
        "depth": len(model.blocks),
        "num_prefix_tokens": capture.num_prefix_tokens,
        "num_registers": capture.num_prefix_tokens - int(hooks.has_cls_token(model)),
        "has_cls_token": hooks.has_cls_token(model),
        "embed_dim": model.embed_dim,
        "images": [{"image_id": r.image_id, "origin": r.origin, "notes": r.notes, "label": r.label,
                    "digest": r.content_digest(),
                    "predicted_class": label} for r, label in zip(records, predicted)],
        "image_sample": images.describe_sample(sample.records, run.image_source),
        "skipped": sample.skipped,
        "metric_version": metrics.METRIC_VERSION,
        "torch": torch.__version__,
        "device": str(target),
        "precision": run.precision,
        "norm_deviation": deviation,
        "square": square,
        "kept": sorted(keep),
        "request": request,
    }


def _run_pass(spec: str, sample: images.ImageSample, entry: _Entry, run: RunOptions, square: bool,
              plant: "twins.Plant | None", register: Sequence[intervention.RegisterNeuron],
              weights_file: str | Path | None, part: tuple[int, int] | None = None) -> None:
    """Run the hooked model over ``sample`` batch by batch and write the entry (nothing half-written); ``part``
    ``(index, count)``: only that part's range of the sample (:func:`part_span`), into its part folder."""
    records, target, folder = sample.records, resolve_device(run.device), entry.folder
    if part is not None:
        start, stop = part_span(len(sample.records), run.batch_size, *part)
        records, folder = sample.records[start:stop], part_folder(entry.folder, *part)
        if not records:  # fewer images than the plan expected: an empty part, which assembling skips
            writer = EntryWriter(folder, 0)
            writer.commit({"part": _part_record(part, start, stop, len(sample.records)), "images": [],
                           "kept": list(entry.keep), "request": entry.request})
            return
    model, provenance = models.load_model(spec, img_size=run.resolution, weights_file=weights_file,
                                          weights_dir=run.weights_dir, seed=run.seed, allow_hub=run.allow_hub)
    model = model.to(target)
    transform = (images.make_square_transform if square else images.make_transform)(model, run.resolution)
    writer = EntryWriter(folder, len(records))
    batches = images.iter_batches(records, transform, run.batch_size)
    total = -(-len(records) // run.batch_size)
    capture, predicted, deviation, planted = None, [], None, {}
    planting = ExitStack()  # a twin's hooks (analysis.twins), removed in `finally`
    try:
        ledger = planting.enter_context(twins.attach(model, plant)) if plant is not None else None
        if register:
            planting.enter_context(intervention.test_time_register(model, register))
        for chunk, pixels in tqdm(batches, total=total, desc=f"{spec} @ {run.resolution}px", unit="batch",
                                  disable=None if run.progress else True):  # None: only on a terminal
            pixels = pixels.to(target)
            if capture is None:
                deviation = check_precision(model, pixels, run.precision, spec)
            with autocast(target, run.precision):
                capture = hooks.capture_tokens(model, pixels, attention_blocks=(-1,),
                                               keep_output="output" in entry.keep, keep_keys="keys" in entry.keep)
            writer.add_batch(frames_from_capture(capture, [r.image_id for r in chunk]),
                             {name: getattr(capture, name).float().cpu().numpy() for name in entry.keep}, len(chunk))
            predicted += capture.predicted_class.tolist()
            if ledger is not None:
                planted.update(ledger.last_pass([r.image_id for r in chunk]))
        meta = _pass_meta(spec, provenance, model, capture, sample, predicted, run, target, deviation, square,
                          entry.keep, entry.request, records)
        if part is not None:
            meta["part"] = _part_record(part, start, stop, len(sample.records))
        if plant is not None:
            meta["plant"], meta["planted"] = plant.as_dict(), planted
        if register:
            meta["test_time_register"] = [dataclasses.asdict(neuron) for neuron in register]
        writer.commit(meta)
    except BaseException:  # interrupted or failed before the rename: no temporary folder is left behind
        writer.abort()
        raise
    finally:
        planting.close()


def extract(spec: str, run: RunOptions = RunOptions(), *, keep: tuple[str, ...] = (), square: bool = False,
            plant: "twins.Plant | None" = None, register: Sequence[intervention.RegisterNeuron] = (),
            weights_file: str | Path | None = None) -> Features:
    """Features of ``spec`` on the seeded image sample that ``run`` names, from the cache or from one pass.

    ``keep``: arrays to store besides the reductions (``"output"``, ``"keys"``); ``square``: squeeze the whole
    image to a square instead of taking the centre crop (boxes then map back by scaling); ``plant``: run the
    model as a twin with planted high-norm tokens (:mod:`analysis.twins`); the plant goes into the cache key,
    ``meta["plant"]`` and, per image, what was planted into ``meta["planted"]``; ``register``: run with a
    test-time register that these units are moved onto (:func:`analysis.intervention.test_time_register`; the
    extra token is a ``register`` row of the frames, right after the model's own prefix tokens);
    ``weights_file``: one explicit weight file instead of the resolver's search.
    """
    _check_request(run, keep)
    source = run.image_source
    candidates = source if isinstance(source, list) else images.list_images(source)
    ordered = images.sample_order(candidates, run.n_images, run.seed)  # the sample first, then its replacements
    weights_here = (Path(weights_file).is_file() if weights_file is not None
                    else models.weights_available(spec, run.weights_dir))
    if not weights_here:
        # no weights here: an entry computed elsewhere (a shard of the plan) is read with its recorded provenance
        request = pass_request(spec, ordered, run, square, plant, register, weights_file)
        recorded = recorded_entry(spec, request, keep, run.cache_dir)
        if recorded is not None:
            return _point_here(recorded, ordered)
    provenance = models.resolve_weights(spec, weights_file=weights_file, weights_dir=run.weights_dir,
                                        seed=run.seed, allow_hub=run.allow_hub)
    entry = _locate_entry(spec, provenance, ordered, run, keep, square, plant, register, weights_file)
    if entry.cached:
        return _point_here(_read_entry(entry.folder), ordered)
    sample = images.readable_sample(candidates, run.n_images, run.seed)  # unreadable files skipped and listed
    _run_pass(spec, sample, entry, run, square, plant, register, weights_file)
    log_pass(entry.folder.parent, {"spec": spec, "images": entry.image_key, "resolution": run.resolution,
                                   "keep": list(entry.keep), "square": square,
                                   **({"plant": plant.name} if plant is not None else {}),
                                   **({"test_time_register": len(register)} if register else {})})
    return _read_entry(entry.folder)


# --------------------------------------------------------------------------------------------------------
# A pass in parts: contiguous ranges of its seeded image sample, run apart (on several machines) and joined
# into the one entry the whole pass would have written.

#: Part folders live under ``<cache>/parts/<entry folder name>/<index>-of-<count>/``: out of the way of the
#: entries (a part is never read as an entry), named after the entry they make.
PARTS_DIR = "parts"


def part_span(n_images: int, batch_size: int, index: int, count: int) -> tuple[int, int]:
    """Images ``[start, stop)`` of part ``index`` (1-based) of ``count`` of a sample of ``n_images``: whole batches
    of ``batch_size``, spread as evenly as batches allow. Each part's batches are the whole pass's own batches, so
    every image meets the model in the same company and the joined entry holds the whole pass's very numbers. A
    part is empty where there are fewer batches than parts."""
    if not 1 <= index <= count:
        raise ValueError(f"part {index} of {count}: the index must be between 1 and the count")
    batches = -(-n_images // batch_size)
    first, last = (index - 1) * batches // count, index * batches // count
    return min(first * batch_size, n_images), min(last * batch_size, n_images)


def part_folder(entry_folder: Path, index: int, count: int) -> Path:
    """Where part ``index`` of ``count`` of the entry ``entry_folder`` is written."""
    return entry_folder.parent / PARTS_DIR / entry_folder.name / f"{index:03d}-of-{count:03d}"


def _part_record(part: tuple[int, int], start: int, stop: int, total: int) -> dict:
    return {"index": part[0], "count": part[1], "start": start, "stop": stop, "sample_images": total}


def extract_part(spec: str, run: RunOptions, part: tuple[int, int], *, keep: tuple[str, ...] = (),
                 square: bool = False, weights_file: str | Path | None = None) -> Path:
    """Part ``part = (index, count)`` of the pass :func:`extract` would run with the same arguments: the model
    over that part's range of the seeded, readable sample (:func:`part_span`), written to its part folder
    (:func:`part_folder`) as an entry of those images, and logged in ``passes.jsonl`` with its part. Nothing runs
    where the whole entry or this part (holding ``keep``) is already there. Returns the folder that holds it.

    :func:`assemble_parts` joins a complete set of parts into the whole pass's entry (same key, same frames and
    arrays in the same order). A twin's plant or a test-time register are not split (run them whole)."""
    index, count = part
    part_span(0, 1, index, count)  # the index must be between 1 and the count
    _check_request(run, keep)
    source = run.image_source
    candidates = source if isinstance(source, list) else images.list_images(source)
    ordered = images.sample_order(candidates, run.n_images, run.seed)
    provenance = models.resolve_weights(spec, weights_file=weights_file, weights_dir=run.weights_dir,
                                        seed=run.seed, allow_hub=run.allow_hub)
    entry = _locate_entry(spec, provenance, ordered, run, keep, square, None, (), weights_file)
    folder = part_folder(entry.folder, index, count)
    if entry.cached:
        return entry.folder
    if (folder / "meta.json").is_file() and set(entry.keep) <= set(
            json.loads((folder / "meta.json").read_text()).get("kept", [])):
        return folder
    sample = images.readable_sample(candidates, run.n_images, run.seed)
    _run_pass(spec, sample, entry, run, square, None, (), weights_file, part)
    start, stop = part_span(len(sample.records), run.batch_size, index, count)
    if stop > start:
        log_pass(entry.folder.parent, {"spec": spec, "images": entry.image_key, "resolution": run.resolution,
                                       "keep": list(entry.keep), "square": square, "part": f"{index}/{count}",
                                       "part_images": [start, stop]})
    return folder


def _join_parts(target: Path, found: list[tuple[Path, dict]]) -> None:
    """Write the entry ``target`` from its parts ``found`` (in order): frames and arrays concatenated, ``meta.json``
    the first part's with every part's images, the arrays all parts hold, and where each part ran."""
    metas = [meta for _, meta in found]
    if any(meta["request"] != metas[0]["request"] for meta in metas):
        raise ValueError(f"the parts of {target.name} were asked for different passes: they cannot be joined")
    filled = [(folder, meta) for folder, meta in found if meta["images"]]
    if not filled:
        raise ValueError(f"every part of {target.name} is empty: the pass had no images")
    first = filled[0][1]
    if any(meta["provenance"] != first["provenance"] for _, meta in filled):
        raise ValueError(f"the parts of {target.name} ran different weights: they cannot be joined")
    keep = sorted(set.intersection(*(set(meta.get("kept", [])) for meta in metas)))
    total = sum(len(meta["images"]) for _, meta in filled)
    size = sum(path.stat().st_size for folder, _ in filled for path in folder.iterdir() if path.is_file())
    writer = EntryWriter(target, total, expected_bytes=size)
    try:
        for folder, meta in filled:
            writer.add_part(folder, keep, len(meta["images"]))
        joined = {key: value for key, value in first.items() if key != "part"}
        joined["images"] = [image for _, meta in filled for image in meta["images"]]
        joined["kept"] = keep
        devices = list(dict.fromkeys(meta["device"] for _, meta in filled))
        joined["device"] = ", ".join(devices)
        if any("planted" in meta for _, meta in filled):
            joined["planted"] = {k: v for _, meta in filled for k, v in meta.get("planted", {}).items()}
        joined["assembled_from"] = [{"part": f"{meta['part']['index']}/{meta['part']['count']}",
                                     "images": [meta["part"]["start"], meta["part"]["stop"]],
                                     "device": meta.get("device"), "torch": meta.get("torch")} for meta in metas]
        writer.commit(joined)
    except BaseException:
        writer.abort()
        raise


def assemble_parts(cache_dir: str | Path | None = None) -> list[Path]:
    """Join every complete set of parts under ``<cache>/parts/`` into its entry (``<cache>/<entry name>``), then
    remove the parts; incomplete sets stay for later. An entry already there holding at least the parts' arrays
    is kept (its parts are removed). The entry is written like any other (a temporary folder, one rename).
    Returns the entries made or found complete."""
    cache = Path(cache_dir or default_cache_dir())
    root = cache / PARTS_DIR
    done: list[Path] = []
    if not root.is_dir():
        return done
    for held in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sets: dict[int, dict[int, tuple[Path, dict]]] = {}
        for folder in sorted(held.iterdir()):
            if folder.name.startswith(".") or not (folder / "meta.json").is_file():
                continue
            meta = json.loads((folder / "meta.json").read_text())
            sets.setdefault(meta["part"]["count"], {})[meta["part"]["index"]] = (folder, meta)
        complete = [count for count, found in sorted(sets.items()) if set(found) == set(range(1, count + 1))]
        if not complete:
            continue
        found = [sets[complete[0]][index] for index in range(1, complete[0] + 1)]
        target = cache / held.name
        keep = set.intersection(*(set(meta.get("kept", [])) for _, meta in found))
        if not ((target / "meta.json").is_file()
                and keep <= set(json.loads((target / "meta.json").read_text()).get("kept", []))):
            _join_parts(target, found)
        shutil.rmtree(held, ignore_errors=True)
        done.append(target)
    if not any(root.iterdir()):
        root.rmdir()
    return done


def _point_here(feats: Features, ordered: list[images.ImageRecord]) -> Features:
    """An entry made on another machine (or in another folder or checkout) records its image files where they
    were there: each recorded file is pointed at this run's record of the same id and bytes, so that what later
    reads pixels (the pixel probe, a test-time register's units) reads this machine's copy."""
    recorded = {image["image_id"] for image in feats.meta["images"] if image.get("digest") is not None}
    here = {(record.image_id, record.content_digest()): record.origin for record in ordered
            if record.image_id in recorded and Path(record.origin).is_file()}
    for image in feats.meta["images"]:
        image["origin"] = here.get((image["image_id"], image.get("digest")), image["origin"])
    return feats


def extract_each(specs: list[str], run: RunOptions, **options) -> dict[str, Features]:
    """``{spec: extract(spec, run, **options)}`` for a page's list of models, in order."""
    return {spec: extract(spec, run, **options) for spec in specs}


def extract_checkpoint(model: str, checkpoint: str, run: RunOptions, **options) -> Features:
    """The pass of one training checkpoint of ``model``: ``"random"`` (its random initialisation),
    ``"pretrained"`` (the released weights) or the path of a weight file of the same architecture."""
    if checkpoint == "random":
        return extract(f"{models.RANDOM_PREFIX}{models.ModelSpec.parse(model).name}", run, **options)
    if checkpoint == "pretrained":
        return extract(model, run, **options)
    return extract(model, run, weights_file=checkpoint, **options)
