"""Uncertainty over images: seeded bootstrap intervals that resample *images*, never tokens.

Tokens of one image are not independent (they share the image's content and the model's
state), so every interval here redraws whole images with replacement and recomputes the
statistic on the drawn images. SciPy's :func:`scipy.stats.bootstrap` does the resampling.

Shapes: ``columns`` maps a name to an array whose first axis is the image (``(B, ...)``), or to
a list of per-image arrays of different lengths (e.g. the tokens of one kind in each image).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Two-sided coverage of every interval in the study.
CONFIDENCE = 0.95
#: Bootstrap resamples (odd, so percentile ends fall on a sample).
RESAMPLES = 999


@dataclass(frozen=True)
class Interval:
    """A measured value with its bootstrap interval over ``n`` images."""

    estimate: float
    low: float
    high: float
    n: int  # images resampled
    method: str = "bootstrap over images"

    def text(self, fmt: str = ".2f") -> str:
        """``0.64 [0.55, 0.71]`` (``fmt`` formats each number; ``%`` formats give percentages)."""
        if math.isnan(self.estimate):
            return "not measured"
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def exact(value: float, n: int, method: str = "exact (no resampling needed)") -> Interval:
    """A value without sampling uncertainty (e.g. a count that no image draw can change)."""
    return Interval(float(value), float(value), float(value), n, method)


NOT_MEASURED = Interval(float("nan"), float("nan"), float("nan"), 0, "not measured")


def _take(column, index: np.ndarray):
    if isinstance(column, list):
        return [column[i] for i in index]
    return np.asarray(column)[index]


def image_bootstrap(
    columns: dict[str, np.ndarray | list],
    statistic: Callable[[dict], float],
    seed: int = 0,
    n_resamples: int = RESAMPLES,
) -> Interval:
    """Percentile interval of ``statistic(columns)`` when the images are redrawn with replacement.

    ``statistic`` receives a dict of the same names holding the drawn images' entries. Resamples
    on which the statistic is undefined (nan, e.g. no outlier among the drawn images) are dropped;
    when fewer than half remain, the interval is ``nan`` (not measured).
    """
    from scipy.stats import bootstrap

    n = len(next(iter(columns.values())))
    estimate = float(statistic(columns))
    if n < 2 or math.isnan(estimate):
        return Interval(estimate, float("nan"), float("nan"), n)
    draws: list[float] = []

    def on_draw(index: np.ndarray) -> float:
        value = float(statistic({name: _take(column, index.astype(int)) for name, column in columns.items()}))
        draws.append(value)
        return value

    with warnings.catch_warnings():  # a degenerate sample (all draws equal) is reported below, not warned about
        warnings.simplefilter("ignore")
        bootstrap((np.arange(n),), on_draw, vectorized=False, n_resamples=n_resamples, method="percentile",
                  confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    values = np.asarray(draws[-n_resamples:], dtype=float)
    values = values[np.isfinite(values)]
    if values.size < n_resamples / 2:
        return Interval(estimate, float("nan"), float("nan"), n)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), n)


def images_to_settle(interval: Interval, margin: float) -> int | None:
    """Images likely needed for the interval to clear ``margin`` (half-width ∝ 1/√n), or None.

    None when the estimate sits on the margin (no sample size settles it) or nothing was measured.
    """
    distance = abs(interval.estimate - margin)
    if not distance > 0 or not interval.half_width > 0 or interval.n < 2:
        return None
    return int(math.ceil(interval.n * (interval.half_width / distance) ** 2))
