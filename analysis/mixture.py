"""A two-component Gaussian mixture on log-norms: the first reading of :func:`analysis.metrics.adaptive_threshold`.

The mixture finds a small mode far above the bulk with good power on few images, but a single mode with a heavy
tail or a wide shoulder can also fit as two components; :func:`analysis.metrics.adaptive_threshold` therefore
accepts its mode only where the log-norm density also dips below it (a unimodal density never rises again).
Shapes: ``(...)`` norms of any shape in, a :class:`MixtureThreshold` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixtureThreshold:
    """The two-component mixture's cutoff between normal and high-norm tokens (see :func:`mixture_threshold`).

    ``threshold`` is ``inf`` when the log-norm distribution has no separated minority mode of high norms,
    so no token is flagged. The other fields describe the two-component fit whether or not it was
    accepted; means and standard deviations are of natural-log norms.
    """

    threshold: float  # norm where the upper component's posterior crosses 0.5; inf when not bimodal
    separation: float  # Ashman's D between the two fitted log-norm components
    upper_share: float  # share of the counted tokens above the posterior crossing
    bimodal: bool  # every test of mixture_threshold passed
    upper_weight: float = 0.0  # mixture weight of the upper component
    upper_count: int = 0  # tokens above the posterior crossing (with any trimmed top of the refit)
    lower_mean: float = float("nan")  # mean log-norm of the lower (normal) component
    upper_mean: float = float("nan")  # mean log-norm of the upper (high-norm) component
    lower_std: float = float("nan")
    upper_std: float = float("nan")
    bic_gain: float = 0.0  # BIC(1 component) - BIC(2 components); > 0: two components fit better


# Where these constants come from: they were set before the twins were split into a development and a held-out
# family, partly on the twins and the real ViT-Ti's blocks that both families use (MIN_WIDE_SEPARATION was lowered
# from 2.5 to 2.3 after a twin's resample). They were then re-examined through the whole detector
# (analysis.metrics.adaptive_threshold) on development data only, and kept:
# - the detector's development family (tests/test_detector.py, 8 x 196 tokens where the mixture's route matters;
#   6 000 unimodal samples, seeds 0-99, and 3 840 with a mode, seeds 0-39): MIN_SEPARATION at 2.5, 3 and 3.5 found
#   the same modes (58.5 %) with 8, 6 and 6 false alarms; the wide route below found no mode more there, and made
#   those 6 (3-16 at 2.0-2.5 and 6-10 deviations; 0 without it);
# - the development twins (analysis.twins.DEV_TWINS): without the wide route, dev-redundant's mode widened by the
#   tokens between the modes goes unfound at block 10 (D 3.0) and its onset is misread (block 11 for 4). Its modes
#   have the between tokens the detector's family lacks, so the route stays; its false alarms are within the budget
#   of analysis.metrics.MIN_MIXTURE_DIP, which every mixture mode must also meet.
# The mixture never decides alone: its mode needs the density's dip in its own trough (MIN_MIXTURE_DIP).

#: Two components count as separated when Ashman's D exceeds this. D > 2 is the usual bound for two
#: equal halves; a minority of a few percent is only a visible mode further out, and single skewed or
#: flat modes (ex-Gaussian, gamma, Pareto, uniform in log) fit with D up to ~2.1, as does block 2 of the
#: real ViT-Ti (17 % "upper"), so 3 keeps a margin above them. DINOv2-like planted outliers fit at D ≈ 9,
#: the real ViT-Ti's last blocks at 12-14, its block 6 (where the outliers first stand apart) at ~4.5.
MIN_SEPARATION = 3.0
#: ... or, for an upper mode widened by tokens between the modes (the paper's models have them), when D exceeds
#: MIN_WIDE_SEPARATION *and* the upper mean lies MIN_LOWER_DISTANCE of the *lower* component's standard
#: deviations above the lower mean. D pools both spreads, so a real mode far above a tight bulk can fall under
#: MIN_SEPARATION: a twin of the ViT-Ti with 1 token per image at 3-8x the median beside 4 outliers at ~30x fits
#: D = 2.9 at one block, 23 lower deviations apart. A power-law tail over a tight bulk (3 % Pareto, alpha 1) fits
#: D ~ 1.5 at ~11 deviations, and single skewed modes reach D ~ 2.1: both stay below MIN_WIDE_SEPARATION (a
#: twin's planted mode, widened by the between tokens, reaches D = 2.5 in a bootstrap resample).
MIN_WIDE_SEPARATION = 2.3
MIN_LOWER_DISTANCE = 8.0
#: ... and the upper mode sits at least this many times above the lower one (geometric means): a tight bulk with a
#: group of tokens 1.5x longer is well "separated" in D, but it is not the paper's artifact (DINOv2 ViT-g's
#: outliers sit ~8x above its median, the real ViT-Ti's ~30x); a small mode at 2.5x still counts.
MIN_MODE_RATIO = 2.0
#: Outliers are a minority by definition; an "upper mode" holding more than this is not one.
MAX_UPPER_SHARE = 0.2
#: ... nor is a handful of stray tokens: the upper mode needs at least this many tokens (a ViT-Ti/16
#: image at 224 px has about 4 outliers) ...
MIN_UPPER_TOKENS = 4
#: ... and at least this share of them (the paper's outliers are ~2 %; 0.1 % of 100 000 is 100 tokens).
MIN_UPPER_SHARE = 1e-3
#: Above this many values the fit runs on a histogram of log-norms (exact per-bin count, mean and
#: spread, so only the E-step rounds a token to its bin's mean); below it, on the values themselves.
HISTOGRAM_BINS = 512
#: EM starts with the top 20 %, 5 % and 1 % of the tokens as the upper component (at least
#: MIN_UPPER_TOKENS) and keeps the start of highest likelihood: deterministic, and it reaches a small
#: far mode that a start at the median would miss.
INITIAL_UPPER_SHARES = (0.2, 0.05, 0.01)
#: Cap on EM steps (the short runs included). A separated mode converges in 10-50; a single mode split in
#: two crawls, and its verdict did not change between 30 and 2000 steps on any sample tried.
EM_MAX_ITERATIONS = 100
#: Steps each start runs before only the most likely start goes on.
EM_SHORT_ITERATIONS = 20
#: EM stops when no mean or standard deviation of log-norms moved by this over the last EM_CHECK_EVERY
#: steps (nor any weight by this share of itself).
EM_TOLERANCE = 1e-5
EM_CHECK_EVERY = 5
#: Floor of a component's log-norm standard deviation (1 %): identical values must not collapse one.
MIN_LOG_STD = 1e-2

_NOT_BIMODAL = MixtureThreshold(float("inf"), 0.0, 0.0, False)




def _log_norm_summary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N,)`` log-norms -> ``(M,)`` means, counts and within-group sums of squares of M groups.

    Up to ``HISTOGRAM_BINS`` values each is its own group; beyond, the groups are the non-empty bins of an
    equal-width histogram over ``[min, max]``.
    """
    if values.size <= HISTOGRAM_BINS:
        return values, np.ones_like(values), np.zeros_like(values)
    low, high = values.min(), values.max()
    index = ((values - low) * ((HISTOGRAM_BINS - 1e-6) / (high - low))).astype(np.intp)
    counts = np.bincount(index, minlength=HISTOGRAM_BINS).astype(np.float64)
    sums = np.bincount(index, values, HISTOGRAM_BINS)
    squares = np.bincount(index, values * values, HISTOGRAM_BINS)
    held = counts > 0
    counts, sums, squares = counts[held], sums[held], squares[held]
    means = sums / counts
    return means, counts, np.maximum(squares - sums * means, 0.0)


