"""Uncertainty over images: seeded bootstrap intervals that resample *images*, never tokens.

Tokens of one image are not independent (they share the image's content and the model's
state), so every interval here redraws whole images with replacement and recomputes the
statistic on the drawn images.

Shapes: ``columns`` maps a name to an array whose first axis is the image (``(B, ...)``), or to
a list of per-image arrays of different lengths (e.g. the tokens of one kind in each image).

Which interval, and from how many images
-----------------------------------------
The plain percentile bootstrap of a mean over 8 images covers far less than its nominal 95 %:
it is too narrow (by about ``sqrt((n-1)/n)`` and a normal instead of a t quantile) and blind to
skew. :func:`coverage` measures this by simulation on statistics shaped like the study's
(:data:`STUDY_CASES`); :func:`coverage_table` prints the table for the book's appendix. Simulated
coverage of the nominal 95 % intervals (1500 trials per cell, 999 resamples, truth known;
``*``: 800-1000 trials). Columns: percentile, BCa, expanded percentile (Hesterberg 2015), expanded
BCa, studentized (bootstrap-t) and ``auto`` (:data:`METHOD`, the studentized interval for a mean of
per-image values, expanded BCa otherwise)::

    statistic (per image)               n    pct    BCa  x-pct  x-BCa   stud   auto
    mean share, beta(2, 98)             4  0.785  0.787  0.859  0.858  0.941  0.861
      (outliers ~2 % of patches)        8  0.860  0.868  0.918  0.923  0.933  0.933
                                       12  0.909  0.905  0.936  0.944  0.957  0.957
                                       16  0.903  0.909  0.929  0.939  0.945  0.945
                                      100  0.943  0.950  0.951  0.954  0.950  0.950
    mean, log-normal(0, 0.5)            4  0.771  0.775  0.849  0.849  0.939  0.850
                                        8  0.848  0.858  0.907  0.913  0.934  0.934
                                       12  0.884  0.890  0.917  0.923  0.938  0.938
                                       16  0.913  0.913  0.937  0.937  0.947  0.947
                                      100  0.940  0.942  0.946  0.945  0.945  0.945
    paired gap, gamma(2, 0.05) - 0.05   4  0.784  0.789  0.851  0.851  0.945  0.855
                                        8  0.861  0.875  0.918  0.923  0.941  0.941
                                       12  0.889  0.895  0.928  0.931  0.948  0.948
                                       16  0.919  0.919  0.938  0.943  0.947  0.947
                                      100  0.947  0.947  0.951  0.951  0.951  0.951
    mean share, beta(0.5, 24.5)         4  0.702  0.711  0.787  0.787  0.928  0.789
      (heavy skew: many images ~0)      8  0.799  0.832  0.854  0.874  0.919  0.914
                                       12  0.860  0.879  0.893  0.921  0.953  0.953
                                       16  0.864  0.881  0.893  0.915  0.932  0.932
                                      100  0.943  0.943  0.947  0.945  0.952  0.952
    mean, log-normal(0, 1) *            4  0.689  0.704  0.767  0.766  0.905  0.767
      (very heavy skew)                 8  0.790  0.810  0.844  0.864  0.902  0.900
                                       12  0.829  0.833  0.854  0.887  0.915  0.915
                                       16  0.848  0.876  0.884  0.892  0.910  0.910
                                      100  0.919  0.921  0.922  0.927  0.931  0.931
    paired CorLoc gain in {-1, 0, 1}    4  0.701  0.717  0.760  0.760  0.867  0.760
      (a lattice: auto = x-BCa)         8  0.902  0.905  0.918  0.937  0.923  0.937
                                       12  0.899  0.897  0.949  0.950  0.907  0.950
                                       16  0.919  0.919  0.939  0.944  0.941  0.944
                                      100  0.954  0.953  0.954  0.958  0.951  0.958
    enrichment, mean(x) / mean(y)       4  0.762  0.747  0.847  0.841  0.837  0.841
      (ratio of means)                  8  0.855  0.840  0.915  0.901  0.859  0.901
                                       12  0.859  0.845  0.902  0.888  0.861  0.888
                                       16  0.889  0.886  0.915  0.914  0.886  0.914
                                      100  0.931  0.925  0.936  0.932  0.932  0.932
    pooled token AUC, 3 % positives *   4  0.750  0.735  0.807  0.807  0.897  0.807
                                        8  0.861  0.865  0.909  0.932  0.917  0.932
                                       12  0.879  0.890  0.920  0.926  0.922  0.926
                                       16  0.897  0.900  0.920  0.931  0.917  0.931
    median(reg) / median(patch) *       4  0.931  0.798  0.970  0.963  0.860  0.963
                                        8  0.982  0.893  0.996  0.968  0.916  0.968
                                       12  0.971  0.888  0.986  0.949  0.889  0.949
                                       16  0.983  0.922  0.992  0.953  0.915  0.953
                                      100  0.964  0.933  0.970  0.935  0.923  0.935

(Monte Carlo error about 0.006 per cell, 0.008 for ``*``. At 6 images ``auto`` covered 0.938,
0.924 and 0.921 for the first three rows. Above :data:`JACKKNIFE_GROUPS` images the BCa
acceleration comes from 25 groups of images; rechecked at 100 images: enrichment 0.930, median
ratio 0.943, against 0.932 and 0.948 with one image left out at a time.)

Reading it: the studentized interval is the only one near 0.95 for a skewed mean at 8-16 images,
but only for means: its standard errors reuse each image's influence value in every resample,
which is exact for a mean and wrong for a ratio (0.86 at 8 images) or a median (0.92); on a
lattice of two or three values (hits, CorLoc gains) it is lumpy (0.91 at 12 images). So
:data:`METHOD` is ``"auto"``: the studentized interval where the statistic is a mean of per-image
values with more than :data:`LATTICE_LEVELS` levels, clipped to the range of those values; the
expanded BCa interval for everything else, and where a studentized end is unbounded (resamples
repeating one value have no spread). A mean is recognised from the resamples alone: least squares
of the resamples' values on their image counts leaves no residual, and gives the per-image values
(so a mean costs no jackknife). ``Interval.method`` names the interval used. At 4 images nothing
holds: the studentized interval covers only by being four times wider than the rest, and clipped
to the range of 4 values it covers 0.86. Ratios of means stay near 0.90 up to 16 images with every
method here: read their verdicts near the margin with that in mind.

:data:`MIN_IMAGES` = 8: the smallest of the study's sample sizes (4, 8, 12, 16, 100) at which
``auto`` covers >= 0.93 for the moderately skewed mean-type statistics (0.933, 0.934, 0.941 above;
0.914 and 0.900 under heavy skew). Below it no interval is computed: ``low`` and ``high`` are nan,
the verdict rules read that as inconclusive, and :meth:`Interval.text` says so in words ("too few
images for an interval: 1 of 8 needed").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Two-sided coverage of every interval in the study.
CONFIDENCE = 0.95
#: Bootstrap resamples (odd, so percentile ends fall on a sample).
RESAMPLES = 999

#: Intervals :func:`image_bootstrap` can compute (``method=``).
METHODS = ("percentile", "BCa", "expanded percentile", "expanded BCa", "studentized", "auto")
#: The interval every verdict reads (chosen by :func:`coverage`, see the module docstring):
#: studentized for a mean of per-image values, expanded BCa otherwise.
METHOD = "auto"
#: Fewest images for which :data:`METHOD` is trusted: simulated coverage 0.933 (mean of a beta(2,98)
#: per-image share), 0.934 (log-normal(0, 0.5) mean), 0.941 (skewed paired gap) at 8 images, against
#: 0.85-0.86 at 4 (module docstring); below it the interval is "too few images to decide".
MIN_IMAGES = 8
#: Per-image values with at most this many levels (hits, CorLoc gains in {-1, 0, 1}) are a lattice,
#: on which the bootstrap-t is lumpy: ``"auto"`` gives them the expanded BCa interval.
LATTICE_LEVELS = 3
#: Above this many images the BCa acceleration comes from leaving out this many interleaved groups
#: of images instead of each image (fewer statistic calls, the same acceleration to first order).
JACKKNIFE_GROUPS = 25
#: Default most share of resamples that may be undefined (nan) before the interval is not
#: measured (with ``undefined="drop"``).
MAX_UNDEFINED = 0.5
#: What ``undefined=`` may say a nan resample counts as.
UNDEFINED_RULES = ("drop", "low", "high")

TOO_FEW = "too few images to decide"
#: How :meth:`Interval.text` words an interval that too few images left uncomputed.
TOO_FEW_FOR_INTERVAL = "too few images for an interval"
EVERY_EQUAL = "every resample equal"
_LABEL = "bootstrap over images"


@dataclass(frozen=True)
class Interval:
    """A measured value with its bootstrap interval over ``n`` images.

    ``undefined_share``: share of the resamples on which the statistic was undefined (nan);
    ``method`` says how they counted. Intervals not computed from resamples have 0.
    """

    estimate: float
    low: float
    high: float
    n: int  # images resampled
    method: str = "bootstrap over images"
    undefined_share: float = 0.0
    min_images: int = MIN_IMAGES  # fewest images an interval is computed from (the "of 8 needed" in text)

    @property
    def too_few(self) -> bool:
        """True when there were too few images (< ``min_images``) to compute an interval.

        Also for an interval rebuilt from a table (``Interval(estimate, nan, nan, n)``, n small).
        """
        if self.method.startswith(TOO_FEW):
            return True
        return (0 < self.n < self.min_images and math.isnan(self.low) and math.isnan(self.high)
                and not math.isnan(self.estimate))

    @property
    def every_resample_equal(self) -> bool:
        """True for a zero-width interval because every (defined) resample gave the same value: the images
        show no variation of the statistic, so the interval says nothing about its uncertainty. Read from
        :attr:`method`, which :func:`image_bootstrap` starts with :data:`EVERY_EQUAL` then (an interval rebuilt
        from a table keeps it only where the table kept the method)."""
        return self.method.startswith(EVERY_EQUAL)

    def text(self, fmt: str = ".2f", unit: str = "") -> str:
        """``0.64 [0.55, 0.71]`` (``fmt`` formats each number; ``%`` formats give percentages).

        Without an interval it says why in words, never ``[nan, nan]``: ``1.98% (too few images for an
        interval: 1 of 8 needed)``, ``0.40 (no interval: 60% of resamples undefined)``, ``not measured``.
        A zero-width interval of resamples that were all equal says so: ``6.25% [6.25%, 6.25%] (every resample
        equal)``.

        ``unit`` (``"×"``) is written right after every number shown — the estimate and each end of the interval —
        so that a sentence never has to glue it after the whole text, where it would follow a parenthetical:
        ``19.7× [14.8×, 28.8×]``, ``19.7× (too few images for an interval: 4 of 8 needed)``, ``3.0× [3.0×, 3.0×]
        (every resample equal)``; ``not measured`` has no number and takes no unit. A sentence reads the value as
        a whole: "… is {text}", "draw {text} their area share", never "{text} times".
        """
        if math.isnan(self.estimate):
            return "not measured"
        estimate = f"{self.estimate:{fmt}}{unit}"
        if self.too_few:
            return f"{estimate} ({TOO_FEW_FOR_INTERVAL}: {self.n} of {self.min_images} needed)"
        if math.isnan(self.low) or math.isnan(self.high):
            why = f": {self.undefined_share:.0%} of resamples undefined" if self.undefined_share > 0 else ""
            return f"{estimate} (no interval{why})"
        equal = f" ({EVERY_EQUAL})" if self.every_resample_equal else ""
        return f"{estimate} [{self.low:{fmt}}{unit}, {self.high:{fmt}}{unit}]{equal}"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


NOT_MEASURED = Interval(float("nan"), float("nan"), float("nan"), 0, "not measured")


def too_few(estimate: float, n: int, min_images: int = MIN_IMAGES) -> Interval:
    """The interval of a statistic measured on fewer than ``min_images`` images: nan ends (``text`` says so)."""
    return Interval(float(estimate), float("nan"), float("nan"), n, f"{TOO_FEW} (n < {min_images})",
                    min_images=min_images)


def _take(column, index: np.ndarray):
    if isinstance(column, list):
        return [column[i] for i in index]
    return np.asarray(column)[index]


def _subset(columns: dict, index: np.ndarray) -> dict:
    return {name: _take(column, index) for name, column in columns.items()}


def _quantile(values: np.ndarray, q: float, side: str) -> float:
    """``q``-quantile of sorted ``values`` (linear interpolation); next to an infinite value the
    outer neighbour is taken (``side`` "low"/"high"), so an infinite draw widens, never turns nan."""
    position = q * (values.size - 1)
    below, above = int(math.floor(position)), int(math.ceil(position))
    a, b = values[below], values[above]
    if below == above or a == b:
        return float(a)
    if not (np.isfinite(a) and np.isfinite(b)):
        return float(a if side == "low" else b)
    return float(a + (position - below) * (b - a))


def _normal_z(n: int, expanded: bool) -> float:
    """Upper standard-normal quantile of the interval, or its small-sample "expanded" version
    ``sqrt(n/(n-1)) * t_{n-1}`` (Hesterberg 2015), which undoes the bootstrap's narrowness bias."""
    from scipy.stats import norm, t

    tail = (1 - CONFIDENCE) / 2
    if expanded:
        return float(math.sqrt(n / (n - 1)) * t.ppf(1 - tail, n - 1))
    return float(norm.ppf(1 - tail))


