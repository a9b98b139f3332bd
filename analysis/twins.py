"""Twins: real networks with planted high-norm tokens of declared truth, to check the study's verdict rules.

A *twin* is an ordinary timm ViT (real weights, or a ``random:`` spec) whose forward pass is altered by
forward hooks so that it has high-norm tokens exactly where a :class:`Plant` says. The study's rules
(presence and share of outliers, onset block, redundancy with the neighbours, registers) can then be scored
against a :class:`Truth` that is known, not estimated. ``features.extract(spec, ..., plant=plant)`` runs a
twin through the ordinary cached pass; :func:`attach` is the context manager behind it.

Shapes: ``B`` images, ``N = P + Np`` tokens (``P`` prefix tokens — CLS and registers — then ``Np`` patch
tokens on an ``h × w`` grid), ``D`` channels, ``L`` blocks. All norms are L2 norms over ``D`` on the
residual stream (block outputs, before the final LayerNorm: where :mod:`analysis.hooks` measures).

**Shaped like the paper's models.** The paper's outliers sit 3–11× above the median patch norm (DINOv2 ViT-g:
median ~50, outliers 150–560), about 2 % of the patches, their number varying from image to image. A twin's
outliers are drawn the same way: each planted token gets a final ratio to its image's median, log-uniform in
``Plant.ratios`` (inside or at 3–11×); the number per image varies (gamma-Poisson around ``Plant.share``,
and a share ``Plant.empty_share`` of the images holds none); the norms grow over the blocks. Truth uses the
paper's line, :data:`LINE` = 3× the median: a planted outlier is at or above it from its onset block on,
everything else the twin plants stays below it.

Mechanics, per forward pass (hooks are registered with ``prepend=True``, so the capture hooks of
:mod:`analysis.hooks` see the altered block outputs, and every later block computes on them):

* **Selection**, at the patch embedding ``(B, Np, D)`` (before position embedding), with a generator seeded
  by ``(Plant.seed, sha256 of the image's pixels)`` — the pixels are the model's input, computed on the CPU
  and copied exactly to any device, so every draw depends on the image alone, not on its batch, its place in
  the batch or the device:

  - the **count** of outliers in the image: 0 with probability ``empty_share``; otherwise ``max(1, Poisson(λ))``
    with ``λ`` gamma-distributed around ``share · Np / (1 − empty_share)`` (shape ``1 / dispersion``), capped at
    a quarter of the patches;
  - ``redundant``: that many patches with the highest :func:`analysis.metrics.neighbour_cosine` of the patch
    embedding (the numbers the ``patches`` frame stores, so truth can be read back from the frame);
  - ``random``: that many patches drawn at random;
  - ``pinned``: ``Plant.positions``, each held in an image with probability ``1 − empty_share``;
  - ``registers``: every register token, and ``share`` of the patches (random, counted as above) as the
    outliers a register model leaves;
  - ``none``: nothing.

  Positions in ``Plant.native`` (the base network's own outliers, below) are never chosen. *Between* tokens
  (``Poisson(between_share · Np)`` per image, patch modes) are drawn among the rest; they get a ratio
  log-uniform in ``Plant.between_ratios``, below the line: a shoulder above the bulk that is not an outlier.

* **Growth and planting**, at the output of every block: let ``m_b`` be the median norm of the image's
  *non-planted* patch tokens at block ``b`` (torch's median: the lower middle value). A planted outlier of final
  ratio ``R`` gets the target norm ``ratio_b · m_b`` (:func:`ratio_at`): from the onset block ``o`` on,
  ``ratio_b = 3 · (R / 3) ** p_b`` with ``p_b = min(1, (b − o + 1) / (ramp_blocks + 1))`` — at the line or above
  from the onset block, growing to ``R`` over ``ramp_blocks`` blocks; before it, ``3 · 1.5 ** (b − o)`` (2×,
  1.3× the median) while that is at least 1×, untouched earlier. Between tokens hold their ratio from the
  onset on. The token ``x`` is split into its component along a fixed unit direction ``u`` (seeded by
  ``Plant.seed``) and the rest ``r = x − (x·u) u``; the output is ``r + sqrt(T² − |r|²) · u``, which has norm
  exactly ``T`` and keeps what the network wrote orthogonally to ``u``. Where ``|r| > T`` the token becomes
  ``T · r / |r|``.

* **The base network's own outliers** (``Plant.native``: positions and the block they are born at, measured on
  the plain network, :data:`VIT_TINY_NATIVE`): from that block on, each such token is *replaced by a copy of
  its nearest patch that is not planted* (its inner diagonal neighbour, else an edge neighbour, else the
  nearest such patch), before the median is taken. Its norm is then one drawn from the image's own bulk; no
  token is rescaled, so no pile forms at the median. The real ViT-Ti/16 at 224 px grows 4 corner outliers
  (born at block 6 at 1.1–3.1× the median, 2–51× from block 7). Replaced from block 6 on, the network grows
  no other: every patch of the ``none`` twins stays within 1.8× of its image's median at every block on the 12
  shipped photos (the real network's bulk reaches 1.76× at block 0). Its bulk keeps the real network's shape: in
  every block the skew and excess kurtosis of the log-norms (to each image's median) lie within 0.25 and 0.6 of
  the real model's bulk with its corners left out (tests/test_twins.py holds them to 0.5 and 1.0; the old
  rescaling to the median gave the last block skew −0.9 and excess kurtosis 3.8 against 0.1 and 0.4). Its
  log-norm spread is up to 25 % narrower in blocks 9–11: without its 4 sinks the network's other tokens draw
  together. A copy made from block 0 on instead makes the network grow new outliers at other positions from
  block 7 (up to 16×): the corners are where it puts them, so they are replaced only once born.

Hooks are removed even when the forward pass raises.

**Two families.** :data:`DEV_TWINS` is the development family: any constant of the study's rules or of this
module that depends on how twins come out is chosen on it and on nothing else. :data:`HELD_OUT_TWINS` is
seeded apart (seeds from 100) and has other shapes (other shares, ratio ranges, onsets, ramps, counts, pinned
positions, register leftovers); it was fixed before any rule ran on it and is not tuned on. The validation page
reports both; a held-out twin that a rule misjudges fails the tests (tests/test_validation.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import hooks, metrics, models

#: Where a plant puts its high-norm tokens.
WHERE = ("redundant", "random", "pinned", "registers", "none")
#: The modes that plant outliers on patch tokens chosen per image.
PATCH_MODES = ("redundant", "random", "pinned")
#: The paper's line: outliers are at least 3x the median patch norm (DINOv2 ViT-g: median ~50, outliers 150-560).
LINE = 3.0
#: The paper's range of outlier ratios to the median (150-560 against ~50).
PAPER_RATIOS = (3.0, 11.0)
#: Before its onset block a planted token grows by this factor a block towards the line (2x, 1.3x the median).
PRE_GROWTH = 1.5
#: Bump when the planting or neutralising mechanics change: invalidates cached twins.
MECHANICS_VERSION = 2


@dataclass(frozen=True)
class Native:
    """A base network's own outliers: grid positions (patch indices) and the block whose output first holds them."""

    positions: tuple[int, ...]
    born: int

    def as_dict(self) -> dict:
        return {"positions": list(self.positions), "born": self.born}


