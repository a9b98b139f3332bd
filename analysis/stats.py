"""Uncertainty over images: seeded bootstrap intervals that resample *images*, never tokens.

Tokens of one image are not independent (they share the image's content and the model's
state), so every interval here redraws whole images with replacement and recomputes the
statistic on the drawn images.

Shapes: ``columns`` maps a name to an array whose first axis is the image (``(B, ...)``), or to
a list of per-image arrays of different lengths (e.g. the tokens of one kind in each image).

Which interval, and from how many images
-----------------------------------------
The plain percentile bootstrap of a mean over 8 images covers far less than its nominal 95 %
(it is too narrow by about ``sqrt((n-1)/n)`` and blind to skew). :func:`coverage` measures this
by simulation on statistics shaped like the study's (:data:`STUDY_CASES`: the mean of a skewed
per-image share, a ratio of means, mean paired differences). Simulated coverage of a nominal
95 % interval (3000 trials each, 999 resamples; ``beta(2,98)``: per-image outlier share around 2 %):

==================  =====  ==========  ======  ====================  ============  ===========
statistic           n      percentile  BCa     expanded percentile   expanded BCa  studentized
==================  =====  ==========  ======  ====================  ============  ===========
see :data:`COVERAGE_TABLE` (filled in from the simulation, also printed by ``coverage_table``)
==================  =====  ==========  ======  ====================  ============  ===========

The chosen interval, :data:`METHOD`, is the *studentized* bootstrap (bootstrap-t): each
resample's statistic is centred on the estimate and divided by that resample's standard error,
and the quantiles of that ratio, scaled by the sample's standard error, give the ends. The
standard errors come from the jackknife of the full sample (``n`` extra statistic calls): each
image's influence value is reused for every resample it is drawn into, which is exact for a
mean and a first-order approximation for smooth statistics (ratios, AUCs). Where the jackknife
cannot give a standard error (a statistic that is undefined or constant when one image is left
out), the interval falls back to the expanded BCa interval and says so in ``Interval.method``.

Below :data:`MIN_IMAGES` no interval is computed: ``low`` and ``high`` are nan, the verdict rules
read that as inconclusive, and :meth:`Interval.text` says "too few images to decide".
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
#: The interval every verdict reads (chosen by :func:`coverage`, see the module docstring).
METHOD = "auto"
#: Fewest images for which :data:`METHOD` is trusted (simulated coverage >= 0.93 for the
#: mean-type statistics, see the module docstring); below it the interval is "too few images".
MIN_IMAGES = 8
#: Per-image values with at most this many levels (hits, CorLoc gains in {-1, 0, 1}) are a lattice,
#: on which the bootstrap-t is lumpy: ``"auto"`` gives them the expanded BCa interval.
LATTICE_LEVELS = 3
#: Default most share of resamples that may be undefined (nan) before the interval is not
#: measured (with ``undefined="drop"``).
MAX_UNDEFINED = 0.5
#: What ``undefined=`` may say a nan resample counts as.
UNDEFINED_RULES = ("drop", "low", "high")

TOO_FEW = "too few images to decide"
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

    @property
    def too_few(self) -> bool:
        """True when there were too few images (< :data:`MIN_IMAGES`) to compute an interval."""
        return self.method.startswith(TOO_FEW)

    @property
    def every_resample_equal(self) -> bool:
        """True for a zero-width interval because every resample gave the same value."""
        return self.method.startswith(EVERY_EQUAL)

    def text(self, fmt: str = ".2f") -> str:
        """``0.64 [0.55, 0.71]`` (``fmt`` formats each number; ``%`` formats give percentages)."""
        if math.isnan(self.estimate):
            return "not measured"
        if self.too_few:
            return f"{self.estimate:{fmt}} ({TOO_FEW})"
        if math.isnan(self.low) or math.isnan(self.high):
            why = f": {self.undefined_share:.0%} of resamples undefined" if self.undefined_share > 0 else ""
            return f"{self.estimate:{fmt}} (no interval{why})"
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def exact(value: float, n: int, method: str = "exact (no resampling needed)") -> Interval:
    """A value without sampling uncertainty (e.g. a count that no image draw can change)."""
    return Interval(float(value), float(value), float(value), n, method)


NOT_MEASURED = Interval(float("nan"), float("nan"), float("nan"), 0, "not measured")


def too_few(estimate: float, n: int, min_images: int = MIN_IMAGES) -> Interval:
    """The interval of a statistic measured on fewer than ``min_images`` images: nan ends."""
    return Interval(float(estimate), float("nan"), float("nan"), n, f"{TOO_FEW} (n < {min_images})")


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


def _influence(jack: np.ndarray) -> np.ndarray | None:
    """Jackknife influence values ``(n-1) * (mean - jack_i)``; None when any is undefined."""
    if not np.all(np.isfinite(jack)):
        return None
    return (jack.size - 1) * (jack.mean() - jack)


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


def _is_mean(estimate: float, draws: np.ndarray, index: np.ndarray, influence: np.ndarray) -> bool:
    """Is the statistic a mean of per-image values? Then every resample's value is the estimate
    plus the mean influence of the images it drew (checked on all resamples, to rounding)."""
    predicted = estimate + influence[index].mean(1)
    scale = max(abs(estimate), float(np.max(np.abs(influence))), 1e-300)
    return bool(np.all(np.abs(draws - predicted) <= 1e-9 * scale))


def _levels(values: np.ndarray) -> int:
    """Distinct values, to rounding."""
    ordered = np.sort(values)
    scale = max(float(np.max(np.abs(ordered))), 1e-300)
    return 1 + int(np.sum(np.diff(ordered) > 1e-9 * scale))


def _ends(method: str, estimate: float, draws: np.ndarray, index: np.ndarray, jack: np.ndarray | None,
          n: int, undefined: str) -> tuple[float, float, str]:
    """Interval ends from the resamples (``draws`` may hold nan) and the name of the interval used.

    ``"auto"`` takes the studentized interval for a mean of per-image values with more than
    :data:`LATTICE_LEVELS` levels (clipped to the range of those values, which no resample can
    leave) unless one of its ends is unbounded (resamples
    drawing a single value n times have no spread, hence an infinite t; once they fill a tail the
    end is infinite), and expanded BCa otherwise. ``"studentized"`` falls back to expanded BCa only
    when the jackknife gives no standard error.
    """
    missing = np.isnan(draws)
    share = float(missing.mean())
    tail = (1 - CONFIDENCE) / 2
    defined, defined_index = draws[~missing], index[~missing]
    influence = None if jack is None else _influence(jack)
    if influence is not None and (method == "studentized" or (
            method == "auto" and not share and _levels(influence) > LATTICE_LEVELS
            and _is_mean(estimate, defined, defined_index, influence))):
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
    low, high = _percentile_ends(estimate, np.sort(kept), n, jack, bca="BCa" in method,
                                 expanded=method.startswith("expanded"))
    return low, high, method


def _resample(columns: dict, statistic: Callable[[dict], float], seed: int, n_resamples: int,
              jackknife: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(index, draws, jack)``: the drawn images ``(n_resamples, n)``, the statistic on each draw
    and (when asked) on each leave-one-image-out sample."""
    n = len(next(iter(columns.values())))
    index = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    draws = np.array([float(statistic(_subset(columns, row))) for row in index], dtype=float)
    jack = None
    if jackknife:
        everyone = np.arange(n)
        jack = np.array([float(statistic(_subset(columns, np.delete(everyone, i)))) for i in range(n)])
    return index, draws, jack


