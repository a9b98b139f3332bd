"""Twins: real networks with planted high-norm tokens of declared truth, to check the study's verdict rules.

A *twin* is an ordinary timm ViT (real weights, or a ``random:`` spec) whose forward pass is altered by
forward hooks so that it has high-norm tokens exactly where a :class:`Plant` says. The study's rules
(share of outliers, onset block, redundancy with the neighbours, registers) can then be scored against
a :class:`Truth` that is known, not estimated. ``features.extract(spec, ..., plant=plant)`` runs a twin
through the ordinary cached pass; :func:`attach` is the context manager behind it.

Shapes: ``B`` images, ``N = P + Np`` tokens (``P`` prefix tokens — CLS and registers — then ``Np`` patch
tokens on an ``h × w`` grid), ``D`` channels, ``L`` blocks. All norms are L2 norms over ``D`` on the
residual stream (block outputs, before the final LayerNorm: where :mod:`analysis.hooks` measures).

Mechanics, per forward pass (hooks are registered with ``prepend=True``, so the capture hooks of
:mod:`analysis.hooks` see the altered block outputs):

* **Selection**, at the patch embedding ``(B, Np, D)`` (before position embedding):

  - ``redundant``: the ``k = max(1, round(share · Np))`` patches with the highest
    :func:`analysis.metrics.neighbour_cosine` of that output — the same numbers the ``patches`` frame
    stores, so the truth can be read back from the frame;
  - ``random``: ``k`` patches drawn by a generator seeded with ``(Plant.seed, sha256 of the image's
    pixels)``. The pixels are the model's input, computed on the CPU and copied exactly to any device, so
    the draw depends on the image alone — not on its batch, its place in the batch or the device;
  - ``pinned``: ``Plant.positions`` in every image (``share`` is ignored; ``k = len(positions)``);
  - ``registers``: every register token (patches get nothing);
  - ``none``: nothing.

  *Between* tokens (``max(1, round(between_share · Np))`` per image when ``between_share > 0``, patch
  modes only) are drawn by the same per-image generator among the patches not chosen as outliers.

* **Planting**, at the output of every block ``b ≥ onset_block``: let ``m_b`` be the median norm of the
  image's *non-planted* patch tokens at that block (torch's median: the lower middle value). Each planted
  token gets the target norm ``T = ratio · m_b``, where ``ratio`` is drawn once per token and image:
  log-normal around ``norm_ratio`` with ``sigma = spread`` for outliers (and register tokens),
  log-uniform in ``BETWEEN_RATIOS`` for between tokens. The token ``x`` is split into its component along a
  fixed unit direction ``u`` (seeded by ``Plant.seed``) and the rest ``r = x − (x·u) u``; the output is
  ``r + sqrt(T² − |r|²) · u``, which has norm exactly ``T`` and keeps what the network wrote orthogonally
  to ``u``. At the onset block this *adds* ``a · u`` with ``a = sqrt(T² − |r|²) − x·u``; at later blocks it
  re-scales the planted component, so the ratio to the median — what the rules read — is exact at every
  block (a choice: the absolute target follows the median, 8 → 20 in the ViT-Ti, whereas the ViT-Ti's own
  outliers hold a near-constant ~570). Where ``|r| > T`` the token becomes ``T · r / |r|`` (never happened
  in 1528 planted token-blocks of the registered twins on 8 photos).

* **Neutralising** (``Plant.neutralise``), at the output of *every* block: any non-planted patch token whose
  norm exceeds ``NEUTRAL_CAP · m_b`` is rescaled to norm ``m_b``. The real ViT-Ti has its own outliers
  from block 7 on (the 4 corner patches, ~570 against a median of 12–20), born at block 6 as corner
  tokens at 1.5–2.9× the median; neutralised, its patch max/median stays at or below ``NEUTRAL_CAP`` in
  every block, so the planted tokens are the twin's only high-norm tokens. Measured on 8 shipped photos
  (worst image per block 0–11): 1.65 1.35 1.29 1.51 1.51 1.49 1.98 1.92 1.92 1.88 1.78 1.38; un-neutralised:
  1.7 1.4 1.3 1.5 1.5 1.5 3.1 51.3 41.1 38.6 35.3 31.1. Prefix tokens (CLS, registers) are never neutralised.

Hooks are removed even when the forward pass raises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import hooks, metrics, models

#: Where a plant puts its high-norm tokens.
WHERE = ("redundant", "random", "pinned", "registers", "none")
#: The modes that plant outliers on patch tokens.
PATCH_MODES = ("redundant", "random", "pinned")
#: Non-planted patch tokens above this many times the image's median patch norm are rescaled to the median.
#: The real ViT-Ti's own outliers are born at block 6 as a small mode of corner patches at 1.5–2.9× the median
#: (~45× from block 7). A cap of 3 leaves that mode in place (the ``none`` twin then has an undeclared mode at
#: block 6); a cap of 2 leaves corner tokens at 1.6–2× that, with the between tokens, widen the planted mode so
#: that the mixture loses it at block 6 in some bootstrap resamples of the ``pinned`` twin (onset 7, not 4). At
#: 1.6 no resample loses it; the cap touches a handful of ordinary tokens at blocks 0 and 3 (max 1.65× there).
NEUTRAL_CAP = 1.6
#: Bump when the planting or neutralising mechanics change: invalidates cached twins.
MECHANICS_VERSION = 1
#: Between tokens are planted at log-uniform ratios in this range of the median patch norm.
BETWEEN_RATIOS = (3.0, 8.0)
#: Outliers must be planted clearly above the between tokens.
MIN_NORM_RATIO = 10.0

#: The 4 pinned positions on ViT-Ti's 14 × 14 grid: (3, 3), (3, 10), (10, 3), (10, 10) — interior patches,
#: deliberately *not* the 4 corners where the real ViT-Ti grows its own outliers (so a neutralising failure
#: could not pass for a pinned success).
PINNED_POSITIONS = (3 * 14 + 3, 3 * 14 + 10, 10 * 14 + 3, 10 * 14 + 10)


@dataclass(frozen=True)
class Plant:
    """What a twin plants; hashable, JSON-able (goes into the cache key)."""

    name: str  # e.g. "redundant", "random", "pinned", "registers", "none"
    where: str  # "redundant" | "random" | "pinned" | "registers" | "none"
    share: float = 0.02  # share of patch tokens per image that become outliers (ignored for pinned/registers/none)
    onset_block: int = 4  # planted from the output of this block on
    norm_ratio: float = 30.0  # planted norm / median patch norm of the image at each block (geometric centre)
    spread: float = 0.2  # sigma of the planted ratios' log
    between_share: float = 0.004  # extra patches per image at log-uniform 3×–8× the median; not outliers
    positions: tuple[int, ...] = ()  # patch indices (row · w + col) for "pinned"
    neutralise: bool = True  # cap the base network's own high-norm tokens
    seed: int = 0

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise ValueError(f"Plant.where must be one of {WHERE}, got {self.where!r}")
        if not 0 < self.share <= 0.2:
            raise ValueError(f"Plant.share is a small share of the patches in (0, 0.2], got {self.share}")
        if self.onset_block < 0:
            raise ValueError(f"Plant.onset_block must be a block index >= 0, got {self.onset_block}")
        if self.where != "none" and not self.norm_ratio >= MIN_NORM_RATIO:
            raise ValueError(f"Plant.norm_ratio must be >= {MIN_NORM_RATIO} (outliers well above the "
                             f"{BETWEEN_RATIOS[1]}x between tokens), got {self.norm_ratio}")
        if self.spread < 0 or self.between_share < 0:
            raise ValueError("Plant.spread and Plant.between_share must be >= 0")
        if self.where == "pinned" and not self.positions:
            raise ValueError("a 'pinned' plant needs positions (patch indices)")
        if any(int(p) != p or p < 0 for p in self.positions) or len(set(self.positions)) != len(self.positions):
            raise ValueError(f"Plant.positions must be distinct patch indices >= 0, got {self.positions}")
        object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))

    def as_dict(self) -> dict:
        """The plant's fields as JSON-able values (``positions`` as a list)."""
        fields = dataclasses.asdict(self)
        fields["positions"] = list(self.positions)
        return fields

    @classmethod
    def from_dict(cls, fields: dict) -> "Plant":
        """Inverse of :meth:`as_dict` (e.g. ``Plant.from_dict(features.meta["plant"])``)."""
        return cls(**{**fields, "positions": tuple(fields.get("positions", ()))})

    def key(self) -> str:
        """A stable string of every field, for cache keys."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @property
    def on_patches(self) -> bool:
        return self.where in PATCH_MODES


#: The registry of twins; :data:`TWIN_BASES` names the network each runs on.
TWINS: dict[str, Plant] = {
    "redundant": Plant("redundant", "redundant"),
    # 10 of 196 patches per image: enough outliers at random places that 12 images can show *no* redundancy
    "random": Plant("random", "random", share=0.05),
    "pinned": Plant("pinned", "pinned", positions=PINNED_POSITIONS),
    "early": Plant("early", "redundant", onset_block=1),  # onset at 1/12 of the depth: far too early
    "none": Plant("none", "none"),
    "registers": Plant("registers", "registers"),
    # the register twin's partner: the same network (and 16 x 16 grid) with the norm on redundant patches
    "redundant-reg4": Plant("redundant-reg4", "redundant"),
}

#: A network with 4 register tokens (random init: there are no offline weights with registers), read at 224 px.
REGISTER_BASE = "random:vit_small_patch14_reg4_dinov2.lvd142m"
#: The base network each registered twin is meant for (a normal spec for ``features.extract``): the real
#: ViT-Ti, except the register twin and its partner.
TWIN_BASES: dict[str, str] = {name: (REGISTER_BASE if name in ("registers", "redundant-reg4") else models.OFFLINE_MODEL)
                              for name in TWINS}


@dataclass(frozen=True)
class Truth:
    """What a twin has, by construction, for a model of ``depth`` blocks on a ``grid`` of patches."""

    plant: str
    has_outliers: bool  # are there high-norm *patch* tokens?
    share: float  # share of patch tokens per image that are planted outliers (0 without)
    per_image: int  # planted patch outliers per image
    onset_block: int | None  # first block whose output carries planted tokens (patches or registers)
    redundant: bool | None  # outliers on the most redundant patches? None: confounded (pinned) or no outliers
    pinned: bool  # the same patch positions in every image
    positions: tuple[int, ...]  # those positions (patch indices), () unless pinned
    in_registers: bool  # the high norm sits in register tokens
    norm_ratio: float  # geometric centre of planted norm / median patch norm, at every block from the onset
    between_per_image: int  # patches per image at 3×–8× the median (not outliers)
    neutralised: bool  # the base network's own outliers were capped at NEUTRAL_CAP × median
    depth: int
    grid: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def share_with_between(self) -> float:
        """Share of patches planted above ``BETWEEN_RATIOS[0]`` × the median: outliers plus between tokens.

        A cutoff anywhere between the normal tokens and the outliers finds a share in
        ``[share, share_with_between]``; the between tokens are not outliers in the truth.
        """
        return (self.per_image + self.between_per_image) / self.num_patches if self.has_outliers else 0.0

    def blocks_with_outliers(self) -> list[int]:
        """Blocks whose output has planted patch outliers."""
        return list(range(self.onset_block, self.depth)) if self.has_outliers else []

    def as_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        fields["positions"], fields["grid"] = list(self.positions), list(self.grid)
        return fields


def outlier_count(plant: Plant, num_patches: int) -> int:
    """Patch outliers per image: ``max(1, round(share · Np))``, ``len(positions)`` when pinned, 0 otherwise."""
    if plant.where == "pinned":
        return len(plant.positions)
    if plant.where in ("redundant", "random"):
        return max(1, round(plant.share * num_patches))
    return 0


def between_count(plant: Plant, num_patches: int) -> int:
    """Between tokens per image: ``max(1, round(between_share · Np))`` for patch modes with a share, else 0."""
    if not plant.on_patches or plant.between_share <= 0:
        return 0
    return max(1, round(plant.between_share * num_patches))


def check_fits(plant: Plant, depth: int, grid: tuple[int, int], num_registers: int | None = None) -> None:
    """Refuse a plant that the model cannot carry (onset past the last block, positions off the grid, ...)."""
    num_patches = grid[0] * grid[1]
    if plant.where != "none" and plant.onset_block >= depth:
        raise ValueError(f"plant {plant.name!r}: onset_block {plant.onset_block} but the model has {depth} blocks")
    if plant.positions and max(plant.positions) >= num_patches:
        raise ValueError(f"plant {plant.name!r}: positions {plant.positions} off a {grid[0]}x{grid[1]} grid")
    if outlier_count(plant, num_patches) + between_count(plant, num_patches) > num_patches // 2:
        raise ValueError(f"plant {plant.name!r} plants more than half of {num_patches} patches")
    if plant.where == "registers" and num_registers == 0:
        raise ValueError(f"plant {plant.name!r} needs a model with register tokens; this one has none")


def truth(plant: Plant, depth: int, grid: tuple[int, int]) -> Truth:
    """The declared truth of ``plant`` on a model of ``depth`` blocks and an ``(h, w)`` patch ``grid``."""
    grid = (int(grid[0]), int(grid[1]))
    check_fits(plant, depth, grid)
    count = outlier_count(plant, grid[0] * grid[1])
    return Truth(
        plant=plant.name,
        has_outliers=count > 0,
        share=count / (grid[0] * grid[1]),
        per_image=count,
        onset_block=None if plant.where == "none" else plant.onset_block,
        redundant={"redundant": True, "random": False}.get(plant.where),
        pinned=plant.where == "pinned",
        positions=plant.positions if plant.where == "pinned" else (),
        in_registers=plant.where == "registers",
        norm_ratio=plant.norm_ratio if plant.where != "none" else 0.0,
        between_per_image=between_count(plant, grid[0] * grid[1]),
        neutralised=plant.neutralise,
        depth=depth,
        grid=grid,
    )


def truth_of(meta: dict) -> Truth | None:
    """The truth of a cached pass from its ``meta`` (``Features.meta``); None for an ordinary pass."""
    if "plant" not in meta:
        return None
    return truth(Plant.from_dict(meta["plant"]), int(meta["depth"]), tuple(meta["grid"]))


def planted_masks(meta: dict) -> dict[str, np.ndarray]:
    """Per-image truth of a cached twin pass (``Features.meta``): ``{"outliers": (B, Np), "between": (B, Np)}``
    boolean masks over patch tokens, images in cache order (the order of ``meta["images"]``).

    For the register twin both are all False (its planted tokens are registers, see ``meta["planted"]``).
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
# The hooks.