#: The real ViT-Ti/16's own outliers at 224 px (centre crop, 14 x 14 grid), measured on the plain network over the
#: 12 shipped photos: the 4 corner patches leave the bulk at block 6 (1.1-3.1x the median, every other patch at
#: most 1.4x) and hold 2-51x from block 7 on (tests/test_twins.py checks this on the plain pass).
VIT_TINY_NATIVE = Native((0, 13, 182, 195), 6)


@dataclass(frozen=True)
class Plant:
    """What a twin plants; hashable, JSON-able (goes into the cache key)."""

    name: str
    where: str  # "redundant" | "random" | "pinned" | "registers" | "none"
    share: float = 0.02  # mean share of patch outliers per image (registers: the patch outliers left over)
    empty_share: float = 0.15  # share of images without outliers (pinned: of positions absent per image)
    dispersion: float = 0.5  # gamma-Poisson over-dispersion of the count per image (0: Poisson)
    ratios: tuple[float, float] = (3.3, 11.0)  # final outlier ratio to the median, log-uniform in this range
    onset_block: int = 4  # first block whose output holds the planted tokens at or above LINE x the median
    ramp_blocks: int = 2  # blocks after the onset over which the ratios grow to their final value
    between_share: float = 0.004  # mean shoulder tokens per image, below the line: not outliers
    between_ratios: tuple[float, float] = (1.8, 2.7)  # their ratio to the median, log-uniform
    positions: tuple[int, ...] = ()  # patch indices (row * w + col) for "pinned"
    native: Native | None = None  # the base network's own outliers, replaced by copies of a neighbour
    seed: int = 0

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise ValueError(f"Plant.where must be one of {WHERE}, got {self.where!r}")
        if self.where in ("redundant", "random") and not 0 < self.share <= 0.2:
            raise ValueError(f"Plant.share is a small share of the patches in (0, 0.2], got {self.share}")
        if not 0 <= self.share <= 0.2:
            raise ValueError(f"Plant.share must lie in [0, 0.2], got {self.share}")
        if not 0 <= self.empty_share < 1 or self.dispersion < 0 or self.between_share < 0:
            raise ValueError("Plant.empty_share must lie in [0, 1); dispersion and between_share must be >= 0")
        if self.onset_block < 0 or self.ramp_blocks < 0:
            raise ValueError(f"Plant.onset_block and ramp_blocks must be >= 0, got {self.onset_block}, "
                             f"{self.ramp_blocks}")
        low, high = (float(r) for r in self.ratios)
        if not LINE <= low <= high:
            raise ValueError(f"Plant.ratios must lie at or above the paper's line of {LINE:g}x the median "
                             f"(low <= high), got {self.ratios}")
        between_low, between_high = (float(r) for r in self.between_ratios)
        if not 1 <= between_low <= between_high < LINE:
            raise ValueError(f"Plant.between_ratios must lie in [1, {LINE:g}) (below the line), got "
                             f"{self.between_ratios}")
        if self.where == "pinned" and not self.positions:
            raise ValueError("a 'pinned' plant needs positions (patch indices)")
        for what, values in (("positions", self.positions), ("native positions", self.native_positions)):
            if any(int(p) != p or p < 0 for p in values) or len(set(values)) != len(values):
                raise ValueError(f"Plant.{what} must be distinct patch indices >= 0, got {values}")
        if set(self.positions) & set(self.native_positions):
            raise ValueError("a pinned position cannot be one of the base network's own outlier positions")
        object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))
        object.__setattr__(self, "ratios", (low, high))
        object.__setattr__(self, "between_ratios", (between_low, between_high))
        if isinstance(self.native, dict):
            object.__setattr__(self, "native", Native(tuple(self.native["positions"]), int(self.native["born"])))

    @property
    def native_positions(self) -> tuple[int, ...]:
        native = self.native
        if isinstance(native, dict):
            return tuple(native["positions"])
        return native.positions if native is not None else ()

    def as_dict(self) -> dict:
        """The plant's fields as JSON-able values."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["positions"], fields["ratios"] = list(self.positions), list(self.ratios)
        fields["between_ratios"] = list(self.between_ratios)
        fields["native"] = self.native.as_dict() if self.native is not None else None
        return fields

    @classmethod
    def from_dict(cls, fields: dict) -> "Plant":
        """Inverse of :meth:`as_dict` (e.g. ``Plant.from_dict(features.meta["plant"])``)."""
        fields = dict(fields)
        for name in ("positions", "ratios", "between_ratios"):
            if name in fields:
                fields[name] = tuple(fields[name])
        native = fields.get("native")
        fields["native"] = Native(tuple(native["positions"]), int(native["born"])) if native else None
        return cls(**fields)

    def key(self) -> str:
        """A stable string of every field, for cache keys."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @property
    def on_patches(self) -> bool:
        return self.where in PATCH_MODES