def _acceleration(jack: np.ndarray) -> float:
    """BCa acceleration from jackknife values (the finite ones); 0 when they do not vary."""
    jack = jack[np.isfinite(jack)]
    if jack.size < 3:
        return 0.0
    d = jack.mean() - jack
    spread = float(np.sum(d ** 2))
    return float(np.sum(d ** 3) / (6 * spread ** 1.5)) if spread > 0 else 0.0


def _percentile_ends(estimate: float, draws: np.ndarray, n: int, jack: np.ndarray | None,
                     bca: bool, expanded: bool) -> tuple[float, float]:
    """Percentile / BCa ends (optionally expanded) from sorted ``draws`` (may hold +-inf)."""
    from scipy.stats import norm

    z = _normal_z(n, expanded)
    if bca:
        size = draws.size
        share = (np.sum(draws < estimate) + 0.5 * np.sum(draws == estimate)) / size
        z0 = float(norm.ppf(min(max(share, 0.5 / size), 1 - 0.5 / size)))
        a = _acceleration(jack) if jack is not None else 0.0
        ends = []
        for zz in (-z, z):
            denominator = 1 - a * (z0 + zz)
            ends.append(float(norm.cdf(z0 + (z0 + zz) / denominator)) if denominator > 0 else (0.0 if zz < 0 else 1.0))
        q_low, q_high = ends
    else:
        q_low, q_high = norm.cdf(-z), norm.cdf(z)
    return _quantile(draws, q_low, "low"), _quantile(draws, q_high, "high")