class _TwoGaussianEM:
    """Weighted EM of a 2-component 1-D Gaussian mixture on grouped data, from S starts at once.

    ``x``, ``counts``, ``within``: ``(M,)`` group means, sizes and within-group sums of squares (one group
    per value, or per histogram bin); ``splits``: ``(S,)`` starts, component 1 the groups above the split.
    A step is an E-step at each group's mean (the log-odds of the components is a quadratic in x, one
    matrix product) then an M-step (exact weighted moments, the within-group spread included: one more).
    Parameters are ``(S,)`` arrays. A start whose component empties turns NaN and is dropped by the caller.
    """

    def __init__(self, x: np.ndarray, counts: np.ndarray, within: np.ndarray, splits: np.ndarray, min_var: float):
        self.counts, self.min_var = counts, min_var
        self.basis = np.stack([np.ones_like(x), x, x * x])  # (3, M)
        # per group: tokens, sum of x, sum of x², within-group spread per token; a mass times these gives
        # the component's size, first and second moments, and its share of the within-group spread
        self.moments = np.stack([np.ones_like(x), x, x * x, within / counts], axis=1)  # (M, 4)
        self.totals = counts @ self.moments  # (4,)
        self.iterations = 0
        self._m_step((x > splits[:, None]) * counts)

    def _m_step(self, mass: np.ndarray) -> None:
        """``mass``: ``(S, M)`` tokens of component 1 in each group."""
        upper = mass @ self.moments  # (S, 4)
        lower = self.totals - upper
        self.weight1 = upper[:, 0] / self.totals[0]
        self.mean0, self.mean1 = lower[:, 1] / lower[:, 0], upper[:, 1] / upper[:, 0]
        self.var0 = np.maximum((lower[:, 2] - lower[:, 1] * self.mean0 + lower[:, 3]) / lower[:, 0], self.min_var)
        self.var1 = np.maximum((upper[:, 2] - upper[:, 1] * self.mean1 + upper[:, 3]) / upper[:, 0], self.min_var)

    def _log_joint_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """``(S, 3)`` each: log(weight x density) of component 0 and 1 as ``a + b·x + c·x²``."""
        def coefficients(weight, mean, var):
            return np.stack([np.log(weight) - 0.5 * np.log(2 * np.pi * var) - mean * mean / (2 * var),
                             mean / var, -0.5 / var], axis=1)

        lower = coefficients(1 - self.weight1, self.mean0, self.var0)
        return lower, coefficients(self.weight1, self.mean1, self.var1)

    def run(self, steps: int) -> None:
        """Up to ``steps`` more steps (at most ``EM_MAX_ITERATIONS`` in all); stops early once, over the last
        ``EM_CHECK_EVERY`` steps, no mean or standard deviation (log-norm) moved by ``EM_TOLERANCE`` and no
        weight by that share of itself."""
        last = None
        for _ in range(min(steps, EM_MAX_ITERATIONS - self.iterations)):
            lower, upper = self._log_joint_coefficients()
            odds0 = (lower - upper) @ self.basis  # (S, M) log-odds of component 0; exp overflow: mass 0
            self._m_step(self.counts / (1 + np.exp(odds0)))
            self.iterations += 1
            if self.iterations % EM_CHECK_EVERY == 0:
                now = np.stack([self.mean0, self.mean1, np.sqrt(self.var0), np.sqrt(self.var1), self.weight1])
                if last is not None:
                    moved = np.abs(now - last)
                    moved[4] /= np.minimum(self.weight1, 1 - self.weight1)
                    if not np.any(moved >= EM_TOLERANCE):  # NaN (a failed start) is not a move
                        return
                last = now

    def log_likelihood(self) -> np.ndarray:
        """``(S,)`` log-likelihood of each start's fit, -inf where it failed."""
        lower, upper = self._log_joint_coefficients()
        joint0, joint1 = lower @ self.basis, upper @ self.basis  # (S, M)
        total = np.logaddexp(joint0, joint1)  # log of the mixture density at each group's mean
        spread1 = (self.counts * np.exp(joint1 - total)) @ self.moments[:, 3]
        # the spread inside each group lowers its likelihood by within / (2 variance) of its component
        log_likelihood = total @ self.counts - 0.5 * ((self.totals[3] - spread1) / self.var0 + spread1 / self.var1)
        return np.where(np.isfinite(log_likelihood), log_likelihood, -np.inf)

    def keep(self, start: int) -> None:
        """Drop every start but ``start``."""
        for name in ("weight1", "mean0", "mean1", "var0", "var1"):
            setattr(self, name, getattr(self, name)[start:start + 1])