# --------------------------------------------------------------------------------------------------------
# The registry: two families.

#: Interior positions on ViT-Ti's 14 x 14 grid, (3, 3), (3, 10), (10, 3), (10, 10): not the 4 corners where the
#: real ViT-Ti grows its own outliers (so a neutralising failure could not pass for a pinned success).
PINNED_POSITIONS = (3 * 14 + 3, 3 * 14 + 10, 10 * 14 + 3, 10 * 14 + 10)
#: Six other interior positions for the held-out pinned twin: (2, 6), (5, 2), (6, 11), (9, 5), (11, 8), (12, 12).
HELD_OUT_PINNED = (2 * 14 + 6, 5 * 14 + 2, 6 * 14 + 11, 9 * 14 + 5, 11 * 14 + 8, 12 * 14 + 12)

#: A network with 4 register tokens (random init: there are no offline weights with registers), read at 224 px,
#: and the same architecture without registers: the pair the ``ci`` registers page compares.
REGISTER_BASE = "random:vit_small_patch14_reg4_dinov2.lvd142m"
PLAIN_REGISTER_BASE = "random:vit_small_patch14_dinov2.lvd142m"

_TINY = dict(native=VIT_TINY_NATIVE)

#: The development family (seeds 0-9): constants are chosen on these and nowhere else.
DEV_TWINS: dict[str, Plant] = {plant.name: plant for plant in (
    Plant("dev-redundant", "redundant", share=0.02, seed=1, **_TINY),
    # 10 of 196 patches per image on average: enough at random places that 12 images can show *no* redundancy
    Plant("dev-random", "random", share=0.05, onset_block=5, seed=2, **_TINY),
    Plant("dev-pinned", "pinned", positions=PINNED_POSITIONS, empty_share=0.0, seed=3, **_TINY),
    Plant("dev-early", "redundant", onset_block=1, seed=4, **_TINY),  # onset at 1/12 of the depth: far too early
    Plant("dev-late", "random", share=0.03, onset_block=10, ramp_blocks=1, seed=5, **_TINY),  # 10/12: too late
    Plant("dev-sparse", "random", share=0.005, empty_share=0.3, seed=6, **_TINY),  # about 12 outliers in 12 images
    Plant("dev-none", "none", share=0.0, seed=7, **_TINY),
    # dev-redundant without the shoulder of between tokens: tells what the shoulder alone does to the rules
    Plant("dev-no-shoulder", "redundant", share=0.02, between_share=0.0, seed=9, **_TINY),
    Plant("dev-reg-plain", "random", share=0.03, seed=8),  # the register pair: norm in the patches ...
    Plant("dev-registers", "registers", share=0.001, seed=8),  # ... and in the registers, a few patch outliers left
)}

