"""Per-finding tables: cached features → tidy pandas frames (one row per model, layer, position …).

Every function here reads :class:`~analysis.features.Features` and the metrics; none runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics
from .features import Features


@dataclass(frozen=True)
class Cutoff:
    """How "high-norm" is decided for one model in one run."""

    value: float  # tokens with norm > value are high-norm (inf: none are)
    rule: str  # "adaptive" or "fixed"
    adaptive: metrics.AdaptiveThreshold


def check_threshold(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or not threshold > 0:
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
    return cutoff_from_norms(features.patch_norms(-1).norm.to_numpy(), threshold, adaptive)


def norm_summary(features: dict[str, Features], threshold: float, adaptive: bool = True) -> pd.DataFrame:
    """One row per model: output patch-norm statistics, both cutoffs, prefix-token norms."""
    threshold = check_threshold(threshold)
    rows = []
    for spec, feats in features.items():
        patch = feats.patch_norms(-1).norm.to_numpy()
        last = feats.norms[feats.norms.layer == feats.depth - 1]
        cutoff = outlier_cutoff(feats, threshold, adaptive)
        provenance = feats.provenance
        rows.append(
            {
                "model": spec,
                "random_weights": provenance.is_random,
                "weights": provenance.label(),
                "images": feats.patches.image_id.nunique(),
                "patch_tokens": patch.size,
                "median_norm": float(np.median(patch)),
                "max_norm": float(patch.max()),
                "max_over_median": float(patch.max() / np.median(patch)),
                "threshold": threshold,
                "share_above_threshold": metrics.high_norm_fraction(patch, threshold),
                "adaptive_cutoff": cutoff.adaptive.threshold,
                "bimodal": cutoff.adaptive.bimodal,
                "separation": cutoff.adaptive.separation,
                "cutoff_rule": cutoff.rule,
                "cutoff": cutoff.value,
                "outlier_share": metrics.high_norm_fraction(patch, cutoff.value) if np.isfinite(cutoff.value) else 0.0,
                "cls_norm_median": float(last[last.kind == "cls"].norm.median()),
                "register_norm_median": float(last[last.kind == "register"].norm.median())
                if (last.kind == "register").any()
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def layer_table(feats: Features, cutoff: float) -> pd.DataFrame:
    """One row per block: patch-norm median, 99th percentile, max, share above ``cutoff``; CLS norm."""
    patch = feats.norms[feats.norms.kind == "patch"]
    grouped = patch.groupby("layer").norm
    table = pd.DataFrame(
        {
            "median_norm": grouped.median(),
            "p99_norm": grouped.quantile(0.99),
            "max_norm": grouped.max(),
            "share_above_cutoff": grouped.apply(lambda s: float((s > cutoff).mean())),
        }
    )
    table["cls_norm"] = feats.norms[feats.norms.kind == "cls"].groupby("layer").norm.median()
    return table.reset_index()


def position_frequency(feats: Features, cutoff: float) -> pd.DataFrame:
    """``(h, w)`` frame: share of images whose last-block token at each grid position is high-norm."""
    patches = feats.patches.assign(high=feats.patches.norm > cutoff)
    return patches.pivot_table(index="row", columns="col", values="high", aggfunc="mean").astype(float)


def position_stability(feats: Features, cutoff: float) -> dict[str, float]:
    """Do outliers stay at fixed positions or move with the image?

    ``max_position_share``: the most frequent outlier position's share of images;
    ``distinct_positions``: positions that ever hold an outlier / all outlier tokens.
    Fixed positions give a share near 1; content-following positions spread out.
    """
    high = feats.patches[feats.patches.norm > cutoff]
    images = feats.patches.image_id.nunique()
    if high.empty:
        return {"max_position_share": 0.0, "distinct_positions": 0, "outlier_tokens": 0}
    per_position = high.groupby(["row", "col"]).image_id.nunique()
    return {
        "max_position_share": float(per_position.max() / images),
        "distinct_positions": int(per_position.size),
        "outlier_tokens": int(len(high)),
    }


def attention_summary(feats: Features, cutoff: float) -> dict[str, float]:
    """Share of last-block CLS attention (head mean, patches only) on high-norm patches, vs their area share."""
    patches = feats.patches
    mask = (patches.norm > cutoff).to_numpy()
    return {
        "outlier_share": float(mask.mean()),
        "attention_on_outliers": metrics.attention_share(patches.cls_attention.to_numpy(), mask),
    }


def redundancy_table(feats: Features, cutoff: float) -> pd.DataFrame:
    """Patch rows with ``high_norm`` flag and neighbour cosine after patch embedding."""
    patches = feats.patches[["image_id", "row", "col", "neighbour_cosine", "norm"]].copy()
    patches["high_norm"] = patches.norm > cutoff
    return patches


def redundancy_summary(table: pd.DataFrame) -> dict[str, float]:
    high = table[table.high_norm].neighbour_cosine
    normal = table[~table.high_norm].neighbour_cosine
    return {
        "n_high": int(high.size),
        "median_high": float(high.median()) if high.size else float("nan"),
        "median_normal": float(normal.median()) if normal.size else float("nan"),
        "auc": metrics.separation_auc(table.neighbour_cosine.to_numpy(), table.high_norm.to_numpy()),
    }


def register_norms(feats: Features) -> pd.DataFrame:
    """Last-block norms of every prefix token (CLS, register 1…R), one row per image × token."""
    last = feats.norms[(feats.norms.layer == feats.depth - 1) & (feats.norms.kind != "patch")].copy()
    last["name"] = np.where(last.kind == "cls", "CLS", "reg " + last.token.astype(str))
    return last[["image_id", "name", "kind", "norm"]]
