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
            if self.adaptive.undecided:
                return "cannot tell whether there is a high-norm mode (adaptive cutoff: none)"
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


def has_outliers(cutoff: Cutoff, share: Interval, line_share: Interval | None = None) -> bool | None:
    """A separated high-norm mode whose share interval over images lies wholly above 0 (decided from the
    interval, not from a point flag: a mode that one image alone holds is not enough). None: undecided — the
    detector could not decide, a mode whose interval reaches 0 or could not be computed, or no mode while the share
    above the paper's line (``line_share``, :func:`paper_line_share`) lies above 0 (:func:`analysis.claims.has_outliers`)."""
    return claims.has_outliers(bool(cutoff.found and cutoff.adaptive.bimodal), share, cutoff.adaptive.undecided,
                               line_share)


def paper_line_share(norms: np.ndarray, seed: int = 0) -> Interval:
    """Share of ``norms`` ``(B, Np)`` above :data:`~analysis.claims.PAPER_MEDIAN_LINE` times their own image's median
    (of its finite, positive norms; NaN and zeros are never above), with its interval over images: the paper's
    outliers lie 3-11x above the median, a mode or not. Each image's own median, as the detector's within-image test:
    a whole image of higher norms is not outliers."""
    norms = np.asarray(norms, dtype=np.float64)
    valid = np.isfinite(norms) & (norms > 0)
    medians = metrics.image_medians(norms).reshape(norms.shape[:-1] + (1,))
    above = valid & (norms > claims.PAPER_MEDIAN_LINE * np.nan_to_num(medians, nan=np.inf))
    return image_bootstrap({"high": above}, lambda c: float(np.mean(c["high"])), seed)


def outliers_found(norms: np.ndarray, cutoff: Cutoff, seed: int = 0) -> bool | None:
    """:func:`has_outliers` read from the share interval of ``norms`` ``(B, Np)`` above ``cutoff`` (an adaptive
    cutoff is fitted anew in every resample, :func:`outlier_share_interval`) and the share above the paper's line."""
    return has_outliers(cutoff, outlier_share_interval(norms, cutoff.value, seed, refit=cutoff.rule == "adaptive"),
                        paper_line_share(norms, seed))


# ---------------------------------------------------------------------------------------------
# Norm summaries

