"""Metrics on captured tokens. Pure functions of arrays/tensors; no model, no I/O.

Shapes: ``(..., N, D)`` tokens, ``(..., N)`` norms, ``(B, h, w, D)`` patch grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: The paper's fixed cutoff (DINOv2 ViT-g output tokens).
PAPER_THRESHOLD = 150.0

#: Bump when any metric's definition changes: invalidates the feature cache.
METRIC_VERSION = 3


def token_norms(tokens: torch.Tensor) -> torch.Tensor:
    """L2 norm over the channel axis: ``(..., N, D) -> (..., N)``."""
    return torch.linalg.vector_norm(tokens.float(), dim=-1)


def high_norm_mask(norms: np.ndarray | torch.Tensor, threshold: float) -> np.ndarray:
    """Boolean mask of tokens whose norm is strictly above ``threshold``."""
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold}")
    return np.asarray(norms) > threshold


def high_norm_fraction(norms: np.ndarray, threshold: float) -> float:
    """Share of tokens above ``threshold`` (0 for an empty array)."""
    norms = np.asarray(norms)
    return float(high_norm_mask(norms, threshold).mean()) if norms.size else 0.0


@dataclass(frozen=True)
class AdaptiveThreshold:
    """A model-adaptive cutoff between normal and high-norm tokens.

    ``threshold`` is ``inf`` when the log-norm distribution is not clearly bimodal
    (no outlier mode), so no token is flagged.
    """

    threshold: float
    separation: float  # Ashman's D between the two log-norm modes
    upper_share: float  # share of tokens above the Otsu split
    bimodal: bool


#: Two modes count as separated when Ashman's D exceeds this (D > 2: clean separation).
MIN_SEPARATION = 2.0
#: Outliers are a minority by definition; an "upper mode" holding more than this is not one.
MAX_UPPER_SHARE = 0.2
#: ... and an empty gap separates them from the rest: the shortest outlier is at least this many times
#: longer than the longest normal token (a sparse tail of one mode has gaps, but narrow ones).
MIN_GAP_RATIO = 1.5
#: ... and at least this many standard deviations of the normal tokens' log-norms wide.
GAP_IN_SPREADS = 2.0


def adaptive_threshold(norms: np.ndarray) -> AdaptiveThreshold:
    """The empty gap between the normal and the high-norm mode of the log-norm distribution.

    The paper notes the cutoff varies by model (150 for DINOv2 ViT-g). Outliers form a small mode
    far above the rest, separated by an empty stretch. Scanning the sorted log-norms upward from
    the median, the cutoff goes in the first *wide* gap: the next token is at least
    ``MIN_GAP_RATIO`` times longer, and the gap spans at least ``GAP_IN_SPREADS`` standard
    deviations of the log-norms below it (a sparse tail of one mode has gaps too, but narrow ones;
    Otsu's method misplaces the split when the minority is a few tokens in a few hundred). The
    split is accepted when the upper group holds at most ``MAX_UPPER_SHARE`` of the tokens and
    Ashman's ``D = sqrt(2)·|μ1-μ2| / sqrt(σ1²+σ2²) > MIN_SEPARATION``. The cutoff is the gap's
    geometric midpoint; ``inf`` when there is no such mode.
    """
    values = np.sort(np.log(np.clip(np.asarray(norms, dtype=np.float64).ravel(), 1e-12, None)))
    if values.size < 4 or values[-1] == values[0]:
        return AdaptiveThreshold(float("inf"), 0.0, 0.0, False)
    # spread of everything at or below each position, for the "wide gap" test at every candidate split
    count = np.arange(1, values.size + 1)
    mean = np.cumsum(values) / count
    spread_below = np.sqrt(np.maximum(np.cumsum(values**2) / count - mean**2, 0.0))
    gaps = np.diff(values)
    candidates = np.arange(values.size // 2, values.size - 1)  # splits above the median only
    wide = (gaps[candidates] >= np.log(MIN_GAP_RATIO)) & (gaps[candidates] >= GAP_IN_SPREADS * spread_below[candidates])
    if not wide.any():
        return AdaptiveThreshold(float("inf"), 0.0, 0.0, False)
    split = int(candidates[np.argmax(wide)])  # the first wide gap above the bulk of normal tokens
    log_cutoff = (values[split] + values[split + 1]) / 2
    lower, upper = values[: split + 1], values[split + 1 :]
    spread = np.sqrt(lower.var() + upper.var())
    separation = float(np.sqrt(2) * (upper.mean() - lower.mean()) / spread) if spread > 0 else float("inf")
    upper_share = upper.size / values.size
    bimodal = separation > MIN_SEPARATION and upper_share <= MAX_UPPER_SHARE
    cutoff = float(np.exp(log_cutoff)) if bimodal else float("inf")
    return AdaptiveThreshold(cutoff, separation, float(upper_share), bool(bimodal))


def neighbour_cosine(grid: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of each patch to its 4 grid neighbours.

    ``(B, h, w, D) -> (B, h, w)``. Edge and corner patches average over the
    neighbours that exist (3 and 2).
    """
    unit = torch.nn.functional.normalize(grid.float(), dim=-1)
    total = torch.zeros(unit.shape[:-1])
    count = torch.zeros(unit.shape[:-1])
    vertical = (unit[:, 1:] * unit[:, :-1]).sum(-1)  # (B, h-1, w): patch (i, j) with (i+1, j)
    horizontal = (unit[:, :, 1:] * unit[:, :, :-1]).sum(-1)  # (B, h, w-1)
    total[:, :-1] += vertical
    total[:, 1:] += vertical
    total[:, :, :-1] += horizontal
    total[:, :, 1:] += horizontal
    count[:, :-1] += 1
    count[:, 1:] += 1
    count[:, :, :-1] += 1
    count[:, :, 1:] += 1
    return total / count.clamp(min=1)


def attention_share(attention: np.ndarray, mask: np.ndarray) -> float:
    """Share of attention mass that falls on masked patches.

    ``attention``: ``(..., Np)`` attention of a query over patch tokens; ``mask``: same shape.
    Returns ``sum(attention·mask) / sum(attention)``.
    """
    attention = np.asarray(attention, dtype=np.float64)
    total = attention.sum()
    return float((attention * np.asarray(mask)).sum() / total) if total > 0 else 0.0


def separation_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for telling ``positive`` items from the rest (nan if one class is empty)."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, np.asarray(scores)))


def first_layer_above(layer_max_norm: np.ndarray, threshold: float) -> int | None:
    """Index of the first layer whose maximum token norm exceeds ``threshold`` (None if none does)."""
    above = np.flatnonzero(np.asarray(layer_max_norm) > threshold)
    return int(above[0]) if above.size else None