class _Jackknife:
    """Leave-images-out values of a statistic, computed on first use and kept.

    ``values(per_image=True)``: leave each image out (``n`` calls); otherwise, above
    :data:`JACKKNIFE_GROUPS` images, leave out each of that many interleaved groups of images
    (enough for the BCa acceleration, which is the same to first order).
    """

    def __init__(self, columns: dict, statistic: Callable[[dict], float], n: int):
        self.columns, self.statistic, self.n = columns, statistic, n
        self._full: np.ndarray | None = None
        self._grouped: np.ndarray | None = None

    def _left_out(self, groups: list[np.ndarray]) -> np.ndarray:
        everyone = np.arange(self.n)
        return np.array([float(self.statistic(_subset(self.columns, np.delete(everyone, g)))) for g in groups])

    def values(self, per_image: bool = False) -> np.ndarray:
        if per_image or self.n <= JACKKNIFE_GROUPS:
            if self._full is None:
                self._full = self._left_out([np.array([i]) for i in range(self.n)])
            return self._full
        if self._grouped is None:
            self._grouped = self._left_out([np.arange(g, self.n, JACKKNIFE_GROUPS) for g in range(JACKKNIFE_GROUPS)])
        return self._grouped


def _influence(jack: np.ndarray) -> np.ndarray | None:
    """Jackknife influence values ``(n-1) * (mean - jack_i)``; None when any is undefined."""
    if not np.all(np.isfinite(jack)):
        return None
    return (jack.size - 1) * (jack.mean() - jack)