def norm_summary(features: dict[str, Features], threshold: float, adaptive: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per model: output patch-norm statistics, both cutoffs, the outlier share and its interval."""
    threshold = check_threshold(threshold)
    rows = []
    for spec, feats in features.items():
        norms = patch_grid(feats, "norm")  # (B, Np)
        last = feats.norms[feats.norms.block == feats.depth - 1]
        cutoff = cutoff_from_norms(norms, threshold, adaptive)
        share = outlier_share_interval(norms, cutoff.value, seed, refit=adaptive)
        # the paper's own cutoff for this model (150 for DINOv2 ViT-g, 100 for DINO ViT-B), where it gives one
        paper_cutoff = claims.PAPER_CUTOFF.get(ModelSpec.parse(spec).name, float("nan"))
        paper_share = (outlier_share_interval(norms, paper_cutoff, seed) if np.isfinite(paper_cutoff)
                       else NOT_MEASURED)
        line_share = paper_line_share(norms, seed)
        provenance = feats.provenance
        rows.append({
            "model": spec,
            "timm_name": ModelSpec.parse(spec).name,
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
            "undecided": cutoff.adaptive.undecided,
            "detector_reason": cutoff.adaptive.reason,
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
            "line_share": line_share.estimate,
            "line_share_low": line_share.low,
            "line_share_high": line_share.high,
            "has_outliers": has_outliers(cutoff, share, line_share),
            "cls_norm_median": float(last[last.kind == "cls"].norm.median()),
            "register_norm_median": float(last[last.kind == "register"].norm.median())
            if (last.kind == "register").any() else float("nan"),
        })
    return pd.DataFrame(rows)


def primary(summary: pd.DataFrame) -> pd.Series:
    """The row a page's prose describes: the first pretrained model (the first model when all are random)."""
    pretrained = summary[~summary.random_weights]
    return (pretrained if len(pretrained) else summary).iloc[0]


def patch_grids(passes: dict[str, Features], column: str) -> dict[str, np.ndarray]:
    """:func:`patch_grid` of every pass: ``{spec: (B, Np)}``."""
    return {spec: patch_grid(feats, column) for spec, feats in passes.items()}


def interval_of(row, name: str) -> Interval:
    """The interval a table stores as ``name``, ``name_low``, ``name_high``, ``images`` and, where the table keeps
    them, ``name_method`` and ``name_undefined`` (a row of it)."""
    return Interval(getattr(row, name), getattr(row, f"{name}_low"), getattr(row, f"{name}_high"), int(row.images),
                    getattr(row, f"{name}_method", "bootstrap over images"), getattr(row, f"{name}_undefined", 0.0))


def interval_columns(name: str, interval: Interval) -> dict:
    """The columns :func:`interval_of` reads back: ``name``, its ends, method and undefined share."""
    return {name: interval.estimate, f"{name}_low": interval.low, f"{name}_high": interval.high,
            f"{name}_method": interval.method, f"{name}_undefined": interval.undefined_share}


def outlier_judgement(row) -> claims.Judgement:
    """:func:`analysis.claims.judge_outliers` on a :func:`norm_summary` row: its share interval above the
    page's cutoff, above the paper's own cutoff for the model where the paper gives one, and above the paper's
    line of 3x the median where no mode is found."""
    return claims.judge_outliers(row.timm_name, bool(row.random_weights), bool(row.bimodal), share_interval(row),
                                 paper_share_interval(row), bool(row.undecided), line_share_interval(row),
                                 str(row.detector_reason))


def line_share_interval(row: pd.Series) -> Interval:
    """The share above :data:`~analysis.claims.PAPER_MEDIAN_LINE` times the median, from a :func:`norm_summary` row."""
    return Interval(row.line_share, row.line_share_low, row.line_share_high, int(row.images))


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
    """Share of tokens above the adaptive cutoff fitted on ``norms`` themselves (0 without a mode, nan where the
    detector is undecided)."""
    fit = metrics.adaptive_threshold(norms)
    if fit.undecided:  # a resample the detector cannot read counts as undefined, not as "no outliers"
        return float("nan")
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
    """``(Np,)`` bool: positions holding at least :data:`MIN_PER_POSITION` outliers and as many normal tokens
    over the images (with 1: an outlier in some image and a normal token in another)."""
    outliers = np.asarray(high, dtype=bool).sum(0)
    return (outliers >= MIN_PER_POSITION) & (np.shape(high)[0] - outliers >= MIN_PER_POSITION)


# ---------------------------------------------------------------------------------------------
# Minimum counts of a comparison within grid positions (the redundancy AUC, the position-matched attention) and
# of a comparison between token kinds (the probes' gaps). Stated in advance, not fitted on twins or models.

#: A within-position comparison counts a grid position only when it holds at least this many outliers and this
#: many normal tokens over the images ...
MIN_PER_POSITION = 1
#: ... and is measured only on at least this many *matched pairs*: per counted position the smaller of its two
#: counts (disjoint outlier-normal pairs at one position), summed. A sign test on 10 pairs still rejects chance at
#: 5 % (two-sided) with one of them discordant (p = 0.021); one normal token at one position (11 outliers against
#: it) is 1 pair, however many outliers it is ranked against.
MIN_MATCHED_PAIRS = 10
#: A comparison of two token kinds pooled over images (the probes' normal vs high-norm gaps) needs at least this
#: many tokens of each kind ...
MIN_KIND_TOKENS = 10
#: ... and high-norm tokens in at least this many images: ten outliers of one image are one image's answer, and a
#: bootstrap over images cannot make an interval of it.
MIN_OUTLIER_IMAGES = 4
#: How an interval that its minimum counts leave unmeasured starts its ``method`` (the reason follows).
NOT_MEASURABLE = "not measurable"


@dataclass(frozen=True)
class MatchedCounts:
    """What a within-position comparison of ``(B, Np)`` masks rests on (:func:`matched_counts`)."""

    positions: int  # grid positions holding at least MIN_PER_POSITION tokens of each kind
    outliers: int  # outliers at those positions
    normals: int  # normal tokens at those positions
    pairs: int  # per position the smaller of the two counts, summed
    all_outliers: int  # outliers anywhere

    @property
    def measurable(self) -> bool:
        return self.pairs >= MIN_MATCHED_PAIRS

    def reason(self) -> str:
        """Why the comparison is (not) measurable, in words."""
        counted = (f"{self.pairs} matched pair{'s' if self.pairs != 1 else ''} (an outlier and a normal token at one "
                   f"grid position), {MIN_MATCHED_PAIRS} needed: {self.positions} position"
                   f"{'s hold' if self.positions != 1 else ' holds'} both kinds, {self.outliers} of the "
                   f"{self.all_outliers} outliers and {self.normals} normal tokens")
        return counted if self.measurable else f"{NOT_MEASURABLE}: {counted}"


def matched_counts(high: np.ndarray) -> MatchedCounts:
    """The counts a within-position comparison of the ``(B, Np)`` mask ``high`` rests on."""
    high = np.asarray(high, dtype=bool)
    outliers = high.sum(0)
    normals = high.shape[0] - outliers
    counted = _mixed_positions(high)
    return MatchedCounts(int(counted.sum()), int(outliers[counted].sum()), int(normals[counted].sum()),
                         int(np.minimum(outliers, normals)[counted].sum()), int(outliers.sum()))


def not_measurable(n: int, reason: str) -> Interval:
    """The interval of a comparison its minimum counts leave unmeasured: nan, ``method`` the reason (starting
    with :data:`NOT_MEASURABLE`)."""
    return Interval(float("nan"), float("nan"), float("nan"), n, reason)


def kind_counts_reason(high: np.ndarray) -> str | None:
    """Why a comparison of high-norm against normal tokens in the ``(B, ...)`` mask ``high`` is not measurable
    (fewer than :data:`MIN_KIND_TOKENS` of a kind, or high-norm tokens in fewer than :data:`MIN_OUTLIER_IMAGES`
    images), or None when it is."""
    high = np.asarray(high, dtype=bool)
    outliers, normals = int(high.sum()), int((~high).sum())
    if min(outliers, normals) < MIN_KIND_TOKENS:
        return (f"{NOT_MEASURABLE}: {outliers} high-norm and {normals} normal tokens ({MIN_KIND_TOKENS} of each "
                "needed)")
    images = int(high.reshape(high.shape[0], -1).any(1).sum()) if high.ndim else 0
    if images < MIN_OUTLIER_IMAGES:
        return (f"{NOT_MEASURABLE}: the {outliers} high-norm tokens lie in {images} image{'s' if images != 1 else ''} "
                f"({MIN_OUTLIER_IMAGES} needed)")
    return None


def matched_attention_ratio(attention: np.ndarray, high: np.ndarray) -> float:
    """Mean CLS attention of high-norm patches over that of normal patches *at the same grid positions*.

    Per position holding both kinds, the two means; pooled over positions weighted by their outliers.
    nan when no position holds both (pinned outliers). Arrays: ``(B, Np)``.
    """
    high = np.asarray(high, dtype=bool)
    attention = np.asarray(attention, dtype=np.float64)
    mixed = np.flatnonzero(_mixed_positions(high))
    if not mixed.size or not matched_counts(high).measurable:  # fewer than MIN_MATCHED_PAIRS matched pairs
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
    """:func:`matched_attention_ratio` with its interval over images; not measurable (nan, ``method`` says why)
    when the images hold fewer than :data:`MIN_MATCHED_PAIRS` matched pairs."""
    counts = matched_counts(high)
    if not counts.measurable:
        return not_measurable(np.shape(high)[0], counts.reason())
    return image_bootstrap({"attention": attention, "high": high},
                           lambda c: matched_attention_ratio(c["attention"], c["high"]), seed)


def attention_table(summary: pd.DataFrame, passes: dict[str, Features], seed: int = 0) -> pd.DataFrame:
    """One row per :func:`norm_summary` row: CLS attention on its high-norm patches over their area share
    (``enrichment``), the same within grid positions (``position_matched``), both with intervals over images,
    and whether the outliers are ``pinned`` to fixed positions."""
    rows = []
    for row in summary.itertuples():
        feats = passes[row.model]
        attention = patch_grid(feats, "cls_attention")  # (B, Np)
        high = patch_grid(feats, "norm") > row.cutoff
        enrichment = attention_enrichment(attention, high, seed)
        matched = matched_attention_interval(attention, high, seed)
        rows.append({"model": row.model, "random_weights": row.random_weights, "weights": row.weights,
                     "images": row.images, "outlier_share": row.outlier_share, "has_outliers": row.has_outliers,
                     "has_cls_token": bool(feats.meta.get("has_cls_token", True)),
                     **interval_columns("enrichment", enrichment), **interval_columns("position_matched", matched),
                     "pinned": position_stability(high)["pinned"]})
    return pd.DataFrame(rows)


def attention_judgement(row) -> claims.Judgement:
    """:func:`analysis.claims.judge_attention` on an :func:`attention_table` row (not applicable without CLS)."""
    if not row.has_cls_token:
        return claims.not_applicable("attention", row.model)
    return claims.judge_attention(bool(row.random_weights), row.has_outliers, interval_of(row, "enrichment"),
                                  bool(row.pinned), interval_of(row, "position_matched"))


def outlier_reduction(before: np.ndarray, after: np.ndarray, seed: int = 0) -> Interval:
    """1 − share of high-norm patches after / before, on the same images (``(B, Np)`` masks, rows paired),
    with its interval over images; nan in a resample without outliers before."""
    def reduction(c) -> float:
        return 1 - np.mean(c["after"]) / np.mean(c["before"]) if np.any(c["before"]) else float("nan")

    return image_bootstrap({"before": before, "after": after}, reduction, seed)


# ---------------------------------------------------------------------------------------------
# Depth

def patch_norms(features: Features) -> np.ndarray:
    """``(B, L, Np)`` patch-token norms after every block (as ``hooks.Capture.patch_norms``), images in cache order."""
    patch = features.norms[features.norms.kind == "patch"]
    order = {image["image_id"]: i for i, image in enumerate(features.meta["images"])}
    frame = patch.assign(image=patch.image_id.map(order)).sort_values(["image", "block", "token"])
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


def onset_is_exact(table: pd.DataFrame, onset: int | None) -> bool:
    """Whether the onset read from a :func:`block_table` is exact: False when the block just before it cannot be read
    as having none (the mode may already be there), by the rule "has none" reads a model with
    (:func:`~analysis.claims.has_outliers`): the detector is undecided there, or it finds no mode while the share above
    the paper's line (:data:`~analysis.claims.PAPER_MEDIAN_LINE` times each image's median) has an interval above
    :data:`~analysis.claims.LINE_MIN_SHARE` or none (too few images)."""
    if onset is None or onset == 0:
        return True
    before = table.iloc[onset - 1]
    line = Interval(before.line_share, before.line_share_low, before.line_share_high, 0)
    return not (bool(before.undecided_mode) or claims.line_blocks_none(line))


def _block_ranges(blocks: list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3–5 and 9"`` (block indices as runs)."""
    runs, start = [], None
    for index, block in enumerate(blocks):
        if start is None:
            start = block
        if index + 1 == len(blocks) or blocks[index + 1] != block + 1:
            runs.append(str(start) if start == block else f"{start}–{block}")
            start = None
    return runs[0] if len(runs) == 1 else ", ".join(runs[:-1]) + " and " + runs[-1]


def depth_sentence(separated: np.ndarray) -> str:
    """Where over the depth a separated high-norm mode exists, and whether it survives to the output.

    ``separated``: ``(L,)`` bool, one per block (``block_table(...).separated_mode``). A distilled model may grow
    high-norm tokens in middle blocks that are gone by the last one; the onset (:func:`onset_block`) alone would
    then only say "no onset".
    """
    separated = np.asarray(separated, dtype=bool)
    depth = len(separated)
    blocks = [int(b) for b in np.flatnonzero(separated)]
    if not blocks:
        return f"no block of the {depth} has a separated high-norm mode"
    where = f"block{'s' if len(blocks) > 1 else ''} {_block_ranges(blocks)} of 0–{depth - 1}"
    if not separated[-1]:
        return f"a separated high-norm mode exists in {where}, and none is left at the last block (the output)"
    onset = onset_block(separated)
    if onset == blocks[0]:
        return f"a separated high-norm mode exists in {where}: from block {onset} on, up to the output"
    return f"a separated high-norm mode exists in {where}; without a break from block {onset} on, up to the output"


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


def block_table(norms: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """One row per block: patch-norm median, 99th percentile, max, whether a separated mode exists, whether the
    detector could not tell (``undecided_mode``) and the share of patches above the paper's line (``line_share``,
    :data:`~analysis.claims.PAPER_MEDIAN_LINE` times their own image's median, :func:`paper_line_share`; NaN,
    infinities and zeros never above) with its interval over images (``line_share_low``, ``line_share_high``).

    ``norms``: ``(B, L, Np)``.
    """
    per_block = norms.transpose(1, 0, 2).reshape(norms.shape[1], -1)
    # each block read as images x patches, as separated_blocks and the last block's summary read it (the
    # detector's within-image test needs the images)
    fits = [metrics.adaptive_threshold(norms[:, block]) for block in range(norms.shape[1])]
    lines = [paper_line_share(norms[:, block], seed) for block in range(norms.shape[1])]
    return pd.DataFrame({
        "block": np.arange(norms.shape[1]),
        "median_norm": np.median(per_block, axis=1),
        "p99_norm": np.quantile(per_block, 0.99, axis=1),
        "max_norm": per_block.max(axis=1),
        "separated_mode": [fit.bimodal for fit in fits],
        "undecided_mode": [fit.undecided for fit in fits],
        # share above the paper's line (3x each image's own median) with its interval, as "has none" reads it
        "line_share": [line.estimate for line in lines],
        "line_share_low": [line.low for line in lines],
        "line_share_high": [line.high for line in lines],
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
    if not mixed.any() or not matched_counts(high).measurable:  # fewer than MIN_MATCHED_PAIRS matched pairs
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


def redundancy_intervals(cosine: np.ndarray, high: np.ndarray, seed: int = 0) -> dict[str, Interval]:
    """Raw and position-matched AUC of neighbour cosine, each with its interval over images; the matched one is not
    measurable (nan, ``method`` says why) on fewer than :data:`MIN_MATCHED_PAIRS` matched pairs."""
    columns = {"cosine": cosine, "high": high}
    raw = image_bootstrap(columns, lambda c: metrics.separation_auc(np.ravel(c["cosine"]), np.ravel(c["high"])), seed)
    counts = matched_counts(high)
    matched = (image_bootstrap(columns, lambda c: position_matched_auc(c["cosine"], c["high"]), seed)
               if counts.measurable else not_measurable(np.shape(high)[0], counts.reason()))
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

def register_pair(passes: dict[str, Features]) -> tuple[Features, Features]:
    """The two passes of the registers page, without and then with registers (checked: a ``*_reg4_*`` second)."""
    if len(passes) != 2:
        raise ValueError(f"registers compares exactly two models (without, with registers), got {len(passes)}")
    (plain_spec, plain), (registers_spec, with_registers) = passes.items()
    if with_registers.meta["num_registers"] < 1:
        raise ValueError(f"{registers_spec} has no register tokens; pass a *_reg4_* model second")
    return plain, with_registers


def prefix_norms(passes: dict[str, Features]) -> pd.DataFrame:
    """Last-block norms of every prefix token (CLS, register 1…R), one row per model × image × token."""
    frames = []
    for spec, feats in passes.items():
        last = feats.norms[(feats.norms.block == feats.depth - 1) & (feats.norms.kind != "patch")].copy()
        last["name"] = np.where(last.kind == "cls", "CLS", "reg " + last.token.astype(str))
        frames.append(last[["image_id", "name", "kind", "norm"]].assign(model=spec))
    return pd.concat(frames, ignore_index=True)


def register_ratio_interval(feats: Features, seed: int = 0) -> Interval:
    """Median register-token norm over median patch norm (last block), with its interval over images."""
    last = feats.norms[feats.norms.block == feats.depth - 1]
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

    ``values``, ``high``: ``(B, Np)``. nan when the drawn images hold fewer than :data:`MIN_KIND_TOKENS` tokens of a
    kind; not measurable (``method`` says why) when the images themselves do.
    """
    reason = kind_counts_reason(high)
    if reason is not None:
        return not_measurable(np.shape(high)[0], reason)

    def gap(c) -> float:
        mask = np.asarray(c["high"], dtype=bool)
        if kind_counts_reason(mask) is not None:
            return float("nan")
        return float(np.mean(c["values"][~mask]) - np.mean(c["values"][mask]))

    return image_bootstrap({"values": np.asarray(values, dtype=float), "high": high}, gap, seed)


def mean_interval(values: np.ndarray, mask: np.ndarray | None = None, seed: int = 0) -> Interval:
    """Mean of ``values`` (``(B, ...)``, over the entries where ``mask`` holds) with its interval over images."""
    values = np.asarray(values, dtype=float)
    mask = np.ones(values.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    return image_bootstrap({"values": values, "mask": mask},
                           lambda c: float(np.mean(c["values"][c["mask"]])) if c["mask"].any() else float("nan"),
                           seed)


def paired_gap(first: np.ndarray, second: np.ndarray, seed: int = 0) -> Interval:
    """Mean of ``first - second`` over images (``(B,)`` each, paired by image) with its interval."""
    return image_bootstrap({"d": np.asarray(first, dtype=float) - np.asarray(second, dtype=float)},
                           lambda c: float(np.mean(c["d"])), seed)


# ---------------------------------------------------------------------------------------------
# What single tokens know (linear probes, :mod:`analysis.probes`)

def patch_tokens(feats: Features) -> np.ndarray:
    """``(B, Np, D)`` output patch tokens (after the final LayerNorm) of a pass that kept ``"output"``."""
    return feats.arrays["output"][:, feats.meta["num_prefix_tokens"]:]


def patch_pixels(feats: Features) -> np.ndarray:
    """``(B, Np, 3·p·p)`` each patch's pixels as the pass's model saw them (its crop and normalisation)."""
    from . import images, models, probes  # images/models load torch transforms; only the probe page needs them

    architecture = models.build_architecture(feats.provenance.model, int(feats.meta["resolution"]), device="meta")
    pixels = images.pixel_batch(images.records_of(feats.meta["images"]), architecture, int(feats.meta["resolution"]),
                                square=bool(feats.meta.get("square", False)))
    return probes.patch_pixels(pixels.numpy(), int(feats.meta["patch_size"]))


def probe_tokens(feats: Features, high: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For every image with both kinds of patch: its CLS token (where the model has one), one normal patch drawn
    at random (``seed``) and its highest-norm patch, as ``(images, {kind: (n, D)})``. ``high``: ``(B, Np)``."""
    output, prefix = feats.arrays["output"], feats.meta["num_prefix_tokens"]
    norms = patch_grid(feats, "norm")
    with_outlier = np.flatnonzero(high.any(1) & ~high.all(1))
    rng = np.random.default_rng(seed)
    normal = np.array([rng.choice(np.flatnonzero(~high[i])) for i in with_outlier], dtype=int)
    highest = np.array([np.argmax(np.where(high[i], norms[i], -np.inf)) for i in with_outlier], dtype=int)
    kinds = {"CLS": output[with_outlier, 0]} if feats.meta.get("has_cls_token", True) else {}
    kinds |= {"normal": output[with_outlier, prefix + normal], "high-norm": output[with_outlier, prefix + highest]}
    return with_outlier, kinds


def global_probe(feats: Features, high: np.ndarray, seed: int = 0,
                 device: str = "cpu") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Class probes from one token per image (:func:`probe_tokens`) of a pass over labelled images, fitted on half
    of the images that hold an outlier and scored on the other half. Returns ``(images with an outlier,
    {kind: (held-out,) bool correct})``; empty arrays when fewer than two classes are left to fit on."""
    from . import probes

    labels = np.array([image["label"] for image in feats.meta["images"]])
    with_outlier, kinds = probe_tokens(feats, high, seed)
    fit, held_out = probes.split_images(len(with_outlier), seed)
    if len(set(labels[with_outlier][fit])) < 2:  # too few images with an outlier to fit a classifier
        return with_outlier, {kind: np.zeros(0, bool) for kind in kinds}
    return with_outlier, probes.global_information(kinds, labels[with_outlier], fit, held_out, seed, device=device)


def probe_table(local: dict[str, np.ndarray], held_high: np.ndarray, correct: dict[str, np.ndarray],
                seed: int = 0) -> pd.DataFrame:
    """The probe page's table: position top-1 and pixel error of normal and high-norm held-out tokens
    (``local`` from :func:`analysis.probes.local_information`, ``held_high`` their ``(Bh, Np)`` mask) and the class
    accuracy of each token kind (``correct``), each a mean with its interval over images, and its count."""
    rows = []
    for kind, mask in (("normal", ~held_high), ("high-norm", held_high)):
        for probe, values in (("position top-1", local["position_correct"]), ("pixel L2 error", local["pixel_error"])):
            value = mean_interval(values, mask, seed)
            rows.append({"probe": probe, "token": kind, "value": value.estimate, "low": value.low,
                         "high": value.high, "n": int(mask.sum())})
    for kind, hits in correct.items():
        value = mean_interval(hits, seed=seed) if len(hits) else NOT_MEASURED
        rows.append({"probe": "class accuracy", "token": kind, "value": value.estimate, "low": value.low,
                     "high": value.high, "n": len(hits)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Checkpoints along training

def training_table(passes: list[Features], checkpoints: list[str], fractions: list[float], threshold: float,
                   adaptive: bool = True, seed: int = 0) -> pd.DataFrame:
    """One :func:`norm_summary` row per checkpoint, with its ``checkpoint``, ``training_fraction`` and a
    readable ``label``, ordered by training fraction."""
    from pathlib import Path

    rows = []
    for feats, checkpoint, fraction in zip(passes, checkpoints, fractions):
        row = norm_summary({feats.meta["spec"]: feats}, threshold, adaptive, seed).iloc[0]
        label = ("init (random)" if checkpoint == "random" else
                 "released weights" if checkpoint == "pretrained" else Path(checkpoint).stem)
        rows.append({**row.to_dict(), "checkpoint": checkpoint, "training_fraction": float(fraction), "label": label})
    return pd.DataFrame(rows).sort_values("training_fraction").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The census: every ViT with weights on this machine, measured alike

def census_models(asked: list[str], weights_dir: str | None = None) -> tuple[list[str], list[str]]:
    """``(models to run, models skipped for want of weights)``: the models ``asked`` for by name, always (without
    weights, a pass computed elsewhere is read from the cache, or the page stops naming the missing file), and for
    ``"available"`` every model of :data:`analysis.models.CENSUS` whose weights are on this machine."""
    from . import models

    wanted = [spec for spec in asked if spec != "available"]
    missing = []
    if "available" in asked:
        extra = [spec for spec in models.CENSUS if spec not in wanted]
        missing = [spec for spec in extra if not models.weights_available(spec, weights_dir)]
        wanted += [spec for spec in extra if spec not in missing]
    return wanted, missing


def census_table(passes: dict[str, Features], threshold: float, adaptive: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per model: recipe, size, the outlier share and its interval, the onset depth, how pinned the
    outliers are, and CLS attention on them over their area share."""
    from . import models

    rows = []
    for spec, feats in passes.items():
        norms = patch_norms(feats)  # (B, L, Np)
        cutoff = cutoff_from_norms(norms[:, -1], threshold, adaptive)
        high = norms[:, -1] > cutoff.value
        share = outlier_share_interval(norms[:, -1], cutoff.value, seed, refit=adaptive)
        onset = onset_block(separated_blocks(norms))
        enrichment = (attention_enrichment(patch_grid(feats, "cls_attention"), high, seed)
                      if feats.meta.get("has_cls_token", True) and high.any() else NOT_MEASURED)
        rows.append({"model": spec, "recipe": models.recipe_of(spec), "params_m": models.parameter_count(spec) / 1e6,
                     "random_weights": feats.provenance.is_random, "bimodal": cutoff.adaptive.bimodal,
                     "undecided": cutoff.adaptive.undecided,
                     "outlier_share": share.estimate, "outlier_share_low": share.low, "outlier_share_high": share.high,
                     "onset (share of depth)": np.nan if onset is None else onset / feats.depth,
                     "pinned (top position share)": position_stability(high)["max_position_share"],
                     "CLS attention enrichment": enrichment.estimate, "registers": feats.meta["num_registers"]})
    return pd.DataFrame(rows)