@dataclass(frozen=True)
class _MixtureFit:
    """Two-component fit of centred log-norms (means are of the centred values)."""

    weights: np.ndarray  # (2,) lower, upper
    means: np.ndarray  # (2,)
    stds: np.ndarray  # (2,)
    separation: float
    bic_gain: float
    crossing: float  # centred log-norm where the upper posterior is 0.5; inf when none between the means


def _fit_mixture(values: np.ndarray) -> _MixtureFit | None:
    """Best of the EM starts on ``(N,)`` centred log-norms, with D, the BIC gain and the 0.5 crossing."""
    n = values.size
    x, counts, within = _log_norm_summary(values)
    # a component narrower than its histogram bin would be an artefact of binning
    bin_width = (x.max() - x.min()) / HISTOGRAM_BINS if n > HISTOGRAM_BINS else 0.0
    min_var = max(MIN_LOG_STD**2, bin_width**2 / 12)
    mean = float(counts @ x) / n
    one_var = max(float(counts @ (x - mean) ** 2 + within.sum()) / n, min_var)
    one_log_likelihood = -0.5 * n * (math.log(2 * math.pi * one_var) + 1)

    order = np.argsort(x)
    cumulative = np.cumsum(counts[order])
    shares = np.maximum(INITIAL_UPPER_SHARES, MIN_UPPER_TOKENS / n)
    positions = np.minimum(np.searchsorted(cumulative, n * (1 - shares)), x.size - 2)
    # a start whose component empties gives log 0, 0/0 and overflowing exp: it is flagged failed and dropped
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        em = _TwoGaussianEM(x, counts, within, x[order[positions]], min_var)
        # short runs from every start, then only the most likely one runs on to convergence
        em.run(EM_SHORT_ITERATIONS)
        likelihoods = em.log_likelihood()
        if not np.isfinite(likelihoods).any():
            return None
        em.keep(int(np.argmax(likelihoods)))
        em.run(EM_MAX_ITERATIONS)
        log_likelihood = float(em.log_likelihood()[0])
    if not math.isfinite(log_likelihood):
        return None
    weights = np.array([1 - em.weight1[0], em.weight1[0]])
    means = np.array([em.mean0[0], em.mean1[0]])
    variances = np.array([em.var0[0], em.var1[0]])
    order = np.argsort(means)
    weights, means, variances = weights[order], means[order], variances[order]
    stds = np.sqrt(variances)
    separation = float(math.sqrt(2) * (means[1] - means[0]) / math.sqrt(variances.sum()))
    bic_gain = float(2 * (log_likelihood - one_log_likelihood) - 3 * math.log(n))

    def log_odds(t: float) -> float:  # log of upper over lower weighted density at t
        return float(math.log(weights[1] / stds[1]) - 0.5 * ((t - means[1]) / stds[1]) ** 2
                     - math.log(weights[0] / stds[0]) + 0.5 * ((t - means[0]) / stds[0]) ** 2)

    # a quadratic, negative at the lower mean and positive at the upper, crosses zero once between them
    crossing, below, above = math.inf, float(means[0]), float(means[1])
    if log_odds(below) < 0 < log_odds(above):
        for _ in range(60):
            middle = 0.5 * (below + above)
            below, above = (middle, above) if log_odds(middle) < 0 else (below, middle)
        crossing = 0.5 * (below + above)
    return _MixtureFit(weights, means, stds, separation, bic_gain, crossing)


