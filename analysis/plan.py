"""The pass plan: every model pass the book needs, what it costs, where it can run, and how caches merge.

A *pass* is one hooked run of one model over one image sample (:func:`analysis.features.extract`); it writes
one content-addressed cache entry ``<cache>/<model>-<key>/``. Pages that ask for the same model, images,
resolution, transform, plant and precision share that entry, so the plan lists such a pass once, with
every page that uses it and the union of the arrays they keep.

What each page asks for is said by one small function per page kind (:data:`PAGE_KINDS`), fed with the
very parameters :func:`analysis.run.build_book` gives the page: the defaults of the notebook's parameters
cell (:func:`analysis.run.declared_parameters`), overlaid by ``params.SETS[set][page]``, ``parameter_set``
and the ``-p`` overrides. ``tests/test_plan.py`` rehearses the plan against the notebooks themselves: the
``ci`` plan is run in three processes, the caches are merged, and the book is built from the merged cache
with zero new passes — a page that asks for anything the plan does not list fails it.

* ``python -m analysis plan --set paper [--json]``: the passes with estimated seconds, peak memory and disk,
  the totals, and whether they fit a GitHub-hosted runner (:data:`RUNNER`);
* ``python -m analysis pass --set ci --shard K/N`` (or pass ids): a part of the plan into a cache folder;
* ``python -m analysis merge DIR [DIR ...] --into DIR``: cache folders into one (:func:`merge_caches`).

A shard (one job of the workflow's matrix) is held to :data:`SHARD_BUDGET`: an hour of estimated passes and 10 GB
of disk (environment, its models' weights, its cache entries), far inside a hosted job's 6 hours and 14 GB. A pass
longer than that runs in *parts* (``<id>-part<k>of<n>``; ``n = ceil(seconds / what an hour leaves after fetching
and loading the weights)``): contiguous, batch-aligned ranges of its seeded image sample
(:func:`analysis.features.extract_part`), each its own unit of the plan that any shard may run; ``merge`` (and
``pass``, where one cache holds them all) joins a complete set into the one entry the whole pass writes
(:func:`analysis.features.assemble_parts`: the same key, frames and arrays). A pass that another needs first, a
twin's and a moved pass are never split.

Estimates: seconds from the benchmark's measured throughput where ``<build>/bench/throughput.parquet``
exists (the model's own rate when it was measured at that resolution, else its FLOPs at the measured
models' median FLOP rate), otherwise from a FLOP model at an assumed rate (:data:`ASSUMED_FLOPS`); every
pass says which. Memory: the interpreter, twice the float32 weights (the state dict and the model, as the
benchmark's memory target) and one batch's largest activations (:func:`analysis.bench.activation_mib`).
Disk: the weights file (parameters × 4 B), the entry's frames (rows × bytes a row measured on the ci cache)
and its kept arrays (images × tokens × channels × 4 B).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import features, metrics, models
from . import params as parameter_sets

# --------------------------------------------------------------------------------------------------------
# The target runner and the estimates' constants.


@dataclass(frozen=True)
class Runner:
    name: str
    cores: int
    memory_bytes: int
    disk_bytes: int
    job_seconds: int


#: GitHub's standard hosted Linux runner (``ubuntu-latest``) for public repositories: 4 CPU cores, 16 GB of
#: memory, 14 GB of SSD — GitHub Docs, "GitHub-hosted runners reference" (standard runners, public
#: repositories); a job may run for at most 6 hours — GitHub Docs, "Usage limits, billing, and administration"
#: (job execution time). (Private repositories get 2 cores and 7 GB of memory on the same label.)
RUNNER = Runner("GitHub-hosted ubuntu-latest (standard, public repository)", cores=4, memory_bytes=16 * 10**9,
                disk_bytes=14 * 10**9, job_seconds=6 * 3600)
#: Share of a job's 6 hours the passes may fill: set-up (checkout, environment, caches) and upload need the rest.
JOB_BUDGET = 0.85


@dataclass(frozen=True)
class Budget:
    """What one shard of the plan may take: estimated seconds (its passes, fetching its weights) and disk bytes
    (the environment, its models' weights, its cache entries)."""

    seconds: float
    disk_bytes: int


#: One shard: an hour of estimated passes and 10 GB of disk, so that every job of the matrix finishes far inside
#: a hosted runner's 6-hour limit and 14 GB SSD even where the estimate is off several-fold. A pass longer (or
#: larger) runs in parts.
SHARD_BUDGET = Budget(seconds=3600, disk_bytes=10 * 10**9)
#: GitHub Actions runs at most 256 jobs of one matrix.
MATRIX_LIMIT = 256
#: Assumed sustained float32 rate of the runner's 4 cores on a ViT forward pass when nothing was measured
#: (FLOP/s). An assumption, not a measurement: ``make bench`` replaces it with this machine's measured rate.
ASSUMED_FLOPS = 50e9
#: Peak resident memory of the interpreter with torch, timm, pandas and the package imported (measured: 772 MiB).
INTERPRETER_MIB = 800.0
#: The environment on the runner's disk: Python, PyTorch's CPU-only wheels and the rest of requirements.txt.
ENVIRONMENT_BYTES = 3 * 10**9
#: Assumed download rate from the Hugging Face hub and read rate of a weights file (bytes/s).
HUB_BYTES_PER_S = 50e6
LOAD_BYTES_PER_S = 300e6
#: Parquet bytes a row of each frame (measured on the ci cache: ViT-Ti/16 6.3, 21 and 7.3; rounded up).
ROW_BYTES = {"norms": 8, "patches": 24, "attention": 8}
#: Images of a source the plan cannot list on this machine, and classes of a labelled source.
SHIPPED_CLASSES = {"digits": 10, "imagenette": 10}

#: Pass kinds and what runs them (:data:`RUNNERS`): ``features`` is one :func:`features.extract` call;
#: ``intervened`` is a test-time register on a cached pass (:func:`analysis.test_time.moved_pass`: the units
#: chosen on one half of the pass's images, the other half run again with them moved), which needs its
#: ``features`` pass first (``after``) and reads the page's cutoff from it. On the object-discovery page it runs
#: only where the released pass has outliers (``only_if_outliers``), which the plan cannot know beforehand: it is
#: listed, estimated, and skipped at run time where the page would skip it.
KINDS = ("features", "intervened")


class PlanError(ValueError):
    """A shard or pass id that the plan does not have, or a cache folder that cannot be merged."""


# --------------------------------------------------------------------------------------------------------
# What a pass is.


@dataclass(frozen=True)
class Sample:
    """The images of a pass, drawn as the page draws them.

    ``kind``: ``"source"`` — ``RunOptions(image_source=source, n_images=count)`` (builtin, imagenette, a folder,
    one file); ``"labelled"`` — ``images.list_labelled_images(source, count, seed)`` (``count`` per class);
    ``"voc"`` — the object-discovery set: a VOC folder ``source`` (``split``), or the planted set built in the
    cache (``source`` None), ``count`` images drawn.
    """

    kind: str
    source: str | None
    count: int | None
    split: str | None = None

    def describe(self) -> str:
        if self.kind == "labelled":
            return f"{self.count} per class from {self.source}"
        if self.kind == "voc":
            return f"{self.count} annotated from {self.source or 'the planted set'}"
        source = self.source
        if source is not None and source.startswith("builtin:") and "," in source:  # a list of photos: count, not names
            source = f"builtin ({len(source[8:].split(','))} named photos)"
        return f"{'all' if self.count is None else self.count} from {source}"

    def images(self, seed: int = 0) -> int:
        """How many images the pass runs on (listed here when the source is on this machine)."""
        from .images import ImageError, list_images, list_labelled_images

        try:
            if self.kind == "source":
                found = len(list_images(self.source))
                return found if self.count is None else min(self.count, found)
            if self.kind == "labelled":
                return len(list_labelled_images(self.source, self.count, seed))
        except (ImageError, OSError):
            pass
        if self.kind == "labelled":
            return (self.count or 1) * SHIPPED_CLASSES.get(str(self.source), 10)
        return self.count or 1

    def run_source(self, seed: int, cache_dir: Path) -> tuple[object, int | None]:
        """``(image_source, n_images)`` for :class:`features.RunOptions`, drawn exactly as the page draws it."""
        from . import images

        if self.kind == "source":
            return self.source, self.count
        if self.kind == "labelled":
            return images.list_labelled_images(self.source, self.count, seed), None
        if self.kind == "voc":
            return voc_records(self.source, self.split, self.count, seed, cache_dir), None
        raise PlanError(f"unknown image sample kind {self.kind!r}")


def voc_records(root: str | None, split: str | None, count: int, seed: int, cache_dir: Path) -> list:
    """The object-discovery page's images (:func:`analysis.discovery.annotated_sample`): ``count`` drawn from a VOC
    folder, or from the planted set that the page builds in its cache folder (``<cache>/planted_voc``). A planted
    set is drawn from a seed, so shards that each build it agree on its bytes, hence on the cache key (image
    fingerprints are file contents, :meth:`images.ImageRecord.fingerprint`)."""
    from . import discovery

    return discovery.annotated_sample(root, split, count, seed, cache_dir=cache_dir).records


@dataclass(frozen=True)
class Pass:
    """One model pass as a page asks for it. ``keep``, ``device`` and ``pages`` do not change which cache entry
    it fills (an entry grows to the union of the arrays asked for); everything else does."""

    kind: str
    spec: str
    sample: Sample
    resolution: int
    seed: int = 0
    square: bool = False
    plant: str | None = None
    precision: str = "float32"
    weights_file: str | None = None
    options: tuple[tuple[str, object], ...] = ()  # kind-specific settings (the intervened pass's top_k, ...)
    after: str | None = None  # the id of a pass this one needs first (run in the same shard, before it)
    part: tuple[int, int] | None = None  # (k, n): the k-th of n image ranges of the pass (one entry in all)
    keep: tuple[str, ...] = field(default=(), compare=False)
    device: str | None = field(default="auto", compare=False)
    batch_size: int | None = field(default=None, compare=False)  # the page's RunOptions batch size (None: default)
    pages: tuple[str, ...] = field(default=(), compare=False)

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def identity(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "sample": dataclasses.asdict(self.sample),
                "resolution": self.resolution, "seed": self.seed, "square": self.square, "plant": self.plant,
                "precision": self.precision, "weights_file": self.weights_file,
                "options": [list(option) for option in self.options], "after": self.after,
                "metric_version": metrics.METRIC_VERSION}

    @property
    def whole(self) -> "Pass":
        """The pass this is a part of (itself when it is not a part)."""
        return self if self.part is None else dataclasses.replace(self, part=None)

    @property
    def id(self) -> str:
        """Stable across machines: a readable slug and a hash of :meth:`identity`; a part adds ``-part<k>of<n>``."""
        if self.part is not None:
            return f"{self.whole.id}-part{self.part[0]}of{self.part[1]}"
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:8]
        parsed = models.ModelSpec.parse(self.spec)
        slug = ("random-" if parsed.random else "") + parsed.name.split(".")[0]
        slug += f"-twin-{self.plant}" if self.plant else ""
        slug += "-moved" if self.kind == "intervened" else ""
        return f"{slug}-{self.resolution}-{digest}"

    @property
    def model(self) -> str:
        return models.ModelSpec.parse(self.spec).name

    @property
    def pretrained(self) -> bool:
        return not models.ModelSpec.parse(self.spec).random