#: The held-out family (seeds from 100): other shapes, fixed before any rule ran on it; never tuned on.
HELD_OUT_TWINS: dict[str, Plant] = {plant.name: plant for plant in (
    # near the line: outliers 3-5x, a late and slow onset, twice the shoulder tokens, a third of the images empty
    Plant("held-redundant-near", "redundant", share=0.01, empty_share=0.3, ratios=(3.0, 5.0), onset_block=6,
          ramp_blocks=3, between_share=0.008, seed=101, **_TINY),
    # high (6-11x), strongly over-dispersed counts, a quarter of the images empty, a fast early-middle onset
    Plant("held-random-high", "random", share=0.03, empty_share=0.25, dispersion=1.0, ratios=(6.0, 11.0),
          onset_block=3, ramp_blocks=1, seed=102, **_TINY),
    # the paper's smallest shares: 0.2 % of the patches, half the images empty (about 5 outliers in 12 images)
    Plant("held-sparse", "random", share=0.002, empty_share=0.5, onset_block=5, seed=103, **_TINY),
    # six pinned positions, each absent from an image with probability 0.1, ratios 4-9x
    Plant("held-pinned", "pinned", positions=HELD_OUT_PINNED, empty_share=0.1, ratios=(4.0, 9.0), onset_block=5,
          seed=104, **_TINY),
    Plant("held-early", "random", share=0.02, ratios=PAPER_RATIOS, onset_block=2, seed=105, **_TINY),  # 2/12: early
    Plant("held-late-middle", "redundant", share=0.02, onset_block=8, ramp_blocks=1, seed=106, **_TINY),  # 8/12
    Plant("held-none", "none", share=0.0, between_share=0.0, seed=107, **_TINY),
    Plant("held-reg-plain", "redundant", share=0.02, onset_block=5, ratios=(4.0, 11.0), seed=108),
    # registers that remove the outliers: none left; and registers that leave half of them (not removed)
    Plant("held-registers-clean", "registers", share=0.0, onset_block=5, ratios=(4.0, 8.0), seed=109),
    Plant("held-registers-leaky", "registers", share=0.01, onset_block=5, ratios=(4.0, 8.0), seed=110),
)}

#: Each family's names, in the order the validation page shows them.
FAMILIES: dict[str, tuple[str, ...]] = {"development": tuple(DEV_TWINS), "held-out": tuple(HELD_OUT_TWINS)}
#: Every twin by name (both families).
TWINS: dict[str, Plant] = {**DEV_TWINS, **HELD_OUT_TWINS}
#: Register twins and the plain twin each is compared with (the registers page's pair, without then with).
REGISTER_PAIRS: dict[str, str] = {"dev-registers": "dev-reg-plain", "held-registers-clean": "held-reg-plain",
                                  "held-registers-leaky": "held-reg-plain"}
#: The base network each twin runs on (a normal spec for ``features.extract``): the real ViT-Ti, except the register
#: pairs (random-init DINOv2 ViT-S/14 without and with 4 registers, the ``ci`` registers page's pair).
TWIN_BASES: dict[str, str] = {
    name: (REGISTER_BASE if plant.where == "registers" else
           PLAIN_REGISTER_BASE if name in REGISTER_PAIRS.values() else models.OFFLINE_MODEL)
    for name, plant in TWINS.items()}


def family_of(name: str) -> str:
    """``"development"`` or ``"held-out"``."""
    return next(family for family, names in FAMILIES.items() if name in names)


# --------------------------------------------------------------------------------------------------------
# Declared truth.