def lower_distance(fit: "_MixtureFit") -> float:
    """How many lower-component standard deviations the upper mean lies above the lower mean."""
    return float((fit.means[1] - fit.means[0]) / fit.stds[0])


def _fit_and_test(values: np.ndarray, above_already: int, n_counted: int, min_tokens: float
           ) -> tuple[_MixtureFit | None, bool, int]:
    """Fit ``(N,)`` centred log-norms and apply the tests of :func:`mixture_threshold`.

    ``above_already``: tokens left out of ``values`` above all of them; ``n_counted``: every counted
    token. Returns the fit (None if EM failed), whether it has a high-norm mode, and the tokens above
    the crossing (``above_already`` included; only those when the components are not separated).
    """
    fit = _fit_mixture(values)
    if fit is None:
        return None, False, above_already
    separated = math.isfinite(fit.crossing) and fit.bic_gain > 0 and (
        fit.separation > MIN_SEPARATION
        or (fit.separation > MIN_WIDE_SEPARATION and lower_distance(fit) > MIN_LOWER_DISTANCE)
    ) and fit.means[1] - fit.means[0] >= math.log(MIN_MODE_RATIO)
    upper_count = above_already + (int(np.count_nonzero(values > fit.crossing)) if separated else 0)
    upper_share = upper_count / n_counted
    bimodal = (separated and 0 < fit.weights[1] <= MAX_UPPER_SHARE and 0 < upper_share <= MAX_UPPER_SHARE
               and upper_count >= min_tokens)
    return fit, bool(bimodal), upper_count