def features_pass(spec: str, p: dict, sample: Sample | None = None, **fields) -> Pass:
    """A :func:`features.extract` pass of ``spec`` with the run options of the page's parameters ``p``."""
    return Pass(kind="features", spec=spec, sample=sample or Sample("source", p["image_source"], p["n_images"]),
                resolution=p["resolution"], seed=p["seed"], precision=p.get("precision", "float32"),
                device=p.get("device", "auto"), **fields)


# --------------------------------------------------------------------------------------------------------
# What each page asks for: one function per page kind, reading the page's parameters.


def models_page(p: dict) -> list[Pass]:
    """attention_maps, norm_histogram, model_size, registers: every model on the page's image sample."""
    return [features_pass(spec, p) for spec in p["models"]]


def model_page(p: dict) -> list[Pass]:
    """layer_dependence, redundancy: one model on the page's image sample."""
    return [features_pass(p["model"], p)]


def checkpoints_page(p: dict) -> list[Pass]:
    """training_time: one pass per checkpoint (``random``: the architecture at random init; ``pretrained``: the
    model; anything else: a weight file of the architecture)."""
    architecture = models.ModelSpec.parse(p["model"]).name
    passes = []
    for checkpoint in p["checkpoints"]:
        spec = f"random:{architecture}" if checkpoint == "random" else p["model"]
        weights_file = None if checkpoint in ("random", "pretrained") else checkpoint
        passes.append(features_pass(spec, p, weights_file=weights_file))
    return passes


def labelled_probe_page(p: dict) -> list[Pass]:
    """information_probes: the model on a labelled, class-balanced sample, keeping the output tokens."""
    sample = Sample("labelled", p["labelled_source"], p["per_class"])
    return [features_pass(p["model"], p, sample, keep=("output",))]


def test_time_register_page(p: dict) -> list[Pass]:
    """test_time_registers: the model on the page's sample, then the intervened pass on it (units chosen on one
    half, moved on the other; ``top_k`` units, the page's ``batch_size``, its cutoff from ``threshold``/``adaptive``)."""
    base = features_pass(p["model"], p)
    options = (("page", "test_time_registers"), ("top_k", p["top_k"]), ("batch_size", p["batch_size"]),
               ("threshold", p["threshold"]), ("adaptive", p["adaptive"]))
    return [base, dataclasses.replace(base, kind="intervened", options=options, after=base.id)]


def discovery_page(p: dict) -> list[Pass]:
    """object_discovery: every model on the annotated set, whole images squeezed square, keeping the keys; with
    ``test_time_register``, each pretrained model's intervened pass (keys kept), where its pass has outliers."""
    sample = Sample("voc", p["voc_root"], p["n_discovery"], p["voc_split"])
    passes = []
    for spec in p["models"]:
        base = features_pass(spec, p, sample, keep=("keys",), square=True, batch_size=p["batch_size"])
        passes.append(base)
        if p["test_time_register"] and not models.ModelSpec.parse(spec).random:
            options = (("page", "object_discovery"), ("threshold", p["threshold"]), ("adaptive", p["adaptive"]),
                       ("only_if_outliers", True), ("keep", ("keys",)))
            passes.append(dataclasses.replace(base, kind="intervened", options=options, after=base.id))
    return passes