@dataclass(frozen=True)
class Truth:
    """What a twin has, by construction, for a model of ``depth`` blocks on a ``grid`` of patches.

    From :func:`truth` (the plant alone) the share is the plant's nominal mean; from :func:`truth_of` (a cached
    pass) it is what was planted in that pass's images (``counts``), the truth the rules are held to.
    """

    plant: str
    has_outliers: bool  # are there planted high-norm *patch* tokens (a register twin's leftovers count)?
    share: float  # share of the patch tokens that are planted outliers (nominal, or realised in a pass)
    share_with_between: float  # the same with the between tokens (below the line, not outliers)
    counts: tuple[int, ...]  # planted patch outliers per image, cache order; () without a pass
    onset_block: int | None  # first block whose output holds the planted tokens at or above LINE x the median
    redundant: bool | None  # outliers on the most redundant patches? None: confounded (pinned) or no outliers
    pinned: bool  # the same patch positions in (almost) every image
    positions: tuple[int, ...]  # those positions (patch indices), () unless pinned
    in_registers: bool  # the high norm sits in register tokens
    ratios: tuple[float, float]  # range of the planted outliers' final ratios to the median (0, 0 without)
    native_replaced: tuple[int, ...]  # the base network's own outlier positions, replaced by neighbour copies
    depth: int
    grid: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def empty_images(self) -> int:
        return sum(1 for count in self.counts if count == 0)

    def blocks_with_outliers(self) -> list[int]:
        """Blocks whose output holds planted patch outliers at or above the line."""
        return list(range(self.onset_block, self.depth)) if self.has_outliers else []

    def as_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        for name in ("positions", "grid", "counts", "ratios", "native_replaced"):
            fields[name] = list(fields[name])
        return fields


def check_fits(plant: Plant, depth: int, grid: tuple[int, int], num_registers: int | None = None) -> None:
    """Refuse a plant that the model cannot carry (onset past the last block, positions off the grid, ...)."""
    num_patches = grid[0] * grid[1]
    if plant.where != "none" and plant.onset_block >= depth:
        raise ValueError(f"plant {plant.name!r}: onset_block {plant.onset_block} but the model has {depth} blocks")
    for what, values in (("positions", plant.positions), ("native positions", plant.native_positions)):
        if values and max(values) >= num_patches:
            raise ValueError(f"plant {plant.name!r}: {what} {values} off a {grid[0]}x{grid[1]} grid")
    if plant.native is not None and plant.native.born >= depth:
        raise ValueError(f"plant {plant.name!r}: native outliers born at block {plant.native.born} of {depth}")
    if plant.where == "registers" and num_registers == 0:
        raise ValueError(f"plant {plant.name!r} needs a model with register tokens; this one has none")


def truth(plant: Plant, depth: int, grid: tuple[int, int], counts: tuple[int, ...] = (),
          between: tuple[int, ...] = ()) -> Truth:
    """The declared truth of ``plant`` on a model of ``depth`` blocks and an ``(h, w)`` patch ``grid``;
    ``counts`` / ``between``: planted outliers / between tokens per image of a pass (else the nominal share)."""
    grid = (int(grid[0]), int(grid[1]))
    check_fits(plant, depth, grid)
    num_patches = grid[0] * grid[1]
    nominal = (len(plant.positions) * (1 - plant.empty_share) / num_patches if plant.where == "pinned"
               else plant.share if plant.where != "none" else 0.0)
    has = nominal > 0
    if counts:
        share = sum(counts) / (len(counts) * num_patches)
        with_between = (sum(counts) + sum(between)) / (len(counts) * num_patches)
    else:
        share, with_between = nominal, nominal + (plant.between_share if plant.on_patches and has else 0.0)
    return Truth(
        plant=plant.name,
        has_outliers=has,
        share=share,
        share_with_between=with_between,
        counts=tuple(int(c) for c in counts),
        onset_block=None if plant.where == "none" else plant.onset_block,
        redundant={"redundant": True, "random": False}.get(plant.where),
        pinned=plant.where == "pinned",
        positions=plant.positions if plant.where == "pinned" else (),
        in_registers=plant.where == "registers",
        ratios=plant.ratios if plant.where != "none" else (0.0, 0.0),
        native_replaced=plant.native_positions,
        depth=depth,
        grid=grid,
    )


def truth_of(meta: dict) -> Truth | None:
    """The truth of a cached pass from its ``meta`` (``Features.meta``), with what it planted per image; None for
    an ordinary pass."""
    if "plant" not in meta:
        return None
    masks = planted_masks(meta)
    return truth(Plant.from_dict(meta["plant"]), int(meta["depth"]), tuple(meta["grid"]),
                 tuple(masks["outliers"].sum(1).tolist()), tuple(masks["between"].sum(1).tolist()))


def planted_masks(meta: dict) -> dict[str, np.ndarray]:
    """Per-image truth of a cached twin pass (``Features.meta``): ``{"outliers": (B, Np), "between": (B, Np)}``
    boolean masks over patch tokens, images in cache order (the order of ``meta["images"]``).

    For a register twin ``outliers`` holds its leftover patch outliers (its register tokens are in
    ``meta["planted"][image]["outliers"]`` too, below the prefix count).
    """
    prefix, grid = int(meta["num_prefix_tokens"]), tuple(meta["grid"])
    ids = [image["image_id"] for image in meta["images"]]
    masks = {kind: np.zeros((len(ids), grid[0] * grid[1]), dtype=bool) for kind in ("outliers", "between")}
    for row, image_id in enumerate(ids):
        for kind, mask in masks.items():
            patches = [token - prefix for token in meta["planted"][image_id][kind] if token >= prefix]
            mask[row, patches] = True
    return masks