def mixture_threshold(norms: np.ndarray) -> MixtureThreshold:
    """The cutoff between normal tokens and a separated minority mode of high-norm tokens.

    The paper notes the cutoff varies by model (150 for DINOv2 ViT-g). Outliers form a small mode far above
    the rest on a log scale, so a two-component Gaussian mixture is fitted to the natural-log norms by EM.
    EM starts from three hard splits, the top ``INITIAL_UPPER_SHARES`` of the tokens as the upper component;
    each runs ``EM_SHORT_ITERATIONS`` steps and the most likely one goes on to convergence (at most
    ``EM_MAX_ITERATIONS`` steps): deterministic, no random start. Above ``HISTOGRAM_BINS`` values EM runs on
    that many equal-width bins of log-norm with each bin's exact count, mean and spread, so a call on
    100 000 values costs a few milliseconds: it runs for every block and every bootstrap resample.
    The upper component is a high-norm mode (``bimodal``) when all of these hold:

    * two components fit better than one: BIC gain ``2·(LL₂ - LL₁) - 3·ln N > 0``;
    * they are separated: Ashman's ``D = sqrt(2)·(μ_up - μ_low) / sqrt(σ_low² + σ_up²) > MIN_SEPARATION``
      (a heavy-tailed single mode fits as a narrow and a wide component at one centre: ``D ≈ 0``), or
      ``D > MIN_WIDE_SEPARATION`` with the upper mean at least ``MIN_LOWER_DISTANCE`` lower-component
      standard deviations above the lower mean (a real mode widened by tokens between the modes); and
      the upper mode lies at least ``MIN_MODE_RATIO`` times above the lower one (geometric means);
    * the upper posterior crosses 0.5 between the two means (each component dominates at its own mean);
      that crossing is the cutoff, so a token between the modes goes to the side of larger posterior;
    * it is a minority: its weight and the share of tokens above the cutoff are in ``(0, MAX_UPPER_SHARE]``;
    * it holds tokens: at least ``MIN_UPPER_TOKENS`` tokens and a ``MIN_UPPER_SHARE`` share lie above the
      cutoff, so one or a few stray tokens far above a unimodal sample are never a mode.

    A few strays far out can still widen a component over a real mode. So when two components fit better
    than one but the tests fail, the fit is repeated without the ``k`` highest and ``k`` lowest tokens,
    ``k`` one fewer than the tokens a mode needs (ties kept); if that fit passes, it is the answer, the
    highest ``k`` counting as high-norm and the lowest as normal.

    Args:
        norms: Token norms of any shape, e.g. ``(B, Np)`` patches of B images; flattened. NaN and ±inf
            are ignored; zeros and negatives count as normal tokens but stay out of the fit (no log).

    Returns:
        A :class:`MixtureThreshold`: ``threshold`` the cutoff norm (``inf`` when not bimodal), ``separation``
        D, ``upper_share`` the share of counted (finite) tokens above the cutoff, and the fit's upper weight,
        count above the cutoff, log-norm means and standard deviations and BIC gain (reported whether or
        not the mode was accepted). Fewer than 4 positive values, or all equal: not bimodal.
    """
    values = np.asarray(norms, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n_counted = values.size
    values = np.log(values[values > 0])
    shift = float(values.mean()) if values.size else 0.0
    values = values - shift  # centred: the per-bin sums of squares keep their precision
    min_tokens = max(MIN_UPPER_TOKENS, MIN_UPPER_SHARE * n_counted)
    if values.size < 4 or values.max() == values.min():
        return _NOT_BIMODAL
    fit, bimodal, upper_count = _fit_and_test(values, 0, n_counted, min_tokens)
    trim = math.ceil(min_tokens) - 1  # fewer tokens than a mode holds
    if not bimodal and fit is not None and fit.bic_gain > 0 and values.size - 2 * trim >= 4:
        # a few strays far out can widen a component over a real mode (two components then always fit
        # better than one): refit without the `trim` highest and lowest tokens (ties kept); those above
        # count as high-norm, those below as normal
        low, high = np.partition(values, [trim, values.size - 1 - trim])[[trim, values.size - 1 - trim]]
        kept = values[(values >= low) & (values <= high)]
        if kept.max() > kept.min():
            trimmed = _fit_and_test(kept, int(np.count_nonzero(values > high)), n_counted, min_tokens)
            if trimmed[1]:
                fit, bimodal, upper_count = trimmed
    if fit is None:
        return _NOT_BIMODAL
    upper_share = upper_count / n_counted
    return MixtureThreshold(
        threshold=float(math.exp(fit.crossing + shift)) if bimodal else float("inf"),
        separation=fit.separation, upper_share=float(upper_share), bimodal=bool(bimodal),
        upper_weight=float(fit.weights[1]), upper_count=upper_count,
        lower_mean=float(fit.means[0] + shift), upper_mean=float(fit.means[1] + shift),
        lower_std=float(fit.stds[0]), upper_std=float(fit.stds[1]), bic_gain=fit.bic_gain)