def census_page(p: dict) -> list[Pass]:
    """census: the listed models (``available``: every census model with weights on this machine), then the
    controls. A listed model is planned whether or not its weights are here yet: its shard fetches them."""
    wanted = [m for m in p["models"] if m != "available"]
    if "available" in p["models"]:
        wanted += [m for m in models.CENSUS if m not in wanted and models.weights_available(m, p["weights_dir"])]
    return [features_pass(spec, p) for spec in wanted + list(p["controls"])]


def single_image_page(p: dict) -> list[Pass]:
    """your_image: every model on the one image."""
    return [features_pass(spec, p, Sample("source", p["image"], None)) for spec in p["models"]]


def twins_page(p: dict) -> list[Pass]:
    """validation: each twin, its base model with its plant, on the page's sample."""
    from . import twins

    return [features_pass(twins.TWIN_BASES[name], p, plant=name) for name in p["twin_names"]]


def tables_page(p: dict) -> list[Pass]:
    """claims, summary, quality: read other pages' tables, run no model."""
    return []


#: Every page of the book and its kind. A page missing here is an error: a new page must say what it asks for.
PAGE_KINDS = {
    "attention_maps": models_page, "norm_histogram": models_page, "model_size": models_page,
    "registers": models_page, "layer_dependence": model_page, "redundancy": model_page,
    "training_time": checkpoints_page, "information_probes": labelled_probe_page,
    "test_time_registers": test_time_register_page, "object_discovery": discovery_page, "census": census_page,
    "your_image": single_image_page, "validation": twins_page,
    "claims": tables_page, "summary": tables_page, "quality": tables_page,
}


def _default(declared: dict):
    try:
        return ast.literal_eval(declared["default"])
    except (ValueError, SyntaxError):
        return None


def page_parameters(set_name: str, page: str, overrides: dict | None = None,
                    weights_dir: str | Path | None = None) -> dict:
    """The parameters the page's notebook runs with under ``build --set set_name -p ...``: its parameters
    cell's defaults, overlaid as :func:`analysis.run.build_book` does (the set's values, ``parameter_set``,
    each override the page declares), checked and converted as :func:`analysis.run.run_page` does.

    ``weights_dir`` stands in for a ``weights_dir`` parameter left at None (the kernel's resolver then reads
    ``$REGISTERS_WEIGHTS_DIR``, which the build sets to the same folder).
    """
    from .run import check_parameters, declared_parameters

    declared = declared_parameters(page)
    given = dict(parameter_sets.SETS[set_name][page])
    if "parameter_set" in declared:
        given["parameter_set"] = set_name
    for key, value in (overrides or {}).items():
        if key in declared:
            given[key] = value
    values = {name: _default(entry) for name, entry in declared.items()}
    values.update(check_parameters(page, given))
    if values.get("weights_dir") is None and "weights_dir" in values:
        values["weights_dir"] = weights_dir or os.environ.get(models.WEIGHTS_DIR_ENV)
    return values


# --------------------------------------------------------------------------------------------------------
# Estimates.


@dataclass(frozen=True)
class Geometry:
    params: int
    tokens: int
    patches: int
    depth: int
    dim: int
    heads: int
    hidden: int
    has_cls: bool

    @property
    def flops(self) -> float:
        """FLOPs of one image: 2 × (parameters × tokens for the matrix products + depth × 2·N²·D attention)."""
        return 2.0 * (self.params * self.tokens + self.depth * 2 * self.tokens**2 * self.dim)

    @property
    def weights_bytes(self) -> int:
        return self.params * 4

    def activation_mib(self, batch: int) -> float:
        """:func:`analysis.bench.activation_mib` from this geometry: the MLP's hidden layer ``(B, N, hidden)`` and
        the attention matrix ``(B, H, N, N)`` of one block, float32."""
        return batch * (self.tokens * self.hidden + self.heads * self.tokens**2) * 4 / 2**20


@functools.lru_cache(maxsize=None)
def geometry(name: str, resolution: int) -> Geometry:
    """The architecture's size at ``resolution``, read from a model built on the meta device (no memory)."""
    import torch

    from .hooks import has_cls_token

    model = models.build_architecture(name, resolution, device="meta")
    grid = model.patch_embed.grid_size
    patches = int(grid[0] * grid[1])
    block = model.blocks[0]
    hidden = next(layer.out_features for layer in block.mlp.modules() if isinstance(layer, torch.nn.Linear))
    return Geometry(params=sum(p.numel() for p in model.parameters()), tokens=patches + int(model.num_prefix_tokens),
                    patches=patches, depth=len(model.blocks), dim=int(model.embed_dim),
                    heads=int(block.attn.num_heads), hidden=int(hidden), has_cls=has_cls_token(model))


@dataclass(frozen=True)
class Throughput:
    """Seconds per image from the benchmark's measurements, or the FLOP model."""

    rates: dict  # {(model, resolution): images/s} measured
    flops_per_s: float
    source: str

    @classmethod
    def load(cls, bench_dir: str | Path | None) -> "Throughput":
        import pandas as pd

        path = Path(bench_dir) / "throughput.parquet" if bench_dir else None
        if path is not None and path.is_file():
            table = pd.read_parquet(path)
            table = table[table.get("measured", True).astype(bool)] if "measured" in table else table
            if len(table):
                rates = {(row.model, int(row.resolution)): float(row.images_per_s) for row in table.itertuples()}
                achieved = [rate * geometry(model, resolution).flops for (model, resolution), rate in rates.items()]
                machine = Path(bench_dir) / "machine.json"
                where = json.loads(machine.read_text()) if machine.is_file() else {}
                return cls(rates, float(np.median(achieved)),
                           f"measured by `make bench` ({len(rates)} models, {where.get('cpus', '?')} CPUs, "
                           f"{where.get('date', 'undated')})")
        return cls({}, ASSUMED_FLOPS, f"FLOP model at an assumed {ASSUMED_FLOPS / 1e9:.0f} GFLOP/s (no `make bench` "
                                      "throughput found)")

    def seconds(self, name: str, resolution: int, images: int) -> tuple[float, str]:
        if (name, resolution) in self.rates:
            return images / self.rates[(name, resolution)], "measured"
        rate_source = "scaled from measured" if self.rates else "FLOP model"
        return images * geometry(name, resolution).flops / self.flops_per_s, rate_source


@dataclass(frozen=True)
class Estimate:
    images: int
    seconds: float  # the model over the images, plus loading its weights (``load_seconds``)
    seconds_source: str
    memory_bytes: int
    entry_bytes: int
    load_seconds: float = 0.0


