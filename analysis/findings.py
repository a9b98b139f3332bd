"""Per-finding tables and intervals: cached features → tidy pandas frames and :class:`~analysis.stats.Interval` s.

Every function here reads :class:`~analysis.features.Features` (or arrays taken from them) and the
metrics; none runs a model. Intervals resample images (:mod:`analysis.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import claims, metrics
from .features import Features
from .models import ModelSpec
from .stats import NOT_MEASURED, Interval, image_bootstrap


@dataclass(frozen=True)
class Cutoff:
    """How "high-norm" is decided for one model in one run."""

    value: float  # tokens with norm > value are high-norm (inf: none are)
    rule: str  # "adaptive" or "fixed"
    adaptive: metrics.AdaptiveThreshold

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.value))

    def describe(self) -> str:
        if not self.found:
            return "no high-norm mode (adaptive cutoff: none)"
        return f"{self.rule} cutoff {self.value:.0f}"


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number (the paper uses 150), got {threshold!r}")
    return float(threshold)


def cutoff_from_norms(norms: np.ndarray, threshold: float, adaptive: bool = True) -> Cutoff:
    """Cutoff on output patch norms (any shape): the model-adaptive split, or the fixed ``threshold``."""
    fit = metrics.adaptive_threshold(np.asarray(norms))
    if adaptive:
        return Cutoff(fit.threshold, "adaptive", fit)
    return Cutoff(check_threshold(threshold), "fixed", fit)


def outlier_cutoff(features: Features, threshold: float, adaptive: bool = True) -> Cutoff:
    """Cutoff on the cached pass's last-block patch norms (see :func:`cutoff_from_norms`)."""
    return cutoff_from_norms(patch_grid(features, "norm"), threshold, adaptive)


def patch_grid(features: Features, column: str) -> np.ndarray:
    """``(B, Np)`` array of a last-block patch column (``norm``, ``cls_attention``, ``neighbour_cosine``),
    images in the order of ``features.meta["images"]``, patches in row-major grid order."""
    order = [image["image_id"] for image in features.meta["images"]]
    frame = features.patches.pivot(index="image_id", columns="token", values=column)
    return frame.loc[order].to_numpy(dtype=np.float64)


def has_outliers(cutoff: Cutoff, share: Interval) -> bool | None:
    """A separated high-norm mode whose share interval over images lies wholly above 0 (decided from the
    interval, not from a point flag: a mode that one image alone holds is not enough). None: undecided, a mode
    whose interval reaches 0 or could not be computed (:func:`analysis.claims.has_outliers`)."""
    return claims.has_outliers(bool(cutoff.found and cutoff.adaptive.bimodal), share)


def outliers_found(norms: np.ndarray, cutoff: Cutoff, seed: int = 0) -> bool | None:
    """:func:`has_outliers` read from the share interval of ``norms`` ``(B, Np)`` above ``cutoff`` (an adaptive
    cutoff is fitted anew in every resample, :func:`outlier_share_interval`)."""
    return has_outliers(cutoff, outlier_share_interval(norms, cutoff.value, seed, refit=cutoff.rule == "adaptive"))


# ---------------------------------------------------------------------------------------------
# Norm summaries

