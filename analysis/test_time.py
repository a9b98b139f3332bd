"""A test-time register on a cached pass: choose the units on half the images, move them on the other half.

Both steps are cached like any pass (:mod:`analysis.features`), so a rebuild over a complete cache runs no
model: the chosen units go to ``<cache>/<model>-units-<key>.json``, keyed by the cached pass, the images they
were chosen on, those images' outlier masks and ``top_k``; the moved pass is an ordinary cache entry whose key
adds the units (:func:`analysis.features.register_key`). The model, device, precision, crop and image records
are the cached pass's own, so the cutoff read from the cached pass applies to the moved one unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import features, images, intervention, metrics, models
from .features import Features, RunOptions


@dataclass(frozen=True)
class MovedPass:
    """The units moved onto the test-time register and the pass of the held-out images with it in place."""

    neurons: list[intervention.RegisterNeuron]
    chosen_on: np.ndarray  # (Bc,) indices into the cached pass's images the units were chosen on
    held_out: np.ndarray  # (Bh,) indices of the images of the moved pass, in its order
    moved: Features  # the held-out images with the units moved (as released when no unit was found)

    @property
    def register_index(self) -> int | None:
        """Token index of the test-time register in the moved pass (right after the model's own prefix)."""
        return int(self.moved.meta["num_prefix_tokens"]) - 1 if self.neurons else None

    @property
    def register_norm(self) -> float:
        """Median last-block norm of the test-time register over the held-out images (nan without one)."""
        if not self.neurons:
            return float("nan")
        norms = self.moved.norms
        last = norms[(norms.block == self.moved.depth - 1) & (norms.token == self.register_index)]
        return float(last.norm.median())

    def unit_table(self) -> pd.DataFrame:
        """One row per moved unit: its block, index and mean activation at the outliers and elsewhere."""
        return pd.DataFrame([dataclasses.asdict(neuron) for neuron in self.neurons],
                            columns=["block", "neuron", "mean_at_outliers", "mean_elsewhere"])


def _run_of(feats: Features, run: RunOptions, records: list[images.ImageRecord]) -> RunOptions:
    """``run`` for the cached pass's own images (as records), precision and resolution."""
    return run.replace(image_source=records, n_images=None, resolution=int(feats.meta["resolution"]),
                       precision=feats.meta.get("precision", "float32"))


def _units_file(feats: Features, run: RunOptions, chosen_on: np.ndarray, high: np.ndarray, top_k: int) -> Path:
    identity = {"pass": [feats.meta["spec"], feats.provenance.sha256 or feats.provenance.location,
                         feats.provenance.seed, [image["image_id"] for image in feats.meta["images"]],
                         feats.meta["resolution"], feats.meta.get("square", False), feats.meta.get("precision")],
                "chosen_on": chosen_on.tolist(), "high": np.packbits(high[chosen_on]).tobytes().hex(), "top_k": top_k,
                "version": metrics.METRIC_VERSION}  # a change to how units are chosen must bump it
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(run.cache_dir or features.default_cache_dir())
    return cache / f"{feats.provenance.model}-units-{key}.json"


def choose_units(feats: Features, high: np.ndarray, chosen_on: np.ndarray, run: RunOptions, top_k: int = 4,
                 batch_size: int = 8) -> list[intervention.RegisterNeuron]:
    """The units that single out ``high`` ``(B, Np)`` on the cached pass's images ``chosen_on``
    (:func:`analysis.intervention.choose_neurons`), from the cache or from one pass over those images."""
    path = _units_file(feats, run, chosen_on, high, top_k)
    if path.is_file():
        return [intervention.RegisterNeuron(**unit) for unit in json.loads(path.read_text())]
    records = images.records_of(feats.meta["images"])
    target = features.resolve_device(run.device)
    seed = feats.provenance.seed if feats.provenance.seed is not None else run.seed  # the cached pass's network
    model, _ = models.load_model(feats.meta["spec"], img_size=int(feats.meta["resolution"]), weights_dir=run.weights_dir,
                                 seed=seed, allow_hub=run.allow_hub)
    model = model.to(target)
    pixels = images.pixel_batch([records[i] for i in chosen_on], model, int(feats.meta["resolution"]),
                                square=bool(feats.meta.get("square", False)))
    with features.autocast(target, feats.meta.get("precision", "float32")):
        neurons = intervention.choose_neurons(model, pixels, torch.from_numpy(high[chosen_on]), batch_size, top_k)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps([dataclasses.asdict(neuron) for neuron in neurons]))
    os.replace(partial, path)  # whole or absent: never half-written
    features.log_pass(path.parent, {"spec": feats.meta["spec"], "images": f"units:{path.stem}",
                                    "resolution": int(feats.meta["resolution"]), "keep": [], "square": False})
    return neurons


def moved_pass(feats: Features, high: np.ndarray, run: RunOptions, top_k: int = 4, batch_size: int = 8,
               keep: tuple[str, ...] = ()) -> MovedPass:
    """Split the cached pass's images in two (:func:`analysis.probes.split_images`, ``run.seed``), choose the
    units on the first half and run the second half with them moved onto a test-time register (as released
    when no unit singles the outliers out, so the page reads "nothing moved" from the same frames).

    ``high``: ``(B, Np)`` outlier mask of the cached pass; ``keep``: arrays the moved pass stores (e.g. ``"keys"``).
    """
    from .probes import split_images  # the same seeded split the probe page uses

    chosen_on, held_out = split_images(len(feats.meta["images"]), run.seed)
    neurons = choose_units(feats, high, chosen_on, run, top_k, batch_size)
    records = images.records_of(feats.meta["images"])
    held_run = _run_of(feats, run, [records[i] for i in held_out]).replace(batch_size=batch_size)
    moved = features.extract(feats.meta["spec"], held_run, keep=keep, square=bool(feats.meta.get("square", False)),
                             register=neurons)
    return MovedPass(neurons, chosen_on, held_out, moved)