def _mean_influence(estimate: float, draws: np.ndarray, index: np.ndarray, n: int) -> np.ndarray | None:
    """Per-image influence values when the statistic is a mean of per-image values, else None.

    A mean of per-image values ``x_i`` gives each resample exactly the mean of its images' ``x_i``:
    least squares of the resamples on their image counts recovers every ``x_i`` with no residual
    (checked to rounding), so no extra statistic call is needed; the influence is ``x_i - estimate``.
    The least squares runs as conjugate gradients on gathers and bincounts (no LAPACK call, which
    can stall for a second when torch's threads share the CPUs).
    """
    size = draws.size
    if size <= n or not np.all(np.isfinite(draws)):
        return None
    flat = index.ravel()
    target = draws * n  # sum over the drawn images of x_i

    def forward(v: np.ndarray) -> np.ndarray:
        return v[index].sum(1)

    def backward(r: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=np.repeat(r, n), minlength=n)

    values, residual = np.zeros(n), target.copy()
    gradient = backward(residual)
    direction, gamma = gradient.copy(), float(np.sum(gradient * gradient))
    start = gamma
    for _ in range(10 * n):
        if not gamma > 1e-26 * start:
            break
        step = forward(direction)
        alpha = gamma / float(np.sum(step * step))
        values += alpha * direction
        residual -= alpha * step
        gradient = backward(residual)
        gamma, previous = float(np.sum(gradient * gradient)), gamma
        direction = gradient + (gamma / previous) * direction
    scale = max(abs(estimate), float(np.max(np.abs(draws))), 1e-300)
    if not np.all(np.abs(forward(values) / n - draws) <= 1e-9 * scale):
        return None
    if abs(float(values.mean()) - estimate) > 1e-9 * scale:  # the full sample is one more check
        return None
    return values - estimate