def estimate(p: Pass, throughput: Throughput, batch_size: int | None = None) -> Estimate:
    """Seconds, peak memory and cache-entry bytes of one pass."""
    batch_size = batch_size or features.RunOptions().batch_size
    shape = geometry(p.model, p.resolution)
    count = p.sample.images(p.seed)
    compute, source = throughput.seconds(p.model, p.resolution, count)
    # an intervened pass costs about one pass too: units chosen on one half of the images, moved on the other
    seconds = compute + shape.weights_bytes / LOAD_BYTES_PER_S
    memory_mib = INTERPRETER_MIB + 2 * shape.weights_bytes / 2**20 + shape.activation_mib(batch_size)
    heads = shape.heads if shape.has_cls else 0
    frames = count * (shape.depth * shape.tokens * ROW_BYTES["norms"] + shape.patches * ROW_BYTES["patches"]
                      + heads * shape.tokens * ROW_BYTES["attention"])
    arrays = len(p.keep) * count * shape.tokens * shape.dim * 4
    return Estimate(count, seconds, source, int(memory_mib * 2**20), int(frames + arrays),
                    shape.weights_bytes / LOAD_BYTES_PER_S)


def fetch_seconds(p: Pass) -> float:
    """Seconds to download ``p``'s weights from the hub, counted for every part of a split pass whether or not this
    machine has them (the count of parts must be the same on the machine that plans and the ones that run)."""
    return geometry(p.model, 224).weights_bytes / HUB_BYTES_PER_S if p.pretrained else 0.0


def splittable(p: Pass, needed_first: set[str]) -> bool:
    """A pass may run in parts: a plain feature pass (no twin's plant, no moved units) that no pass needs first."""
    return p.kind == "features" and p.plant is None and p.id not in needed_first