def direction(plant: Plant, dim: int) -> torch.Tensor:
    """The fixed unit direction ``(D,)`` planted components point along (seeded by ``plant.seed``)."""
    generator = torch.Generator().manual_seed(plant.seed)
    vector = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (vector / vector.norm()).float()


def content_seed(pixels: torch.Tensor) -> int:
    """A seed from one image's pixels ``(3, H, W)``: the same image gives the same seed in any batch or device."""
    data = pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def lognormal_ratios(rng: np.random.Generator, count: int, centre: float, spread: float) -> np.ndarray:
    """``count`` ratios ``centre · exp(spread · z)``, ``z`` standard normal."""
    return centre * np.exp(spread * rng.standard_normal(count))


def between_ratios(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` ratios log-uniform in :data:`BETWEEN_RATIOS`."""
    low, high = np.log(BETWEEN_RATIOS)
    return np.exp(rng.uniform(low, high, count))


def select_patches(plant: Plant, patch_embed: torch.Tensor, grid: tuple[int, int], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Outlier and between patch indices for one image from its patch embedding ``(Np, D)``."""
    num_patches = grid[0] * grid[1]
    count = outlier_count(plant, num_patches)
    if plant.where == "redundant":
        cosine = metrics.neighbour_cosine(patch_embed.float().cpu().reshape(1, *grid, -1)).reshape(-1)
        chosen = torch.topk(cosine, count).indices.numpy()
    elif plant.where == "random":
        chosen = rng.permutation(num_patches)[:count]
    elif plant.where == "pinned":
        chosen = np.asarray(plant.positions)
    else:
        chosen = np.empty(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(num_patches), chosen)
    between = rng.permutation(rest)[: between_count(plant, num_patches)]
    return np.sort(chosen).astype(np.int64), np.sort(between).astype(np.int64)


@dataclass
class PlantedImage:
    """What was planted in one image: token indices (into ``N``, prefix first) and their drawn ratios."""

    outliers: list[int]
    outlier_ratios: list[float]
    between: list[int]
    between_ratios: list[float]

    def as_dict(self) -> dict:
        return {"outliers": self.outliers, "outlier_ratios": [round(r, 4) for r in self.outlier_ratios],
                "between": self.between, "between_ratios": [round(r, 4) for r in self.between_ratios]}


@dataclass
class Ledger:
    """What each forward pass planted; :meth:`last_pass` ties the latest batch to its image ids."""

    passes: list[list[PlantedImage]] = field(default_factory=list)
    capped: list[np.ndarray] = field(default_factory=list)  # per pass: (B, L) non-planted patches neutralised

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
    """Per-forward-pass state: which tokens are planted in each image, at which ratios."""

    def __init__(self, plant: Plant, num_prefix: int, num_registers: int, grid: tuple[int, int], seeds: list[int],
                 unit: torch.Tensor):
        self.plant, self.num_prefix, self.grid, self.seeds = plant, num_prefix, grid, seeds
        self.num_registers, self.unit = num_registers, unit
        self.images: list[PlantedImage] = []
        self.mask: torch.Tensor | None = None  # (B, N) planted tokens
        self.ratios: torch.Tensor | None = None  # (B, N) their ratios, 0 elsewhere
        self.capped: list[torch.Tensor] = []  # per block (B,) neutralised tokens

    def choose(self, patch_embed: torch.Tensor) -> None:
        """Select the planted tokens of every image from the patch embedding ``(B, Np, D)``."""
        batch = patch_embed.shape[0]
        num_tokens = self.num_prefix + self.grid[0] * self.grid[1]
        mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
        ratios = torch.zeros(batch, num_tokens, dtype=torch.float32)
        for index in range(batch):
            rng = np.random.default_rng([self.plant.seed, self.seeds[index]])
            planted = self._choose_one(patch_embed[index], rng)
            self.images.append(planted)
            for tokens, values in ((planted.outliers, planted.outlier_ratios),
                                   (planted.between, planted.between_ratios)):
                mask[index, tokens] = True
                ratios[index, tokens] = torch.tensor(values, dtype=torch.float32)
        self.mask, self.ratios = mask, ratios

    def _choose_one(self, patch_embed: torch.Tensor, rng: np.random.Generator) -> PlantedImage:
        if self.plant.where == "registers":
            first_register = self.num_prefix - self.num_registers
            tokens = list(range(first_register, self.num_prefix))
            drawn = lognormal_ratios(rng, len(tokens), self.plant.norm_ratio, self.plant.spread)
            return PlantedImage(tokens, drawn.tolist(), [], [])
        chosen, between = select_patches(self.plant, patch_embed, self.grid, rng)
        drawn = lognormal_ratios(rng, len(chosen), self.plant.norm_ratio, self.plant.spread)
        return PlantedImage((chosen + self.num_prefix).tolist(), drawn.tolist(),
                            (between + self.num_prefix).tolist(), between_ratios(rng, len(between)).tolist())

    def alter(self, block: int, output: torch.Tensor) -> torch.Tensor:
        """One block's output ``(B, N, D)`` neutralised and planted (a new tensor, same dtype)."""
        tokens = output.detach().float().clone()
        mask, ratios = self.mask.to(tokens.device), self.ratios.to(tokens.device)
        active = block >= self.plant.onset_block and self.plant.where != "none"
        patch_norms = tokens[:, self.num_prefix:].norm(dim=-1)  # (B, Np)
        planted_patches = mask[:, self.num_prefix:] & active
        median = torch.nanmedian(patch_norms.masked_fill(planted_patches, float("nan")), dim=1).values  # (B,)
        if self.plant.neutralise:
            over = (patch_norms > NEUTRAL_CAP * median[:, None]) & ~planted_patches
            scale = torch.where(over, median[:, None] / patch_norms.clamp_min(1e-12), torch.ones_like(patch_norms))
            tokens[:, self.num_prefix:] *= scale[..., None]
            self.capped.append(over.sum(dim=1).cpu())
        if active and mask.any():
            rows, cols = mask.nonzero(as_tuple=True)
            targets = ratios[rows, cols] * median[rows]
            unit = self.unit.to(tokens.device)
            tokens[rows, cols] = set_norm_along(tokens[rows, cols], unit, targets)
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
            current = state["pass"]
            altered = current.alter(index, output)
            if index == len(model.blocks) - 1 and current.capped:
                ledger.capped.append(torch.stack(current.capped, dim=1).numpy())
            return altered

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
    identity = f"{base_key}|twin|{plant.key()}|cap={NEUTRAL_CAP}|v={MECHANICS_VERSION}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]