def _constant(draws: np.ndarray) -> bool:
    return bool(draws.size) and float(np.ptp(draws)) <= 1e-12 * max(1.0, float(np.max(np.abs(draws))))


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
    Costs ``n_resamples`` statistic calls, plus ``n`` (the jackknife) unless ``method`` is a
    percentile one.
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
    index, draws, _ = _resample(columns, statistic, seed, n_resamples, jackknife=False)
    missing = np.isnan(draws)
    share = float(missing.mean())
    how = f", {share:.0%} of resamples undefined ({'left out' if undefined == 'drop' else 'counted ' + undefined})"
    how = how if share else ""
    if undefined == "drop" and share > max_undefined:
        return Interval(estimate, float("nan"), float("nan"), n, f"not measured{how}", share)
    if _constant(draws[~missing]) and (share == 0 or undefined == "drop"):
        value = float(draws[~missing][0])
        return Interval(estimate, value, value, n, f"{EVERY_EQUAL} (zero width, {_LABEL}{how})", share)
    jack = None
    if "percentile" not in method:
        everyone = np.arange(n)
        jack = np.array([float(statistic(_subset(columns, np.delete(everyone, i)))) for i in range(n)])
    low, high, used = _ends(method, estimate, draws, index, jack, n, undefined)
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
    jackknife = any("percentile" not in m for m in methods)
    for _ in range(n_trials):
        columns = sampler(rng, n_images)
        stat = statistic or _mean_of(next(iter(columns)))
        estimate = float(stat(columns))
        index, draws, jack = _resample(columns, stat, int(rng.integers(2 ** 32)), n_resamples, jackknife)
        missing = np.isnan(draws)
        if math.isnan(estimate) or missing.mean() > MAX_UNDEFINED:
            continue  # not measured: a miss
        for method in methods:
            if _constant(draws[~missing]):
                low = high = float(draws[~missing][0])
            else:
                low, high, _ = _ends(method, estimate, draws, index, jack, n_images, "drop")
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