# --------------------------------------------------------------------------------------------------------
# Draws.


def direction(plant: Plant, dim: int) -> torch.Tensor:
    """The fixed unit direction ``(D,)`` planted components point along (seeded by ``plant.seed``)."""
    generator = torch.Generator().manual_seed(plant.seed)
    vector = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (vector / vector.norm()).float()


def content_seed(pixels: torch.Tensor) -> int:
    """A seed from one image's pixels ``(3, H, W)``: the same image gives the same seed in any batch or device."""
    data = pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def log_uniform(rng: np.random.Generator, count: int, bounds: tuple[float, float]) -> np.ndarray:
    """``count`` values log-uniform in ``bounds``."""
    low, high = np.log(bounds)
    return np.exp(rng.uniform(low, high, count))


def draw_count(rng: np.random.Generator, plant: Plant, num_patches: int, share: float | None = None) -> int:
    """Outliers in one image: 0 with probability ``empty_share``, else ``max(1, Poisson(λ))``, ``λ`` gamma around
    ``share · Np / (1 − empty_share)`` (shape ``1 / dispersion``); at most a quarter of the patches."""
    share = plant.share if share is None else share
    empty = rng.random() < plant.empty_share
    if share <= 0 or empty:
        return 0
    mean = share * num_patches / (1 - plant.empty_share)
    rate = rng.gamma(1 / plant.dispersion, mean * plant.dispersion) if plant.dispersion > 0 else mean
    return int(min(max(1, rng.poisson(rate)), num_patches // 4))


def ratio_at(final: np.ndarray | float, block: int, onset: int, ramp: int) -> np.ndarray | float | None:
    """Planted ratio to the median at ``block`` of tokens whose final ratio is ``final`` (None: not planted yet).

    From ``onset`` on: ``LINE · (final / LINE) ** p`` with ``p = min(1, (block − onset + 1) / (ramp + 1))``, at
    or above the line; before it ``LINE · PRE_GROWTH ** (block − onset)`` while that is at least 1.
    """
    if block >= onset:
        progress = min(1.0, (block - onset + 1) / (ramp + 1))
        return LINE * (np.asarray(final, dtype=float) / LINE) ** progress
    before = LINE * PRE_GROWTH ** (block - onset)
    return np.full_like(np.asarray(final, dtype=float), before) if before >= 1.0 else None


def select_patches(plant: Plant, patch_embed: torch.Tensor, grid: tuple[int, int], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Outlier and between patch indices for one image from its patch embedding ``(Np, D)``."""
    num_patches = grid[0] * grid[1]
    allowed = np.setdiff1d(np.arange(num_patches), plant.native_positions)
    if plant.where == "pinned":
        chosen = np.array([p for p in plant.positions if rng.random() >= plant.empty_share], dtype=np.int64)
    elif plant.where in ("redundant", "random", "registers"):
        count = min(draw_count(rng, plant, num_patches), len(allowed))
        if plant.where == "redundant":
            cosine = metrics.neighbour_cosine(patch_embed.float().cpu().reshape(1, *grid, -1)).reshape(-1).numpy()
            chosen = allowed[np.argsort(-cosine[allowed], kind="stable")[:count]]
        else:
            chosen = rng.permutation(allowed)[:count]
    else:
        chosen = np.empty(0, dtype=np.int64)
    between = np.empty(0, dtype=np.int64)
    if plant.on_patches and plant.between_share > 0:
        rest = np.setdiff1d(allowed, chosen)
        between = rng.permutation(rest)[: min(int(rng.poisson(plant.between_share * num_patches)), len(rest) // 2)]
    return np.sort(chosen).astype(np.int64), np.sort(between).astype(np.int64)


def replacement_order(position: int, grid: tuple[int, int]) -> list[int]:
    """Patches to copy a native outlier at ``position`` from, nearest first: the inner diagonal neighbour, the edge
    neighbours, then every other patch by distance (ties in index order)."""
    h, w = grid
    row, col = divmod(position, w)
    inward = (1 if row < h - 1 else -1, 1 if col < w - 1 else -1) if row in (0, h - 1) or col in (0, w - 1) else (1, 1)
    first = [(row + inward[0], col + inward[1]), (row, col + inward[1]), (row + inward[0], col)]
    rows, cols = np.divmod(np.arange(h * w), w)
    distance = (rows - row) ** 2 + (cols - col) ** 2
    by_distance = [int(p) for p in np.lexsort((np.arange(h * w), distance)) if p != position]
    ordered = [r * w + c for r, c in first if 0 <= r < h and 0 <= c < w]
    return ordered + [p for p in by_distance if p not in ordered]


# --------------------------------------------------------------------------------------------------------
# The hooks.


@dataclass
class PlantedImage:
    """What was planted in one image: token indices (into ``N``, prefix first), their drawn final ratios, and for
    each of the base network's own outlier positions the patch it was copied from."""

    outliers: list[int]
    outlier_ratios: list[float]
    between: list[int]
    between_ratios: list[float]
    replaced: dict[int, int] = field(default_factory=dict)  # native patch index -> patch index copied

    def as_dict(self) -> dict:
        return {"outliers": self.outliers, "outlier_ratios": [round(r, 4) for r in self.outlier_ratios],
                "between": self.between, "between_ratios": [round(r, 4) for r in self.between_ratios],
                "replaced": {str(k): v for k, v in self.replaced.items()}}


@dataclass
class Ledger:
    """What each forward pass planted; :meth:`last_pass` ties the latest batch to its image ids."""

    passes: list[list[PlantedImage]] = field(default_factory=list)

    def last_pass(self, image_ids: list[str]) -> dict[str, dict]:
        """``{image_id: PlantedImage.as_dict()}`` for the latest pass's batch, in batch order."""
        latest = self.passes[-1]
        if len(latest) != len(image_ids):
            raise ValueError(f"the last pass planted {len(latest)} images, {len(image_ids)} ids given")
        return {image_id: planted.as_dict() for image_id, planted in zip(image_ids, latest)}


def set_norm_along(tokens: torch.Tensor, unit: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Tokens ``(M, D)`` given norms ``targets`` ``(M,)`` by setting their component along ``unit`` ``(D,)``.

    ``r = x − (x·u) u`` is kept and the component along ``u`` becomes ``sqrt(T² − |r|²)``; where
    ``|r| > T`` the token becomes ``T · r / |r|``.
    """
    along = tokens @ unit
    rest = tokens - along[:, None] * unit
    rest_norm = rest.norm(dim=-1)
    fits = rest_norm <= targets
    component = torch.sqrt(torch.clamp(targets**2 - rest_norm**2, min=0.0))
    planted = rest + component[:, None] * unit
    shrunk = rest * (targets / rest_norm.clamp_min(1e-12))[:, None]
    return torch.where(fits[:, None], planted, shrunk)


class _Pass:
    """Per-forward-pass state: which tokens are planted in each image, at which final ratios."""

    def __init__(self, plant: Plant, num_prefix: int, num_registers: int, grid: tuple[int, int], seeds: list[int],
                 unit: torch.Tensor):
        self.plant, self.num_prefix, self.grid, self.seeds = plant, num_prefix, grid, seeds
        self.num_registers, self.unit = num_registers, unit
        self.images: list[PlantedImage] = []
        self.outliers: torch.Tensor | None = None  # (B, N) planted outliers (patches and registers)
        self.between: torch.Tensor | None = None  # (B, N) between tokens
        self.finals: torch.Tensor | None = None  # (B, N) final ratios, 0 elsewhere
        self.sources: list[tuple[int, int, int]] = []  # (image, native token, token copied), prefix included

    def choose(self, patch_embed: torch.Tensor) -> None:
        """Select the planted tokens of every image from the patch embedding ``(B, Np, D)``."""
        batch = patch_embed.shape[0]
        num_tokens = self.num_prefix + self.grid[0] * self.grid[1]
        outliers, between = (torch.zeros(batch, num_tokens, dtype=torch.bool) for _ in range(2))
        finals = torch.zeros(batch, num_tokens, dtype=torch.float32)
        for index in range(batch):
            rng = np.random.default_rng([self.plant.seed, self.seeds[index]])
            planted = self._choose_one(patch_embed[index], rng)
            self.images.append(planted)
            outliers[index, planted.outliers] = True
            between[index, planted.between] = True
            for tokens, values in ((planted.outliers, planted.outlier_ratios), (planted.between, planted.between_ratios)):
                finals[index, tokens] = torch.tensor(values, dtype=torch.float32)
            self.sources += [(index, self.num_prefix + native, self.num_prefix + source)
                             for native, source in planted.replaced.items()]
        self.outliers, self.between, self.finals = outliers, between, finals

    def _choose_one(self, patch_embed: torch.Tensor, rng: np.random.Generator) -> PlantedImage:
        chosen, between = select_patches(self.plant, patch_embed, self.grid, rng)
        tokens = (chosen + self.num_prefix).tolist()
        if self.plant.where == "registers":
            first_register = self.num_prefix - self.num_registers
            tokens = list(range(first_register, self.num_prefix)) + tokens
        finals = log_uniform(rng, len(tokens), self.plant.ratios)
        taken = set(chosen.tolist()) | set(between.tolist())
        replaced = {}
        for native in self.plant.native_positions:
            replaced[native] = next(p for p in replacement_order(native, self.grid)
                                    if p not in taken and p not in self.plant.native_positions)
        return PlantedImage(tokens, finals.tolist(), (between + self.num_prefix).tolist(),
                            log_uniform(rng, len(between), self.plant.between_ratios).tolist(), replaced)

    def alter(self, block: int, output: torch.Tensor) -> torch.Tensor:
        """One block's output ``(B, N, D)`` with the native outliers replaced and the plant set (a new tensor)."""
        tokens = output.detach().float().clone()
        native = self.plant.native
        if native is not None and block >= native.born and self.sources:
            rows, targets, sources = (torch.tensor(column) for column in zip(*self.sources))
            tokens[rows, targets] = tokens[rows, sources]
        if self.plant.where == "none":
            return tokens.to(output.dtype)
        outlier_ratios = ratio_at(self.finals.numpy(), block, self.plant.onset_block, self.plant.ramp_blocks)
        active = self.between & (block >= self.plant.onset_block)
        planted = self.outliers | self.between
        patch_norms = tokens[:, self.num_prefix:].norm(dim=-1)  # (B, Np)
        excluded = planted[:, self.num_prefix:].to(tokens.device)
        median = torch.nanmedian(patch_norms.masked_fill(excluded, float("nan")), dim=1).values  # (B,)
        ratios = torch.zeros_like(self.finals)
        if outlier_ratios is not None:
            ratios = torch.where(self.outliers, torch.as_tensor(outlier_ratios, dtype=torch.float32), ratios)
        ratios = torch.where(active, self.finals, ratios)
        mask = ratios > 0
        if mask.any():
            rows, cols = mask.nonzero(as_tuple=True)
            targets = ratios[rows, cols].to(tokens.device) * median[rows.to(tokens.device)]
            rows, cols = rows.to(tokens.device), cols.to(tokens.device)
            tokens[rows, cols] = set_norm_along(tokens[rows, cols], self.unit.to(tokens.device), targets)
        return tokens.to(output.dtype)


@contextmanager
def attach(model: torch.nn.Module, plant: Plant) -> Iterator[Ledger]:
    """Turn ``model`` (a timm ViT) into the twin ``plant`` describes while the context is open.

    Yields a :class:`Ledger` of what each forward pass planted. The hooks are removed on exit, also when
    the pass raises; the model's weights are never changed.
    """
    if not isinstance(model, hooks.HOOKABLE):
        raise TypeError(f"a twin needs a timm VisionTransformer or Eva, got {type(model).__name__}")
    num_prefix = int(model.num_prefix_tokens)
    num_registers = num_prefix - int(hooks.has_cls_token(model))
    unit = direction(plant, int(model.embed_dim))
    ledger = Ledger()
    state: dict[str, _Pass] = {}

    def before_patch_embed(_module, inputs):  # a new pass: seeds from the pixels (B, 3, H, W)
        pixels = inputs[0]
        grid = hooks.grid_size(model, pixels.shape[-2], pixels.shape[-1])
        check_fits(plant, len(model.blocks), grid, num_registers)
        state["pass"] = _Pass(plant, num_prefix, num_registers, grid, [content_seed(image) for image in pixels], unit)

    def after_patch_embed(_module, _inputs, output):
        current = state["pass"]
        current.choose(output.flatten(1, -2) if output.ndim == 4 else output)
        ledger.passes.append(current.images)

    def after_block(index: int):
        def hook(_module, _inputs, output):
            return state["pass"].alter(index, output)

        return hook

    handles = []
    try:
        handles.append(model.patch_embed.register_forward_pre_hook(before_patch_embed, prepend=True))
        handles.append(model.patch_embed.register_forward_hook(after_patch_embed, prepend=True))
        for index, block in enumerate(model.blocks):
            handles.append(block.register_forward_hook(after_block(index), prepend=True))
        yield ledger
    finally:
        for handle in handles:
            handle.remove()


def cache_key(base_key: str, plant: Plant) -> str:
    """A feature-cache key for ``plant`` on top of an ordinary pass's ``base_key`` (16 hex digits)."""
    identity = f"{base_key}|twin|{plant.key()}|line={LINE}|pre={PRE_GROWTH}|v={MECHANICS_VERSION}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def bulk_shape(norms: np.ndarray) -> dict[str, float]:
    """Shape of a bulk of patch norms ``(B, Np)`` on the log scale of each image's median: skew, excess kurtosis
    and standard deviation of ``log(norm / image median)`` over every token (what a twin's bulk is held to)."""
    from scipy.stats import kurtosis, skew

    norms = np.asarray(norms, dtype=np.float64)
    logs = np.log(norms / np.median(norms, axis=1, keepdims=True)).ravel()
    logs = logs[np.isfinite(logs)]
    return {"skew": float(skew(logs)), "excess_kurtosis": float(kurtosis(logs)), "log_sd": float(np.std(logs)),
            "max_ratio": float(math.exp(logs.max()))}