def norm_summary(features: dict[str, Features], threshold: float, adaptive: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per model: output patch-norm statistics, both cutoffs, the outlier share and its interval."""
    threshold = check_threshold(threshold)
    rows = []
    for spec, feats in features.items():
        norms = patch_grid(feats, "norm")  # (B, Np)
        last = feats.norms[feats.norms.layer == feats.depth - 1]
        cutoff = cutoff_from_norms(norms, threshold, adaptive)
        share = outlier_share_interval(norms, cutoff.value, seed, refit=adaptive)
        # the paper's own cutoff for this model (150 for DINOv2 ViT-g, 100 for DINO ViT-B), where it gives one
        paper_cutoff = claims.PAPER_CUTOFF.get(ModelSpec.parse(spec).name, float("nan"))
        paper_share = (outlier_share_interval(norms, paper_cutoff, seed) if np.isfinite(paper_cutoff)
                       else NOT_MEASURED)
        provenance = feats.provenance
        rows.append({
            "model": spec,
            "random_weights": provenance.is_random,
            "weights": provenance.label(),
            "images": norms.shape[0],
            "patch_tokens": norms.size,
            "median_norm": float(np.median(norms)),
            "max_norm": float(norms.max()),
            "max_over_median": float(norms.max() / np.median(norms)),
            "threshold": threshold,
            "share_above_threshold": metrics.high_norm_fraction(norms, threshold),
            "adaptive_cutoff": cutoff.adaptive.threshold,
            "bimodal": cutoff.adaptive.bimodal,
            "separation": cutoff.adaptive.separation,
            "cutoff_rule": cutoff.rule,
            "cutoff": cutoff.value,
            "outlier_share": share.estimate,
            "outlier_share_low": share.low,
            "outlier_share_high": share.high,
            "paper_cutoff": paper_cutoff,
            "share_above_paper_cutoff": paper_share.estimate,
            "share_above_paper_cutoff_low": paper_share.low,
            "share_above_paper_cutoff_high": paper_share.high,
            "has_outliers": has_outliers(cutoff, share),
            "cls_norm_median": float(last[last.kind == "cls"].norm.median()),
            "register_norm_median": float(last[last.kind == "register"].norm.median())
            if (last.kind == "register").any() else float("nan"),
        })
    return pd.DataFrame(rows)


def share_interval(row: pd.Series) -> Interval:
    """The outlier-share interval stored in a :func:`norm_summary` row."""
    return Interval(row.outlier_share, row.outlier_share_low, row.outlier_share_high, int(row.images))


def paper_share_interval(row: pd.Series) -> Interval | None:
    """The share above the paper's own cutoff for the row's model, with its interval, from a :func:`norm_summary`
    row; None when the paper gives no cutoff for that model."""
    if not np.isfinite(row.paper_cutoff):
        return None
    return Interval(row.share_above_paper_cutoff, row.share_above_paper_cutoff_low,
                    row.share_above_paper_cutoff_high, int(row.images))


def adaptive_share(norms: np.ndarray) -> float:
    """Share of tokens above the adaptive cutoff fitted on ``norms`` themselves (0 without a mode)."""
    fit = metrics.adaptive_threshold(norms)
    return float(np.mean(np.asarray(norms) > fit.threshold)) if fit.bimodal else 0.0


def outlier_share_interval(norms: np.ndarray, cutoff: float, seed: int = 0, refit: bool = False) -> Interval:
    """Share of patch tokens above ``cutoff`` with its interval over images. ``norms``: ``(B, Np)``.

    ``refit``: the cutoff is the adaptive one, so each resample fits its own (the uncertainty of where the
    cutoff falls is part of the interval); the estimate is still the share above ``cutoff``.
    """
    norms = np.asarray(norms)
    high = norms > cutoff if np.isfinite(cutoff) else np.zeros(np.shape(norms), bool)
    if refit:
        estimate = float(np.mean(high))
        interval = image_bootstrap({"norms": norms}, lambda c: adaptive_share(c["norms"]), seed)
        return Interval(estimate, interval.low, interval.high, interval.n, interval.method)
    return image_bootstrap({"high": high}, lambda c: float(np.mean(c["high"])), seed)


# ---------------------------------------------------------------------------------------------
# Attention

def attention_enrichment(attention: np.ndarray, high: np.ndarray, seed: int = 0) -> Interval:
    """CLS attention on high-norm patches over their area share, pooled over images, with its interval.

    ``attention``: ``(B, Np)`` head-mean CLS attention over patches; ``high``: ``(B, Np)`` mask.
    nan when no drawn image has a high-norm patch.
    """
    def enrichment(c) -> float:
        area = np.mean(c["high"])
        if area == 0:
            return float("nan")
        return metrics.attention_share(c["attention"], c["high"]) / area

    return image_bootstrap({"attention": attention, "high": high}, enrichment, seed)


def _mixed_positions(high: np.ndarray) -> np.ndarray:
    """``(Np,)`` bool: positions holding an outlier in some image and a normal token in another."""
    return high.any(0) & ~high.all(0)


def matched_attention_ratio(attention: np.ndarray, high: np.ndarray) -> float:
    """Mean CLS attention of high-norm patches over that of normal patches *at the same grid positions*.

    Per position holding both kinds, the two means; pooled over positions weighted by their outliers.
    nan when no position holds both (pinned outliers). Arrays: ``(B, Np)``.
    """
    high = np.asarray(high, dtype=bool)
    attention = np.asarray(attention, dtype=np.float64)
    mixed = np.flatnonzero(_mixed_positions(high))
    if not mixed.size:
        return float("nan")
    on, off, weights = [], [], []
    for position in mixed:
        column, flags = attention[:, position], high[:, position]
        on.append(column[flags].mean())
        off.append(column[~flags].mean())
        weights.append(flags.sum())
    off_mean = np.average(off, weights=weights)
    return float(np.average(on, weights=weights) / off_mean) if off_mean > 0 else float("nan")


def matched_attention_interval(attention: np.ndarray, high: np.ndarray, seed: int = 0) -> Interval:
    """:func:`matched_attention_ratio` with its interval over images."""
    return image_bootstrap({"attention": attention, "high": high},
                           lambda c: matched_attention_ratio(c["attention"], c["high"]), seed)


# ---------------------------------------------------------------------------------------------
# Depth

def block_norms(features: Features) -> np.ndarray:
    """``(B, L, Np)`` patch-token norms after every block, images in cache order."""
    patch = features.norms[features.norms.kind == "patch"]
    order = {image["image_id"]: i for i, image in enumerate(features.meta["images"])}
    frame = patch.assign(image=patch.image_id.map(order)).sort_values(["image", "layer", "token"])
    return frame.norm.to_numpy(dtype=np.float64).reshape(len(order), features.depth, -1)


def separated_blocks(norms: np.ndarray) -> np.ndarray:
    """``(L,)`` bool: does each block's patch-norm distribution have its own separated high-norm mode?

    Each block gets its own adaptive split (:func:`~analysis.metrics.adaptive_threshold`), so a plain
    growth of all norms with depth does not count: only a small group far above the rest does.
    ``norms``: ``(B, L, Np)``.
    """
    return np.array([metrics.adaptive_threshold(norms[:, block]).bimodal for block in range(norms.shape[1])])


def onset_block(separated: np.ndarray) -> int | None:
    """First block from which every later block has a separated mode (None if the last block has none)."""
    separated = np.asarray(separated, dtype=bool)
    if not separated.size or not separated[-1]:
        return None
    gaps = np.flatnonzero(~separated)
    return int(gaps[-1] + 1) if gaps.size else 0


#: Resamples for the onset interval: each one fits a mixture per block (40 for ViT-g), so fewer than
#: :data:`~analysis.stats.RESAMPLES`; 199 keeps the 2.5 % tails on whole resamples.
ONSET_RESAMPLES = 199


def relative_onset(norms: np.ndarray) -> float:
    """Onset block / depth for ``(B, L, Np)`` norms; 1.0 (beyond the last block) when no onset exists."""
    onset = onset_block(separated_blocks(norms))
    return 1.0 if onset is None else onset / norms.shape[1]


def onset_interval(norms: np.ndarray, seed: int = 0, n_resamples: int = ONSET_RESAMPLES) -> Interval:
    """Relative onset depth (onset block / depth) with its interval over images. ``norms``: ``(B, L, Np)``.

    The estimate is nan when the full sample has no onset (nothing to judge); a *resample* without one
    counts as 1.0, so it widens the interval towards "never" instead of being dropped.
    """
    estimate = onset_block(separated_blocks(norms))
    interval = image_bootstrap({"norms": norms}, lambda c: relative_onset(c["norms"]), seed, n_resamples)
    if estimate is None:
        return Interval(float("nan"), interval.low, interval.high, interval.n, interval.method)
    return interval


def layer_table(norms: np.ndarray) -> pd.DataFrame:
    """One row per block: patch-norm median, 99th percentile, max, and whether a separated mode exists.

    ``norms``: ``(B, L, Np)``.
    """
    per_block = norms.transpose(1, 0, 2).reshape(norms.shape[1], -1)
    fits = [metrics.adaptive_threshold(values) for values in per_block]
    return pd.DataFrame({
        "layer": np.arange(norms.shape[1]),
        "median_norm": np.median(per_block, axis=1),
        "p99_norm": np.quantile(per_block, 0.99, axis=1),
        "max_norm": per_block.max(axis=1),
        "separated_mode": [fit.bimodal for fit in fits],
        "block_cutoff": [fit.threshold for fit in fits],
        "share_above_block_cutoff": [float((v > fit.threshold).mean()) for v, fit in zip(per_block, fits)],
    })


# ---------------------------------------------------------------------------------------------
# Positions

def position_frequency(high: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(h, w)``: share of images whose patch at each grid position is high-norm. ``high``: ``(B, Np)``."""
    return np.asarray(high, dtype=float).mean(0).reshape(grid)


#: Outliers are "pinned" when each of their positions holds one in at least this share of the images.
PINNED_SHARE = 0.75


def position_stability(high: np.ndarray) -> dict[str, float]:
    """Do outliers stay at fixed positions or move with the image? ``high``: ``(B, Np)``.

    ``max_position_share``: share of images in which the most frequent outlier position holds one;
    ``distinct_positions``: positions that ever hold an outlier; ``outlier_tokens``: all of them;
    ``pinned``: most outlier tokens (all but :data:`MIN_MATCHED_SHARE`) sit at positions that hold an outlier
    in at least ``PINNED_SHARE`` of the images, so almost no normal token at those positions is left to compare
    with (the outliers mark positions, not content). A mix of pinned and free positions counts by its tokens.
    """
    high = np.asarray(high, dtype=bool)
    per_position = high.sum(0)
    if not high.any():
        return {"max_position_share": 0.0, "distinct_positions": 0, "outlier_tokens": 0, "pinned": False}
    used = per_position > 0
    return {
        "max_position_share": float(per_position.max() / high.shape[0]),
        "distinct_positions": int(used.sum()),
        "outlier_tokens": int(high.sum()),
        "pinned": bool(per_position[per_position >= PINNED_SHARE * high.shape[0]].sum()
                       > (1 - MIN_MATCHED_SHARE) * high.sum()),
    }


# ---------------------------------------------------------------------------------------------
# Redundancy

def position_matched_auc(cosine: np.ndarray, high: np.ndarray) -> float:
    """ROC AUC of neighbour cosine for outliers vs. non-outliers *within* grid positions, averaged.

    Each position holding an outlier in some image and a normal token in another gets its own AUC (its
    outliers ranked only against normal tokens at that position), and the AUCs are averaged weighted by
    the position's outliers. Pooling the tokens of all positions instead would let positions that differ
    in base cosine and in how often they hold an outlier produce an AUC far from 0.5 with no difference
    inside any position. nan when no such position exists. Arrays: ``(B, Np)``.
    """
    from scipy.stats import rankdata

    high = np.asarray(high, dtype=bool)
    cosine = np.asarray(cosine, dtype=np.float64)
    mixed = _mixed_positions(high)
    if not mixed.any():
        return float("nan")
    flags, ranks = high[:, mixed], rankdata(cosine[:, mixed], axis=0)  # (B, M), mid-ranks for ties
    positives = flags.sum(0)
    negatives = flags.shape[0] - positives
    # Mann-Whitney: AUC = (rank sum of the outliers - its minimum) / (outliers x normal tokens), per position
    aucs = ((ranks * flags).sum(0) - positives * (positives + 1) / 2) / (positives * negatives)
    return float(np.average(aucs, weights=positives))


#: Outliers are "confounded by position" when fewer than this share of them sit at positions that also hold
#: normal tokens (the within-position comparison would rest on a minority of them).
MIN_MATCHED_SHARE = 0.5


def matched_share(high: np.ndarray) -> float:
    """Share of outlier tokens at positions that also hold a normal token in another image. ``(B, Np)``."""
    high = np.asarray(high, dtype=bool)
    total = high.sum()
    return float(high[:, _mixed_positions(high)].sum() / total) if total else 0.0


def redundancy_intervals(cosine: np.ndarray, high: np.ndarray, seed: int = 0) -> dict[str, Interval]:
    """Raw and position-matched AUC of neighbour cosine, each with its interval over images."""
    columns = {"cosine": cosine, "high": high}
    raw = image_bootstrap(columns, lambda c: metrics.separation_auc(np.ravel(c["cosine"]), np.ravel(c["high"])), seed)
    matched = image_bootstrap(columns, lambda c: position_matched_auc(c["cosine"], c["high"]), seed)
    return {"raw": raw, "matched": matched}


def redundancy_table(cosine: np.ndarray, high: np.ndarray, grid: tuple[int, int]) -> pd.DataFrame:
    """One row per patch: neighbour cosine, high-norm flag, number of grid neighbours (2, 3 or 4)."""
    h, w = grid
    rows, cols = np.divmod(np.arange(h * w), w)
    neighbours = 4 - (rows == 0) - (rows == h - 1) - (cols == 0) - (cols == w - 1)
    images = np.arange(cosine.shape[0])
    return pd.DataFrame({
        "image": np.repeat(images, h * w),
        "row": np.tile(rows, len(images)),
        "col": np.tile(cols, len(images)),
        "neighbours": np.tile(neighbours, len(images)),
        "neighbour_cosine": np.ravel(cosine),
        "high_norm": np.ravel(high),
    })


# ---------------------------------------------------------------------------------------------
# Registers

def register_norms(feats: Features) -> pd.DataFrame:
    """Last-block norms of every prefix token (CLS, register 1…R), one row per image × token."""
    last = feats.norms[(feats.norms.layer == feats.depth - 1) & (feats.norms.kind != "patch")].copy()
    last["name"] = np.where(last.kind == "cls", "CLS", "reg " + last.token.astype(str))
    return last[["image_id", "name", "kind", "norm"]]


def register_ratio_interval(feats: Features, seed: int = 0) -> Interval:
    """Median register-token norm over median patch norm (last block), with its interval over images."""
    last = feats.norms[feats.norms.layer == feats.depth - 1]
    order = [image["image_id"] for image in feats.meta["images"]]
    registers = last[last.kind == "register"].pivot(index="image_id", columns="token", values="norm").loc[order]
    patches = patch_grid(feats, "norm")
    return image_bootstrap({"registers": registers.to_numpy(), "patches": patches},
                           lambda c: float(np.median(c["registers"]) / np.median(c["patches"])), seed)


def share_on_scale(norms: np.ndarray, cutoff_ratio: float) -> float:
    """Share of tokens whose norm / the sample's median exceeds ``cutoff_ratio``. ``norms``: ``(B, Np)``."""
    norms = np.asarray(norms, dtype=np.float64)
    return float(np.mean(norms / np.median(norms) > cutoff_ratio)) if np.isfinite(cutoff_ratio) else 0.0


def register_reduction_interval(plain: np.ndarray, registers: np.ndarray, cutoff_ratio: float,
                                seed: int = 0) -> Interval:
    """1 - share(register model) / share(plain model) on the plain model's scale, over the same images.

    ``plain``, ``registers``: ``(B, Np)`` last-block patch norms of the two models on the same images (rows
    paired); ``cutoff_ratio``: the plain model's cutoff / its median patch norm. Both shares count tokens above
    that ratio of their own model's median, so models of different norm scale compare; not exact zero.
    """
    def reduction(c) -> float:
        before = share_on_scale(c["plain"], cutoff_ratio)
        return float("nan") if before == 0 else 1 - share_on_scale(c["registers"], cutoff_ratio) / before

    return image_bootstrap({"plain": plain, "registers": registers}, reduction, seed)


# ---------------------------------------------------------------------------------------------
# Differences between token kinds, resampled over images

def kind_gap(values: np.ndarray, high: np.ndarray, seed: int = 0) -> Interval:
    """Mean of ``values`` over normal tokens minus over high-norm tokens, pooled over images.

    ``values``, ``high``: ``(B, Np)``. nan when the drawn images hold no high-norm token.
    """
    def gap(c) -> float:
        mask = np.asarray(c["high"], dtype=bool)
        if not mask.any() or mask.all():
            return float("nan")
        return float(np.mean(c["values"][~mask]) - np.mean(c["values"][mask]))

    return image_bootstrap({"values": np.asarray(values, dtype=float), "high": high}, gap, seed)


def paired_gap(first: np.ndarray, second: np.ndarray, seed: int = 0) -> Interval:
    """Mean of ``first - second`` over images (``(B,)`` each, paired by image) with its interval."""
    return image_bootstrap({"d": np.asarray(first, dtype=float) - np.asarray(second, dtype=float)},
                           lambda c: float(np.mean(c["d"])), seed)