def parts_needed(p: Pass, e: Estimate, budget: Budget = SHARD_BUDGET) -> int:
    """Parts for ``p`` to fit ``budget`` on its own: ``ceil(compute / (budget − load − fetch))`` for time and
    ``ceil(entry / (budget − environment − weights))`` for disk, at most one per batch of images."""
    fetch = fetch_seconds(p)
    weights = geometry(p.model, 224).weights_bytes if p.pretrained else 0
    count = 1
    if e.seconds + fetch > budget.seconds and budget.seconds > e.load_seconds + fetch:
        count = math.ceil((e.seconds - e.load_seconds) / (budget.seconds - e.load_seconds - fetch))
    if ENVIRONMENT_BYTES + weights + e.entry_bytes > budget.disk_bytes > ENVIRONMENT_BYTES + weights:
        count = max(count, math.ceil(e.entry_bytes / (budget.disk_bytes - ENVIRONMENT_BYTES - weights)))
    batches = -(-e.images // (p.batch_size or features.RunOptions().batch_size))
    return max(1, min(count, batches))


def split(p: Pass, e: Estimate, count: int) -> list[tuple[Pass, Estimate]]:
    """``p`` as ``count`` parts over batch-aligned image ranges (:func:`analysis.features.part_span`), each with
    its share of the images, compute and entry, and the whole cost of loading the weights."""
    batch = p.batch_size or features.RunOptions().batch_size
    compute = e.seconds - e.load_seconds
    parts = []
    for index in range(1, count + 1):
        start, stop = features.part_span(e.images, batch, index, count)
        share = (stop - start) / e.images if e.images else 0.0
        parts.append((dataclasses.replace(p, part=(index, count)),
                      dataclasses.replace(e, images=stop - start, seconds=compute * share + e.load_seconds,
                                          entry_bytes=int(e.entry_bytes * share))))
    return parts


# --------------------------------------------------------------------------------------------------------
# The plan.


@dataclass
class Plan:
    set_name: str
    passes: list[Pass]  # the units that run: whole passes, and the parts of a pass split to fit a shard
    estimates: dict[str, Estimate]
    throughput: Throughput
    page_order: list[str]
    weights_here: dict[str, bool]  # pretrained model → its weights resolve without the network here
    budget: Budget = SHARD_BUDGET
    _memo: dict = field(default_factory=dict, repr=False, compare=False)  # shards and their count, computed once

    def by_id(self) -> dict[str, Pass]:
        return {p.id: p for p in self.passes}

    def parts_of(self) -> dict[str, list[Pass]]:
        """The id of each split pass → its parts, in order."""
        found: dict[str, list[Pass]] = {}
        for p in self.passes:
            if p.part is not None:
                found.setdefault(p.whole.id, []).append(p)
        return found

    def weights_bytes(self, passes: list[Pass] | None = None) -> int:
        names = sorted({p.model for p in (self.passes if passes is None else passes) if p.pretrained})
        return sum(geometry(name, 224).weights_bytes for name in names)

    def download_seconds(self, passes: list[Pass] | None = None) -> float:
        names = sorted({p.model for p in (self.passes if passes is None else passes)
                        if p.pretrained and not self.weights_here.get(p.model, False)})
        return sum(geometry(name, 224).weights_bytes / HUB_BYTES_PER_S for name in names)

    def totals(self, passes: list[Pass] | None = None) -> dict:
        """Seconds (the passes one after another, plus fetching the weights not here), peak memory (the largest
        pass) and disk (environment, weights, entries) of ``passes`` (all); ``passes``: how many cache entries they
        fill (a split pass counts once), ``runs``: how many units run (a part counts once), ``parts``: how many
        of those are parts, of ``split`` passes; ``fits``: whether each fits one
        :data:`RUNNER` job, ``fits_shard``: whether each fits the plan's shard budget."""
        chosen = self.passes if passes is None else passes
        estimates = [self.estimates[p.id] for p in chosen]
        seconds = sum(e.seconds for e in estimates) + self.download_seconds(chosen)
        memory = max((e.memory_bytes for e in estimates), default=0)
        entries = sum(e.entry_bytes for e in estimates)
        disk = ENVIRONMENT_BYTES + self.weights_bytes(chosen) + entries
        return {"passes": len({p.whole.id for p in chosen}), "parts": sum(p.part is not None for p in chosen),
                "split": len({p.whole.id for p in chosen if p.part is not None}), "runs": len(chosen),
                "seconds": seconds, "memory_bytes": memory, "disk_bytes": disk,
                "weights_bytes": self.weights_bytes(chosen), "entries_bytes": entries,
                "fits": {"time": seconds <= RUNNER.job_seconds * JOB_BUDGET, "memory": memory <= RUNNER.memory_bytes,
                         "disk": disk <= RUNNER.disk_bytes},
                "fits_shard": {"time": seconds <= self.budget.seconds, "memory": memory <= RUNNER.memory_bytes,
                               "disk": disk <= self.budget.disk_bytes}}

    def groups(self) -> list[list[Pass]]:
        """Passes that must share a shard (a pass and the ones it needs first), in plan order. The parts of a pass
        are groups of their own: any shard may run any part."""
        by_id, root = self.by_id(), {}

        def find(pass_id: str) -> str:
            while root.get(pass_id, pass_id) != pass_id:
                pass_id = root[pass_id]
            return pass_id

        for p in self.passes:
            if p.after in by_id:
                root[find(p.id)] = find(p.after)
        grouped: dict[str, list[Pass]] = {}
        for p in self.passes:
            grouped.setdefault(find(p.id), []).append(p)
        return list(grouped.values())

    def shards(self, count: int) -> list[list[Pass]]:
        """The passes split into ``count`` shards, balanced by estimated seconds, deterministically: groups in
        decreasing seconds (ties by id) each go to the shard that ends least loaded, counting the download of
        weights the shard does not fetch yet (so passes of one model tend to share a shard), among the shards that
        stay within the shard budget in time and disk (else within its disk: a model whose weights would push a
        shard past it, say a second ViT-g, goes elsewhere; else all shards). Passes keep plan order inside a shard;
        a shard may be empty when there are fewer groups than shards."""
        if count < 1:
            raise PlanError(f"a plan splits into at least one shard, not {count}")
        if ("shards", count) in self._memo:
            return [list(members) for members in self._memo[("shards", count)]]
        groups = sorted(self.groups(), key=lambda g: (-sum(self.estimates[p.id].seconds for p in g), g[0].id))
        loads, disks = [0.0] * count, [float(ENVIRONMENT_BYTES)] * count
        models_of: list[set[str]] = [set() for _ in range(count)]
        members: list[list[str]] = [[] for _ in range(count)]
        for group in groups:
            seconds = sum(self.estimates[p.id].seconds for p in group)
            entries = sum(self.estimates[p.id].entry_bytes for p in group)
            pretrained = {p.model for p in group if p.pretrained}

            def added(index: int) -> tuple[float, float]:
                fresh = pretrained - models_of[index]
                download = sum(geometry(m, 224).weights_bytes / HUB_BYTES_PER_S for m in fresh
                               if not self.weights_here.get(m, False))
                weights = sum(geometry(m, 224).weights_bytes for m in fresh)
                return loads[index] + seconds + download, disks[index] + entries + weights

            after = [added(index) for index in range(count)]
            room = ([i for i in range(count) if after[i][0] <= self.budget.seconds
                     and after[i][1] <= self.budget.disk_bytes]
                    or [i for i in range(count) if after[i][1] <= self.budget.disk_bytes] or list(range(count)))
            best = min(room, key=lambda index: (after[index][0], index))
            loads[best], disks[best] = after[best]
            models_of[best] |= pretrained
            members[best] += [p.id for p in group]
        order = {p.id: index for index, p in enumerate(self.passes)}
        by_id = self.by_id()
        shards = [[by_id[i] for i in sorted(ids, key=order.__getitem__)] for ids in members]
        self._memo[("shards", count)] = shards
        return [list(members) for members in shards]

    def shard(self, index: int, count: int) -> list[Pass]:
        """Shard ``index`` of ``count`` (1-based, as ``--shard K/N``)."""
        if not 1 <= index <= count:
            raise PlanError(f"shard {index}/{count}: K must be between 1 and N")
        return self.shards(count)[index - 1]

    def suggested_shards(self, most: int = MATRIX_LIMIT) -> int:
        """The fewest shards (at most ``most``) of which each fits the shard budget in time and disk — where one
        group alone does not fit, that group's own time or disk is the bound (no split can do better)."""
        if ("suggested", most) in self._memo:
            return self._memo[("suggested", most)]
        groups = self.groups()
        count = 1
        if groups:
            alone = [self.totals(g) for g in groups]
            time_bound = max(self.budget.seconds, max(t["seconds"] for t in alone))
            disk_bound = max(self.budget.disk_bytes, max(t["disk_bytes"] for t in alone))
            fewest = max(1, math.ceil(sum(self.estimates[p.id].seconds for p in self.passes) / time_bound))
            count = min(len(groups), most)
            for trial in range(min(fewest, count), count + 1):
                parts = [self.totals(s) for s in self.shards(trial) if s]
                if all(t["seconds"] <= time_bound and t["disk_bytes"] <= disk_bound for t in parts):
                    count = trial
                    break
        self._memo[("suggested", most)] = count
        return count

    def too_large(self) -> list[str]:
        """Ids of the units that exceed the shard budget on their own (a pass that cannot be split, or a part of a
        pass that cannot be split finer)."""
        return [p.id for p in self.passes if not all(self.totals([p])["fits_shard"].values())]

    def matrix(self, count: int | None = None) -> dict:
        """The GitHub Actions matrix: one entry per non-empty shard with its pass ids, the models whose weights it
        fetches, and cache keys (the feature cache by its pass ids, the hub cache by its models)."""
        count = count or self.suggested_shards()
        include = []
        for index, members in enumerate(self.shards(count), start=1):
            if not members:
                continue
            ids = " ".join(p.id for p in members)
            fetched = sorted({p.model for p in members if p.pretrained})
            include.append({
                "shard": f"{index}/{count}", "index": index, "passes": ids,
                "models": " ".join(fetched) or "-",
                "seconds": round(self.totals(members)["seconds"]),
                "cache_key": hashlib.sha256(ids.encode()).hexdigest()[:16],
                "weights_key": weights_key(fetched),
            })
        return {"include": include}

    def models(self) -> list[str]:
        """Every pretrained model whose weights the plan fetches (the hub cache a one-job build needs)."""
        return sorted({p.model for p in self.passes if p.pretrained})

    def rows(self) -> list[dict]:
        rows = []
        for p in self.passes:
            e = self.estimates[p.id]
            sample = p.sample.describe() + (f", part {p.part[0]}/{p.part[1]}: {e.images}" if p.part else "")
            rows.append({"id": p.id, "kind": p.kind, "spec": p.spec, "model": p.model, "sample": sample,
                         "image_source": p.sample.source, "sample_kind": p.sample.kind, "n_images": p.sample.count,
                         "images": e.images, "resolution": p.resolution, "seed": p.seed, "keep": list(p.keep),
                         "square": p.square, "plant": p.plant, "precision": p.precision, "device": p.device,
                         "weights_file": p.weights_file, "after": p.after, "pages": list(p.pages),
                         "part": list(p.part) if p.part else None, "whole": p.whole.id,
                         "seconds": e.seconds, "seconds_source": e.seconds_source, "memory_bytes": e.memory_bytes,
                         "entry_bytes": e.entry_bytes, "weights_bytes": geometry(p.model, 224).weights_bytes
                         if p.pretrained else 0})
        return rows

    def as_json(self, shards: int | None = None) -> dict:
        count = shards or self.suggested_shards()
        return {"set": self.set_name, "pages": self.page_order, "throughput": self.throughput.source,
                "runner": dataclasses.asdict(RUNNER) | {"job_budget": JOB_BUDGET},
                "shard_budget": dataclasses.asdict(self.budget),
                "passes": self.rows(), "totals": self.totals(), "shards": count,
                "shard_totals": [self.totals(s) | {"shard": f"{i}/{count}"}
                                 for i, s in enumerate(self.shards(count), start=1) if s],
                "matrix": self.matrix(count), "models": self.models(), "weights_key": weights_key(self.models()),
                "units": [dataclasses.asdict(p) for p in self.passes]}


def _tuples(value):
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def pass_from_dict(fields: dict) -> Pass:
    """A :class:`Pass` from ``dataclasses.asdict`` of one, read back from JSON (lists back to tuples)."""
    fields = dict(fields)
    fields["sample"] = Sample(**fields["sample"])
    for name in ("options", "keep", "pages", "part"):
        fields[name] = _tuples(fields[name]) if fields.get(name) is not None else None
    fields["keep"], fields["pages"], fields["options"] = (fields["keep"] or (), fields["pages"] or (),
                                                          fields["options"] or ())
    return Pass(**fields)


def plan_from_json(data: dict) -> Plan:
    """The :class:`Plan` that :meth:`Plan.as_json` wrote (``plan --json``), with its passes and estimates, for a
    machine that runs them without the notebooks the plan is derived from (the device check's GPU machine)."""
    passes = [pass_from_dict(fields) for fields in data["units"]]
    estimates = {row["id"]: Estimate(row["images"], row["seconds"], row["seconds_source"], row["memory_bytes"],
                                     row["entry_bytes"]) for row in data["passes"]}
    return Plan(data["set"], passes, estimates, Throughput({}, ASSUMED_FLOPS, data["throughput"]), data["pages"], {},
                Budget(**data.get("shard_budget", dataclasses.asdict(SHARD_BUDGET))))


def weights_key(names: list[str]) -> str:
    """A cache key for the hub cache of these models (sorted): the same set of models, the same key."""
    return hashlib.sha256(" ".join(sorted(names)).encode()).hexdigest()[:16]


def deduplicate(requests) -> list[Pass]:
    """``(page, pass)`` requests → one pass per cache entry, in first-request order, listing every page that asked
    for it (in order) and keeping the union of the arrays they asked to keep."""
    merged: dict[Pass, Pass] = {}
    for page, asked in requests:
        held = merged.get(asked)
        if held is None:
            merged[asked] = dataclasses.replace(asked, keep=tuple(sorted(set(asked.keep))), pages=(page,))
        else:
            merged[asked] = dataclasses.replace(
                held, keep=tuple(sorted(set(held.keep) | set(asked.keep))),
                pages=held.pages + ((page,) if page not in held.pages else ()))
    return list(merged.values())


def page_requests(set_name: str, overrides: dict | None = None, weights_dir: str | Path | None = None,
                  pages: list[str] | None = None) -> list[tuple[str, Pass]]:
    """``(page, pass)`` for every pass each page asks for, pages in ``_toc.yml`` order."""
    from .run import toc_pages

    requests = []
    for page in pages or toc_pages():
        if page not in PAGE_KINDS:
            raise PlanError(f"page {page!r} has no kind in analysis.plan.PAGE_KINDS: say what passes it asks for")
        requests += [(page, asked) for asked in PAGE_KINDS[page](page_parameters(set_name, page, overrides,
                                                                                 weights_dir))]
    return requests


def make_plan(set_name: str, passes: list[Pass], bench_dir: str | Path | None = None,
              weights_dir: str | Path | None = None, pages: list[str] | None = None,
              budget: Budget = SHARD_BUDGET) -> Plan:
    """A :class:`Plan` of ``passes`` with their estimates, each pass too long or too large for one shard of
    ``budget`` split into parts (:func:`parts_needed`, :func:`split`)."""
    throughput = Throughput.load(bench_dir)
    needed_first = {p.after for p in passes if p.after}
    units, estimates = [], {}
    for p in passes:
        e = estimate(p, throughput)
        count = parts_needed(p, e, budget) if splittable(p, needed_first) else 1
        for unit, unit_estimate in (split(p, e, count) if count > 1 else [(p, e)]):
            units.append(unit)
            estimates[unit.id] = unit_estimate
    here = {p.model: models.weights_available(p.model, weights_dir) for p in passes if p.pretrained}
    order = list(pages or sorted({page for p in passes for page in p.pages}))
    return Plan(set_name, units, estimates, throughput, order, here, budget)


def build_plan(set_name: str = "ci", overrides: dict | None = None, weights_dir: str | Path | None = None,
               bench_dir: str | Path | None = None, pages: list[str] | None = None,
               budget: Budget = SHARD_BUDGET) -> Plan:
    """Every pass the book's pages ask for under ``build --set set_name -p ...``, deduplicated, in page order, split
    into parts where one would not fit a shard of ``budget``."""
    from .run import toc_pages

    set_name = parameter_sets.choose(set_name, weights_dir)
    order = pages or toc_pages()
    passes = deduplicate(page_requests(set_name, overrides, weights_dir, order))
    return make_plan(set_name, passes, bench_dir, weights_dir, order, budget)


# --------------------------------------------------------------------------------------------------------
# Printing.


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 \
        else f"{seconds:.0f} s"


def _counted(totals: dict) -> str:
    """``54 passes (4 of them in 14 parts)``; a shard: ``1 pass (a part)``, ``4 passes (1 of them a part)``."""
    count = f"{totals['passes']} pass{'' if totals['passes'] == 1 else 'es'}"
    if not totals.get("parts"):
        return count
    if totals["parts"] == totals["split"]:  # one part of each: a shard
        return count + (" (a part)" if totals["passes"] == 1 else
                        f" ({totals['parts']} of them {'a part' if totals['parts'] == 1 else 'parts'})")
    return count + f" ({totals['split']} of them in {totals['parts']} parts)"


def fit_lines(totals: dict, label: str) -> list[str]:
    fits = totals["fits"]
    budget = RUNNER.job_seconds * JOB_BUDGET

    def word(ok: bool) -> str:
        return "fits" if ok else "DOES NOT FIT"

    return [f"{label}: {_counted(totals)}",
            f"  time   {_duration(totals['seconds']):>8}  vs {_duration(budget)} of a {RUNNER.job_seconds / 3600:.0f} h "
            f"job: {word(fits['time'])}",
            f"  memory {_gb(totals['memory_bytes']):>8}  vs {_gb(RUNNER.memory_bytes)} (largest pass): "
            f"{word(fits['memory'])}",
            f"  disk   {_gb(totals['disk_bytes']):>8}  vs {_gb(RUNNER.disk_bytes)} (environment "
            f"{_gb(ENVIRONMENT_BYTES)}, weights {_gb(totals['weights_bytes'])}, cache "
            f"{_gb(totals['entries_bytes'])}): {word(fits['disk'])}"]


def format_plan(plan: Plan, shards: int | None = None) -> str:
    """The plan as a table, its totals against :data:`RUNNER`, and the shards against the shard budget."""
    import pandas as pd

    frame = pd.DataFrame(plan.rows())
    totals = plan.totals()
    lines = [f"pass plan of the {plan.set_name!r} set: {_counted(totals)} for {len(plan.page_order)} pages",
             f"seconds: {plan.throughput.source}", ""]
    if len(frame):
        def pages(names: list[str]) -> str:
            return ", ".join(names) if len(names) <= 2 else f"{names[0]} +{len(names) - 1}"

        shown = pd.DataFrame({
            "id": frame.id, "images": frame["sample"], "res": frame.resolution,
            "keep": frame.keep.map(lambda k: ",".join(k) or "-"), "sq": frame.square.map({True: "y", False: ""}),
            "pages": frame.pages.map(pages), "est": frame.seconds.map(_duration), "from": frame.seconds_source,
            "mem": (frame.memory_bytes / 1e9).map("{:.1f} GB".format),
            "disk": (frame.entry_bytes / 1e6).map("{:.0f} MB".format),
        })
        lines += [shown.to_string(index=False), ""]
    lines += fit_lines(totals, "total on one runner, one after another")
    count = shards or plan.suggested_shards()
    lines += ["", f"{count} shard(s) (`pass --shard K/{count}`; the workflow's matrix), each held to "
                  f"{_duration(plan.budget.seconds)} and {_gb(plan.budget.disk_bytes)} of disk:"]
    for index, members in enumerate(plan.shards(count), start=1):
        if members:
            shard = plan.totals(members)
            ok = all(shard["fits_shard"].values())
            lines.append(f"  {index}/{count}: {_counted(shard)}, {_duration(shard['seconds'])}, peak "
                         f"{_gb(shard['memory_bytes'])}, disk {_gb(shard['disk_bytes'])}: "
                         f"{'fits' if ok else 'DOES NOT FIT'}")
    too_large = plan.too_large()
    if too_large:
        lines.append(f"  larger than a shard on their own (cannot be split further): {', '.join(too_large)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# Running passes.


def _base_features(p: Pass, run: features.RunOptions):
    from . import twins

    return features.extract(p.spec, run, keep=p.keep, square=p.square,
                            plant=twins.TWINS[p.plant] if p.plant else None, weights_file=p.weights_file)


def _run_features(p: Pass, run: features.RunOptions) -> str:
    if p.part is not None:  # one image range of the pass, into its part folder
        features.extract_part(p.spec, run, p.part, keep=p.keep, square=p.square, weights_file=p.weights_file)
    else:
        _base_features(p, run)
    return "done"


def _run_intervened(p: Pass, run: features.RunOptions) -> str:
    """What the page does after its cached pass: the cutoff on the last block's patch norms, then
    :func:`test_time.moved_pass` (object discovery: only for a model with outliers, keeping the keys)."""
    from . import findings, test_time

    base_keep = ("keys",) if p.option("page") == "object_discovery" else ()
    feats = _base_features(dataclasses.replace(p, keep=base_keep), run)
    norms = findings.patch_grid(feats, "norm")
    cutoff = findings.cutoff_from_norms(norms, p.option("threshold"), p.option("adaptive"))
    high = norms > cutoff.value
    if p.option("page") == "object_discovery":
        if p.option("only_if_outliers") and not findings.outliers_found(norms, cutoff, p.seed):
            return "skipped: the released pass has no outliers (the page moves nothing)"
        test_time.moved_pass(feats, high, run, batch_size=run.batch_size, keep=tuple(p.option("keep", ())))
    else:
        test_time.moved_pass(feats, high, run, p.option("top_k"), p.option("batch_size"))
    return "done"


RUNNERS = {"features": _run_features, "intervened": _run_intervened}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise PlanError(f"a shard is K/N, e.g. 2/3, got {text!r}") from None
    if not 1 <= index <= count:
        raise PlanError(f"shard {text}: K must be between 1 and N")
    return index, count


def select(plan: Plan, ids: list[str] | None = None, shard: str | None = None) -> list[Pass]:
    """The passes of ``ids`` (with the passes they need first; the id of a split pass: all its parts), of one
    shard, or all."""
    if ids and shard:
        raise PlanError("give pass ids or --shard K/N, not both")
    if shard:
        return plan.shard(*parse_shard(shard))
    if not ids:
        return list(plan.passes)
    by_id, parts = plan.by_id(), plan.parts_of()
    ids = [unit.id for pass_id in ids for unit in parts.get(pass_id, [])] + [i for i in ids if i not in parts]
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise PlanError(f"the {plan.set_name!r} plan has no pass {', '.join(unknown)}; `python -m analysis plan "
                        f"--set {plan.set_name}` lists them")
    wanted = set(ids)
    for pass_id in list(ids):
        while by_id[pass_id].after in by_id and by_id[pass_id].after not in wanted:
            pass_id = by_id[pass_id].after
            wanted.add(pass_id)
    return [p for p in plan.passes if p.id in wanted]


def whole_where_complete(passes: list[Pass]) -> list[Pass]:
    """``passes`` with every complete set of parts of one pass replaced by that pass, where its first part was
    (run here, the whole pass is the same entry for fewer loads of the model)."""
    held: dict[str, set[int]] = {}
    for p in passes:
        if p.part is not None:
            held.setdefault(p.whole.id, set()).add(p.part[0])
    units, placed = [], set()
    for p in passes:
        if p.part is not None and held[p.whole.id] == set(range(1, p.part[1] + 1)):
            if p.whole.id not in placed:
                units.append(p.whole)
                placed.add(p.whole.id)
            continue
        units.append(p)
    return units


def run_passes(passes: list[Pass], cache_dir: str | Path, weights_dir: str | Path | None = None,
               device: str | None = None, progress: bool = True) -> list[dict]:
    """Run ``passes`` (plan order: a pass after the one it needs) into ``cache_dir``; a pass whose entry is
    already there costs nothing. Every part of one pass among them runs as the whole pass
    (:func:`whole_where_complete`); parts run alone are joined with the cache's other parts of their pass once the
    set is complete (:func:`analysis.features.assemble_parts`). Returns one record per pass run: id, seconds, and
    whether it ran a model."""
    cache_dir = Path(cache_dir).resolve()
    passes = whole_where_complete(passes)
    done = []
    for number, p in enumerate(passes, start=1):
        source, count = p.sample.run_source(p.seed, cache_dir)
        run = features.RunOptions(source, count, p.resolution, p.seed, weights_dir, device or p.device, p.precision,
                                  cache_dir=cache_dir, progress=progress,
                                  **({"batch_size": p.batch_size} if p.batch_size else {}))
        before = log_length(cache_dir)
        start = time.perf_counter()
        outcome = RUNNERS[p.kind](p, run)
        seconds = time.perf_counter() - start
        ran = log_length(cache_dir) > before
        state = "ran" if ran else "cached" if outcome == "done" else outcome
        part = f" (part {p.part[0]} of {p.part[1]})" if p.part else ""
        print(f"[pass {number}/{len(passes)}] {p.id}: {p.kind} {p.spec} on {p.sample.describe()}{part} @ "
              f"{p.resolution}px {state} ({seconds:.1f}s)", flush=True)
        done.append({"id": p.id, "seconds": seconds, "ran": ran, "outcome": state})
    if any(p.part is not None for p in passes):
        for entry in features.assemble_parts(cache_dir):
            print(f"[pass] parts joined into {entry.name}", flush=True)
    return done


# --------------------------------------------------------------------------------------------------------
# Merging cache folders.


def _kept(entry: Path) -> set[str]:
    return set(json.loads((entry / "meta.json").read_text()).get("kept", []))


def _copy_in(source: Path, target: Path, move: bool = False) -> None:
    """Copy (``move``: move) the folder ``source`` to ``target`` atomically: into a temporary sibling, then one
    rename. The temporary name is the one :mod:`analysis.features` recognises and clears after a killed run."""
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if move:
            shutil.move(source, tmp)  # a rename on the same disk; a copy (modification times kept) elsewhere
        else:
            shutil.copytree(source, tmp, copy_function=shutil.copy2)
        if target.exists():  # replaced: the old entry moves aside first, then goes
            old = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge_caches(sources: list[str | Path], into: str | Path, move: bool = False) -> dict[str, int]:
    """Merge feature-cache folders ``sources`` into ``into`` (``move``: move what is taken instead of copying it,
    for sources that are thrown away afterwards, e.g. downloaded artifacts: no second copy on the disk).

    * An entry (a folder with ``meta.json``) missing from ``into`` is copied in. Entries are content-addressed
      (the folder name is the hash of what produced them), so one present in both is the same pass: the copy
      whose ``kept`` arrays are a strict superset replaces the other; otherwise ``into``'s stays.
    * Each entry lands atomically (a temporary folder, then a rename): a reader never sees half an entry.
    * Other folders (the planted object-discovery set) and files (a test-time register's chosen units,
      ``<model>-units-<key>.json``, content-addressed too) are copied when missing; temporaries (``.tmp-*``,
      ``.*``) of running or killed writers are skipped.
    * ``passes.jsonl`` is a log, not an index: the sources' lines are appended to ``into``'s, so the merged log
      counts every pass that filled the cache, wherever it ran. Merge each source once. (The build's
      zero-pass check compares the log before and after the build, so a merged log does not disturb it.)

    * Parts of a split pass (``parts/<entry>/<k>-of-<n>/``, :func:`analysis.features.extract_part`) are merged
      like entries; then every complete set of parts in ``into`` is joined into its entry and removed
      (:func:`analysis.features.assemble_parts`), an incomplete set waits for the rest.

    Returns counts: ``copied``, ``replaced``, ``kept`` (entries already there), ``folders``, ``files``,
    ``parts`` (part folders taken), ``assembled`` (entries joined from parts), ``log_lines``.
    """
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    counts = {"copied": 0, "replaced": 0, "kept": 0, "folders": 0, "files": 0, "parts": 0, "assembled": 0,
              "log_lines": 0}
    lines: list[str] = []
    for source in map(Path, sources):
        if not source.is_dir():
            raise PlanError(f"cache folder {source} does not exist")
        if source.resolve() == into.resolve():
            raise PlanError(f"cannot merge {source} into itself")
        for entry in sorted(source.iterdir()):
            if entry.name.startswith("."):
                continue
            target = into / entry.name
            if entry.is_dir() and entry.name == features.PARTS_DIR:
                counts["parts"] += _merge_parts(entry, target, move)
            elif entry.is_dir() and (entry / "meta.json").is_file():
                if not (target / "meta.json").is_file():
                    _copy_in(entry, target, move)
                    counts["copied"] += 1
                elif _kept(entry) > _kept(target):
                    _copy_in(entry, target, move)
                    counts["replaced"] += 1
                else:
                    counts["kept"] += 1
            elif entry.is_dir() and not target.exists():
                _copy_in(entry, target, move)
                counts["folders"] += 1
            elif entry.is_file() and entry.name != "passes.jsonl" and not target.exists():
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
                shutil.copy2(entry, tmp)  # a cached choice of units (<model>-units-<key>.json): whole or absent
                os.replace(tmp, target)
                counts["files"] += 1
        log = source / "passes.jsonl"
        if log.is_file():
            lines += [line for line in log.read_text().splitlines() if line.strip()]
    if lines:
        log = into / "passes.jsonl"
        existing = log.read_text() if log.is_file() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        tmp = log.with_name(f".passes.{os.getpid()}.{uuid.uuid4().hex[:8]}.jsonl")
        tmp.write_text(existing + "\n".join(lines) + "\n")
        os.replace(tmp, log)
        counts["log_lines"] = len(lines)
    try:
        counts["assembled"] = len(features.assemble_parts(into))
    except ValueError as error:  # parts that name one entry but were asked for different passes
        raise PlanError(f"cannot join parts in {into / features.PARTS_DIR}: {error}") from None
    return counts


def _merge_parts(source: Path, target: Path, move: bool) -> int:
    """Part folders of ``source`` (``parts/``) into ``target``, as entries are merged: a missing one copied, one
    holding more arrays replacing the other. Returns how many were taken."""
    taken = 0
    for held in sorted(source.iterdir()):
        if held.name.startswith(".") or not held.is_dir():
            continue
        for part in sorted(held.iterdir()):
            if part.name.startswith(".") or not (part / "meta.json").is_file():
                continue
            there = target / held.name / part.name
            there.parent.mkdir(parents=True, exist_ok=True)
            if not (there / "meta.json").is_file() or _kept(part) > _kept(there):
                _copy_in(part, there, move)
                taken += 1
    return taken


def log_length(cache_dir: str | Path) -> int:
    """Lines of ``<cache>/passes.jsonl``: the model passes that ran into this cache."""
    path = Path(cache_dir) / "passes.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def limits_table(plans: dict[str, Plan]):
    """One row per (set, quantity): the plan's total on one runner against :data:`RUNNER`'s limit, and the largest
    of its suggested shards (the workflow's matrix) against the shard budget (memory: the runner's)."""
    import pandas as pd

    rows = []
    for name, plan in plans.items():
        count = plan.suggested_shards()
        shards = [plan.totals(s) for s in plan.shards(count) if s] or [plan.totals([])]
        one = plan.totals()
        for quantity, key, limit, shard_limit, unit in (
                ("time", "seconds", RUNNER.job_seconds * JOB_BUDGET, plan.budget.seconds, 3600),
                ("memory", "memory_bytes", RUNNER.memory_bytes, RUNNER.memory_bytes, 1e9),
                ("disk", "disk_bytes", RUNNER.disk_bytes, plan.budget.disk_bytes, 1e9)):
            largest = max(t[key] for t in shards)
            rows.append({"set": name, "quantity": quantity, "unit": "h" if unit == 3600 else "GB",
                         "one_runner": one[key] / unit, "largest_shard": largest / unit, "shards": count,
                         "passes": one["passes"], "parts": one["parts"], "limit": limit / unit,
                         "shard_limit": shard_limit / unit, "one_runner_fits": one[key] <= limit,
                         "shards_fit": largest <= shard_limit})
    return pd.DataFrame(rows)


def plan_sentence(plans: dict[str, Plan]) -> str:
    """The plans' totals against the runner and the shard budget, in words (Markdown), for the appendix."""
    parts = []
    for name, plan in plans.items():
        totals, count = plan.totals(), plan.suggested_shards()
        shards = [plan.totals(s) for s in plan.shards(count) if s]
        misfits = [q for q in ("time", "memory", "disk") if not totals["fits"][q]]
        shard_misfits = sum(not all(t["fits_shard"].values()) for t in shards)
        split = (f" ({len(plan.parts_of())} of them split into {totals['parts']} parts)" if totals["parts"] else "")
        parts.append(
            f"the `{name}` set needs {totals['passes']} passes{split}: {_duration(totals['seconds'])} one after "
            f"another, {totals['memory_bytes'] / 1e9:.1f} GB at its largest pass and "
            f"{totals['disk_bytes'] / 1e9:.1f} GB of disk, which "
            + ("fits one runner" if not misfits else f"exceeds one runner's {' and '.join(misfits)}")
            + (f"; in {count} shards of at most {_duration(plan.budget.seconds)} and "
               f"{plan.budget.disk_bytes / 1e9:.0f} GB, "
               + ("every shard fits" if not shard_misfits else
                  f"{shard_misfits} of {count} still {'does' if shard_misfits == 1 else 'do'} not fit")
               if count > 1 else ""))
    too_large = sorted({i for plan in plans.values() for i in plan.too_large()})
    tail = (f" Larger than a shard on their own, and not to be split further: "
            f"{', '.join(f'`{i}`' for i in too_large)}." if too_large else "")
    source = next(iter(plans.values())).throughput.source if plans else ""
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + f" (seconds: {source})." + tail