def _studentized_ends(estimate: float, draws: np.ndarray, index: np.ndarray,
                      influence: np.ndarray) -> tuple[float, float] | None:
    """Bootstrap-t ends; the standard error of each resample comes from the influence values of
    the images it drew (exact for a mean). None when the sample's standard error is zero."""
    n = influence.size
    se = math.sqrt(float(np.sum(influence ** 2)) / (n * (n - 1)))
    if not se > 0:
        return None
    drawn = influence[index]  # (resamples, n)
    se_draws = np.sqrt(np.sum((drawn - drawn.mean(1, keepdims=True)) ** 2, axis=1) / (n * (n - 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (draws - estimate) / se_draws
        # A resample without spread (e.g. one image drawn n times): any departure is an unbounded t.
        t = np.where(se_draws > 0, t, np.where(draws == estimate, 0.0, np.sign(draws - estimate) * np.inf))
    t = np.sort(t)
    tail = (1 - CONFIDENCE) / 2
    t_low, t_high = _quantile(t, tail, "low"), _quantile(t, 1 - tail, "high")
    return estimate - t_high * se, estimate - t_low * se


def _levels(values: np.ndarray) -> int:
    """Distinct values, to rounding."""
    ordered = np.sort(values)
    scale = max(float(np.max(np.abs(ordered))), 1e-300)
    return 1 + int(np.sum(np.diff(ordered) > 1e-9 * scale))


def _ends(method: str, estimate: float, draws: np.ndarray, index: np.ndarray, jackknife: _Jackknife | None,
          n: int, undefined: str) -> tuple[float, float, str]:
    """Interval ends from the resamples (``draws`` may hold nan) and the name of the interval used.

    ``"auto"`` takes the studentized interval for a mean of per-image values with more than
    :data:`LATTICE_LEVELS` levels, clipped to the range of those values (which no resample can
    leave), unless one of its ends is unbounded (a resample repeating one value has no spread,
    hence an infinite t; once such resamples fill a tail, that end is infinite); expanded BCa
    otherwise. ``"studentized"`` falls back to expanded BCa only when the jackknife gives no
    standard error.
    """
    missing = np.isnan(draws)
    share = float(missing.mean())
    tail = (1 - CONFIDENCE) / 2
    defined, defined_index = draws[~missing], index[~missing]
    influence = None
    if method == "auto":
        influence = _mean_influence(estimate, draws, index, n)
        if influence is not None and _levels(influence) <= LATTICE_LEVELS:
            influence = None
    elif method == "studentized" and jackknife is not None:
        influence = _influence(jackknife.values(per_image=True))
    if influence is not None:
        ends = _studentized_ends(estimate, defined, defined_index, influence)
        if ends is not None and (method == "studentized" or all(map(math.isfinite, ends))):
            low, high = ends
            if method == "auto":
                low = max(low, estimate + float(influence.min()))
                high = min(high, estimate + float(influence.max()))
            # Bootstrap-t reflects the draws (a low resample raises the upper end), so undefined
            # resamples are left out of the t-ratios; counted "low"/"high", they make the end they
            # count toward infinite once they fill its tail.
            if undefined == "low" and share >= tail:
                low = -math.inf
            if undefined == "high" and share >= tail:
                high = math.inf
            return float(low), float(high), "studentized"
    if method in ("auto", "studentized"):
        method = "expanded BCa"
    kept = defined if undefined == "drop" else np.where(missing, -np.inf if undefined == "low" else np.inf, draws)
    jack = jackknife.values() if "BCa" in method and jackknife is not None else None
    low, high = _percentile_ends(estimate, np.sort(kept), n, jack, bca="BCa" in method,
                                 expanded=method.startswith("expanded"))
    return low, high, method


def _resample(columns: dict, statistic: Callable[[dict], float], seed: int,
              n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, draws)``: the drawn images ``(n_resamples, n)`` and the statistic on each draw."""
    n = len(next(iter(columns.values())))
    index = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    return index, np.array([float(statistic(_subset(columns, row))) for row in index], dtype=float)


def _constant(draws: np.ndarray) -> bool:
    """Every draw equal (to rounding; an infinite value only to itself)."""
    if not draws.size:
        return False
    if np.all(draws == draws[0]):
        return True
    return bool(np.all(np.isfinite(draws))) and float(np.ptp(draws)) <= 1e-12 * max(1.0, float(np.max(np.abs(draws))))


def image_bootstrap(
    columns: dict[str, np.ndarray | list],
    statistic: Callable[[dict], float],
    seed: int = 0,
    n_resamples: int = RESAMPLES,
    *,
    method: str = METHOD,
    undefined: str = "drop",
    max_undefined: float = MAX_UNDEFINED,
    min_images: int = MIN_IMAGES,
) -> Interval:
    """Interval of ``statistic(columns)`` when the images are redrawn with replacement.

    ``statistic`` receives a dict of the same names holding the drawn images' entries.
    ``method``: one of :data:`METHODS`; the default, :data:`METHOD` (``"auto"``), is the studentized
    interval when the statistic is a mean of per-image values and the expanded BCa interval
    otherwise; ``Interval.method`` names the one used. Fewer than ``min_images`` images give a
    "too few images to decide" interval with nan ends (no resampling is done).

    Resamples on which the statistic is undefined (nan, e.g. no outlier among the drawn images)
    count as ``undefined`` says: ``"drop"`` leaves them out (when more than ``max_undefined`` of
    the resamples are undefined, the interval is not measured: nan ends), ``"low"`` / ``"high"``
    count them as below / above every defined value (e.g. a resample without an onset is evidence
    against "the onset is late": ``"low"``), which can make an end infinite. Either way their share
    is ``Interval.undefined_share`` and ``Interval.method`` says how they counted.

    When every resample gives the same value the interval has zero width and its method says
    "every resample equal" (nothing is invented: the sample shows no variation between images).

    Cost in statistic calls: ``1 + n_resamples``; BCa intervals (and ``"auto"`` on anything but a
    mean, which it recognises from the resamples alone) add a jackknife of ``min(n,``
    :data:`JACKKNIFE_GROUPS` ``)`` calls; ``"studentized"`` adds ``n``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if undefined not in UNDEFINED_RULES:
        raise ValueError(f"undefined must be one of {UNDEFINED_RULES}, not {undefined!r}")
    n = len(next(iter(columns.values())))
    estimate = float(statistic(columns))
    if math.isnan(estimate):
        return Interval(estimate, float("nan"), float("nan"), n, f"not measured: statistic undefined on the {n} images")
    if n < max(2, min_images):
        return too_few(estimate, n, max(2, min_images))
    index, draws = _resample(columns, statistic, seed, n_resamples)
    missing = np.isnan(draws)
    share = float(missing.mean())
    how = f", {share:.0%} of resamples undefined ({'left out' if undefined == 'drop' else 'counted ' + undefined})"
    how = how if share else ""
    if undefined == "drop" and share > max_undefined:
        return Interval(estimate, float("nan"), float("nan"), n, f"not measured{how}", share)
    if _constant(draws[~missing]) and (share == 0 or undefined == "drop"):
        value = float(draws[~missing][0])
        return Interval(estimate, value, value, n, f"{EVERY_EQUAL} (zero width, {_LABEL}{how})", share)
    low, high, used = _ends(method, estimate, draws, index, _Jackknife(columns, statistic, n), n, undefined)
    return Interval(estimate, low, high, n, f"{used} {_LABEL}{how}", share)


def images_to_settle(interval: Interval, margin: float) -> int | None:
    """Images likely needed for the interval to clear ``margin`` (half-width ∝ 1/√n), or None.

    None when the estimate sits on the margin (no sample size settles it) or nothing was measured.
    """
    distance = abs(interval.estimate - margin)
    if not distance > 0 or not interval.half_width > 0 or interval.n < 2:
        return None
    return int(math.ceil(interval.n * (interval.half_width / distance) ** 2))


# ---------------------------------------------------------------------------------------------
# Coverage by simulation: which interval holds at the study's sample sizes.

Sampler = Callable[[np.random.Generator, int], dict]


def _mean_of(name: str) -> Callable[[dict], float]:
    return lambda c: float(np.mean(c[name]))


def coverages(methods, sampler: Sampler, truth: float, n_images: int, n_trials: int = 400, seed: int = 0,
              statistic: Callable[[dict], float] | None = None,
              n_resamples: int = 199) -> dict[str, float]:
    """:func:`coverage` of several methods at once, each reading the same simulated samples and
    the same resamples (as :func:`image_bootstrap` would draw them, without its minimum-images gate)."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(methods, 0)
    for _ in range(n_trials):
        columns = sampler(rng, n_images)
        stat = statistic or _mean_of(next(iter(columns)))
        estimate = float(stat(columns))
        index, draws = _resample(columns, stat, int(rng.integers(2 ** 32)), n_resamples)
        missing = np.isnan(draws)
        if math.isnan(estimate) or missing.mean() > MAX_UNDEFINED:
            continue  # not measured: a miss
        jackknife = _Jackknife(columns, stat, n_images)
        for method in methods:
            if _constant(draws[~missing]):
                low = high = float(draws[~missing][0])
            else:
                low, high, _ = _ends(method, estimate, draws, index, jackknife, n_images, "drop")
            hits[method] += bool(low <= truth <= high)
    return {method: hits[method] / n_trials for method in methods}


def coverage(method: str, sampler: Sampler, truth: float, n_images: int, n_trials: int = 400,
             seed: int = 0, statistic: Callable[[dict], float] | None = None,
             n_resamples: int = 199) -> float:
    """Share of ``n_trials`` simulated samples whose ``method`` interval contains ``truth``.

    ``sampler(rng, n_images)`` draws one sample (a ``columns`` dict, as :func:`image_bootstrap`
    takes); ``statistic`` defaults to the mean of its only column. The minimum-images gate is off
    here (coverage below :data:`MIN_IMAGES` is what sets it); an interval that could not be
    computed counts as a miss. ``n_resamples`` defaults to 199 to keep simulations fast (the
    study uses :data:`RESAMPLES`); coverage moves by about a point between the two.
    """
    return coverages((method,), sampler, truth, n_images, n_trials, seed, statistic, n_resamples)[method]


def _beta_share(a: float, b: float) -> Sampler:
    return lambda rng, n: {"share": rng.beta(a, b, n)}


def _lognormal(sigma: float) -> Sampler:
    return lambda rng, n: {"value": rng.lognormal(0.0, sigma, n)}


def _enrichment(rng: np.random.Generator, n: int) -> dict:
    area = rng.beta(2, 98, n)  # per-image share of high-norm patches
    return {"attention": area * rng.lognormal(math.log(10), 0.5, n), "area": area}


def _corloc_gain(rng: np.random.Generator, n: int) -> dict:
    return {"gain": rng.choice([-1.0, 0.0, 1.0], n, p=[0.1, 0.6, 0.3])}  # per-image CorLoc with - without


def _skewed_gap(rng: np.random.Generator, n: int) -> dict:
    return {"gap": rng.gamma(2.0, 0.05, n) - 0.05}


def _ratio_of_means(c: dict) -> float:
    return float(np.mean(c["attention"]) / np.mean(c["area"]))


#: Statistics shaped like the study's: name -> (sampler, statistic or None for the mean, truth).
STUDY_CASES: dict[str, tuple[Sampler, Callable[[dict], float] | None, float]] = {
    "outlier share, beta(2,98) per image": (_beta_share(2, 98), None, 0.02),
    "outlier share, beta(0.5,24.5) per image": (_beta_share(0.5, 24.5), None, 0.02),
    "log-normal(0, 0.5) per image": (_lognormal(0.5), None, math.exp(0.125)),
    "attention enrichment (ratio of means)": (_enrichment, _ratio_of_means, 10 * math.exp(0.125)),
    "paired CorLoc gain in {-1, 0, 1}": (_corloc_gain, None, 0.2),
    "paired skewed gap, gamma(2, 0.05) - 0.05": (_skewed_gap, None, 0.05),
}


def coverage_table(methods=METHODS, sizes=(4, 8, 12, 16, 100), cases: dict | None = None,
                   n_trials: int = 400, seed: int = 0, n_resamples: int = 199):
    """Coverage of each method × sample size × case (a pandas frame), for the book's appendix."""
    import pandas as pd

    rows = []
    for name, (sampler, statistic, truth) in (cases or STUDY_CASES).items():
        for n in sizes:
            rows.append({"statistic": name, "n": n,
                         **coverages(methods, sampler, truth, n, n_trials, seed, statistic, n_resamples)})
    return pd.DataFrame(rows)
