"""Intervals over images: simulated coverage, too few images, constant statistics, undefined resamples.

The coverage tests simulate with 199 resamples per interval (the study uses ``RESAMPLES`` = 999) and a
fixed seed, so they are deterministic; their Monte Carlo error is about 0.006 at 1500 trials.
"""

import math

import numpy as np
import pytest

from analysis import stats
from analysis.claims import Verdict, interval_rule
from analysis.stats import MIN_IMAGES, Interval, coverages, image_bootstrap

SHARE, _, SHARE_TRUTH = stats.STUDY_CASES["outlier share, beta(2,98) per image"]
GAP, _, GAP_TRUTH = stats.STUDY_CASES["paired skewed gap, gamma(2, 0.05) - 0.05"]


def mean(c):
    return float(np.mean(c["x"]))


def test_percentile_bootstrap_undercovers_at_eight_images_and_the_chosen_interval_does_not():
    """Why the interval changed: at 8 images the percentile bootstrap of a skewed mean covers ~0.84-0.86.

    The chosen interval covers about 0.93 there (0.933 with 999 resamples in the module's table, 0.926 and
    0.933 on two seeds of this simulation): the bound sits 1.5 Monte Carlo errors below 0.93.
    """
    assert MIN_IMAGES == 8
    got = coverages(("percentile", stats.METHOD), SHARE, SHARE_TRUTH, 8, n_trials=1500, seed=2)
    assert got[stats.METHOD] >= 0.92
    assert got["percentile"] < 0.90
    assert got[stats.METHOD] - got["percentile"] > 0.04  # same samples, same resamples: a paired gap


def test_chosen_interval_covers_skewed_means_above_min_images():
    assert stats.coverage(stats.METHOD, SHARE, SHARE_TRUTH, 16, n_trials=1500, seed=2) >= 0.93
    assert stats.coverage(stats.METHOD, GAP, GAP_TRUTH, MIN_IMAGES, n_trials=1000, seed=3) >= 0.93


def test_below_min_images_no_interval_holds():
    """Why 4 images (the held-out half of 8) are too few: even the chosen interval covers ~0.86 there."""
    assert stats.coverage(stats.METHOD, SHARE, SHARE_TRUTH, 4, n_trials=600, seed=4) < 0.90


def test_too_few_images_read_as_such():
    values = np.random.default_rng(0).beta(2, 98, MIN_IMAGES - 1)
    interval = image_bootstrap({"x": values}, mean, seed=0)
    assert interval.too_few and math.isnan(interval.low) and math.isnan(interval.high)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.text(".2%") == f"{values.mean():.2%} (too few images for an interval: 7 of 8 needed)"
    assert interval_rule(interval, 0.0) is Verdict.INCONCLUSIVE
    assert not image_bootstrap({"x": np.append(values, 0.01)}, mean, seed=0).too_few
    rebuilt = Interval(interval.estimate, interval.low, interval.high, interval.n)  # e.g. read back from a table
    assert rebuilt.too_few and rebuilt.text() == f"{values.mean():.2f} (too few images for an interval: 7 of 8 needed)"


@pytest.mark.parametrize("interval, fmt, text", [
    # one image: a share measured, no interval (it printed "[nan%, nan%]" where the ends were formatted)
    (image_bootstrap({"x": np.array([0.0198])}, mean), ".2%", "1.98% (too few images for an interval: 1 of 8 needed)"),
    (Interval(0.0198, math.nan, math.nan, 1), ".2%", "1.98% (too few images for an interval: 1 of 8 needed)"),
    (stats.too_few(0.5, 3, min_images=12), ".1f", "0.5 (too few images for an interval: 3 of 12 needed)"),
    (Interval(0.4, math.nan, math.nan, 8, "not measured", 0.6), ".2f", "0.40 (no interval: 60% of resamples undefined)"),
    (Interval(0.4, math.nan, 0.5, 8), ".2f", "0.40 (no interval)"),  # one end undefined is no interval either
    (Interval(math.nan, math.nan, math.nan, 1), ".2%", "not measured"),
    (Interval(0.0198, 0.01, 0.03, 8), ".2%", "1.98% [1.00%, 3.00%]"),
])
def test_an_interval_without_ends_is_said_in_words(interval, fmt, text):
    assert interval.text(fmt) == text and "nan" not in interval.text(fmt)



@pytest.mark.parametrize("interval, text", [
    (Interval(19.7, 14.8, 28.8, 8), "19.7× [14.8×, 28.8×]"),  # a value with its interval: the unit on every number
    (Interval(3.0, 3.0, 3.0, 8, f"{stats.EVERY_EQUAL} (zero width, bootstrap over images)"),
     "3.0× [3.0×, 3.0×] (every resample equal)"),
    (stats.too_few(19.7, 4), "19.7× (too few images for an interval: 4 of 8 needed)"),  # the unit before the why
    (Interval(0.4, math.nan, math.nan, 8, "not measured", 0.6), "0.4× (no interval: 60% of resamples undefined)"),
    (Interval(math.nan, math.nan, math.nan, 0), "not measured"),  # no number, no unit
    (stats.NOT_MEASURED, "not measured"),
])
def test_a_unit_follows_each_number_never_the_parenthetical(interval, text):
    """``text(fmt, unit)`` puts the unit right after the estimate and each end: a sentence that glued "×" or
    "times" after the whole text put it after "(too few images … needed)" (issue 25)."""
    from analysis import prose

    assert interval.text(".1f", unit="×") == text
    assert interval.text(".1f", "×") == text  # positional too
    assert prose.find_problems(f"The CLS attention on them, over their area share, is {text}.") == []
    assert not interval.text(".1f", unit="×").endswith(")×")


def test_constant_statistic_gives_a_marked_zero_width_interval():
    pinned = np.zeros((MIN_IMAGES, 64), dtype=bool)
    pinned[:, [0, 7, 56, 63]] = True  # outliers at the same four positions in every image
    interval = image_bootstrap({"h": pinned}, lambda c: float(np.mean(c["h"])), seed=0)
    assert interval.low == interval.high == interval.estimate == 4 / 64
    assert interval.every_resample_equal and interval.method.startswith("every resample equal")
    assert interval.text(".2%") == "6.25% [6.25%, 6.25%] (every resample equal)"
    varied = image_bootstrap({"x": np.linspace(0, 1, MIN_IMAGES)}, mean, seed=0)
    assert not varied.every_resample_equal and "equal" not in varied.text()


def test_a_zero_width_interval_is_every_resample_equal_only_when_the_resamples_were():
    """A rebuilt interval of zero width (a table without the method) does not claim what it cannot know."""
    rebuilt = Interval(3.0, 3.0, 3.0, MIN_IMAGES)
    assert not rebuilt.every_resample_equal and rebuilt.text() == "3.00 [3.00, 3.00]"
    kept = Interval(3.0, 3.0, 3.0, MIN_IMAGES, f"{stats.EVERY_EQUAL} (zero width, bootstrap over images)")
    assert kept.every_resample_equal and kept.text(".1f") == "3.0 [3.0, 3.0] (every resample equal)"
    assert not Interval(3.0, math.nan, math.nan, 2, kept.method).text().endswith("(every resample equal)")


def test_every_resample_equal_holds_for_infinite_and_partly_undefined_constants():
    columns = {"x": np.zeros(MIN_IMAGES), "id": np.arange(MIN_IMAGES)}
    infinite = image_bootstrap(columns, lambda c: math.inf, seed=0)
    assert infinite.every_resample_equal and infinite.low == infinite.high == math.inf

    def zero_unless_image_zero_missing(c):
        return 0.0 if np.any(c["id"] == 0) else float("nan")

    dropped = image_bootstrap(columns, zero_unless_image_zero_missing, seed=0)  # undefined ones left out
    assert dropped.every_resample_equal and dropped.low == dropped.high == 0.0
    assert 0 < dropped.undefined_share < 0.5 and "left out" in dropped.method
    counted = image_bootstrap(columns, zero_unless_image_zero_missing, seed=0, undefined="low")
    assert not counted.every_resample_equal and counted.low == -math.inf  # the undefined ones count: not all equal
    nearly = image_bootstrap({"x": np.array([1.0] * (MIN_IMAGES - 1) + [1.0 + 1e-15])}, mean, seed=0)
    assert nearly.every_resample_equal  # equal to rounding
    apart = image_bootstrap({"x": np.array([1.0] * (MIN_IMAGES - 1) + [1.0 + 1e-9])}, mean, seed=0)
    assert not apart.every_resample_equal


def without_image_zero(c):
    """Undefined (nan) on every resample that leaves image 0 out: about (1 - 1/n)^n of them."""
    return float(np.mean(c["x"])) if np.any(c["id"] == 0) else float("nan")


def test_undefined_resamples_are_counted_and_reported():
    n = 12
    columns = {"x": np.linspace(0.0, 1.0, n), "id": np.arange(n)}
    dropped = image_bootstrap(columns, without_image_zero, seed=0)
    assert dropped.undefined_share == pytest.approx((1 - 1 / n) ** n, abs=0.05)
    assert math.isfinite(dropped.low) and "undefined" in dropped.method and "left out" in dropped.method
    strict = image_bootstrap(columns, without_image_zero, seed=0, max_undefined=0.2)
    assert math.isnan(strict.low) and strict.undefined_share == dropped.undefined_share
    assert "undefined" in strict.text() and "nan" not in strict.text()
    low = image_bootstrap(columns, without_image_zero, seed=0, undefined="low")
    assert low.low == -math.inf and math.isfinite(low.high) and "counted low" in low.method
    assert interval_rule(low, 0.25) is not Verdict.REPRODUCED  # no-onset resamples count against "late onset"
    assert image_bootstrap(columns, without_image_zero, seed=0, undefined="high").high == math.inf
    assert image_bootstrap({"x": columns["x"]}, mean, seed=0).undefined_share == 0.0


def test_interval_stays_constructible_positionally():
    assert Interval(0.5, 0.4, 0.6, 8).undefined_share == 0.0
    legacy = Interval(0.5, 0.4, 0.6, 8, "bootstrap over images")
    assert not legacy.too_few and not legacy.every_resample_equal and legacy.text() == "0.50 [0.40, 0.60]"
    assert stats.NOT_MEASURED.text() == "not measured" and Interval(3.0, 3.0, 3.0, 8).half_width == 0


def test_means_get_the_studentized_interval_and_other_statistics_expanded_bca():
    rng = np.random.default_rng(4)
    columns = {"attention": rng.beta(2, 98, 12) * 10, "area": rng.beta(2, 98, 12)}
    share = image_bootstrap({"x": columns["area"]}, mean, seed=0)
    ratio = image_bootstrap(columns, lambda c: float(np.mean(c["attention"]) / np.mean(c["area"])), seed=0)
    gains = image_bootstrap({"x": rng.choice([-1.0, 0.0, 1.0], 12)}, mean, seed=0)  # a lattice
    assert share.method.startswith("studentized") and ratio.method.startswith("expanded BCa")
    assert gains.method.startswith("expanded BCa")
    assert share.low < share.estimate < share.high and ratio.low < ratio.estimate < ratio.high


def test_a_discrete_mean_keeps_finite_ends_inside_its_range():
    gains = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=float)  # e.g. per-image CorLoc gain
    interval = image_bootstrap({"x": gains}, mean, seed=0)
    assert 0.0 <= interval.low < interval.estimate < interval.high <= 1.0


def test_seeded_and_n_resamples_honoured():
    calls = []

    def counted(statistic):
        def wrapped(c):
            calls.append(1)
            return statistic(c)
        return wrapped

    rng = np.random.default_rng(5)
    values = {"x": rng.lognormal(0, 0.5, 10)}
    first = image_bootstrap(values, counted(mean), seed=7, n_resamples=99)
    assert len(calls) == 1 + 99  # estimate and resamples: a mean needs no jackknife
    assert image_bootstrap(values, counted(mean), seed=7, n_resamples=99) == first
    assert image_bootstrap(values, mean, seed=8, n_resamples=99) != first
    ratio = counted(lambda c: float(np.mean(c["x"]) / np.mean(c["y"])))
    for n, jackknife in ((10, 10), (30, stats.JACKKNIFE_GROUPS)):  # each image, then groups of images
        calls.clear()
        columns = {"x": rng.lognormal(0, 0.5, n), "y": rng.lognormal(0, 0.5, n)}
        assert image_bootstrap(columns, ratio, seed=7, n_resamples=99).method.startswith("expanded BCa")
        assert len(calls) == 1 + 99 + jackknife
    calls.clear()
    image_bootstrap(values, counted(mean), seed=7, n_resamples=99, method="studentized")
    assert len(calls) == 1 + 99 + 10  # the plain studentized interval always takes the jackknife
    with pytest.raises(ValueError):
        image_bootstrap(values, mean, method="bogus")


# ---------------------------------------------------------------------------------------------
# The pieces of the intervals against hand-computed values

def test_the_bca_acceleration_is_the_skewness_of_the_jackknife_values():
    """Efron's a = Σd³ / (6 (Σd²)^1.5), d = mean - jackknife value; finite values only, 0 without spread."""
    jack = np.array([1.0, 2.0, 3.0, 10.0])  # d = 3, 2, 1, -6
    assert stats._acceleration(jack) == pytest.approx(-180 / (6 * 50 ** 1.5))
    three = np.array([1.0, 2.0, 4.0])  # d = 4/3, 1/3, -5/3
    d = three.mean() - three
    assert stats._acceleration(three) == pytest.approx(np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5))
    assert stats._acceleration(np.array([1.0, 2.0, np.nan])) == 0.0  # fewer than 3 finite values
    assert stats._acceleration(np.array([1.0, 2.0, 4.0, np.nan])) == stats._acceleration(three)
    assert stats._acceleration(np.full(5, 2.0)) == 0.0


def test_the_jackknife_leaves_out_each_image_or_interleaved_groups_of_images():
    x = np.arange(30, dtype=float) ** 1.5
    n = 12
    jackknife = stats._Jackknife({"x": x[:n]}, mean, n)
    assert np.allclose(jackknife.values(), (x[:n].sum() - x[:n]) / (n - 1))
    assert jackknife.values() is jackknife.values(per_image=True)  # computed once
    grouped = stats._Jackknife({"x": x}, mean, 30)
    groups = [np.arange(g, 30, stats.JACKKNIFE_GROUPS) for g in range(stats.JACKKNIFE_GROUPS)]  # {g, g + 25}
    assert np.allclose(grouped.values(), [np.delete(x, g).mean() for g in groups])
    assert np.allclose(grouped.values(per_image=True), (x.sum() - x) / 29)


def test_the_influence_of_a_mean_is_each_value_less_the_mean():
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.3])
    jack = (x.sum() - x) / (x.size - 1)
    assert np.allclose(stats._influence(jack), x - x.mean())
    assert stats._influence(np.array([0.1, np.nan, 0.2])) is None


def test_the_normal_quantile_and_its_expanded_version():
    from scipy.stats import t

    assert stats._normal_z(8, expanded=False) == pytest.approx(1.959964, abs=1e-6)
    assert stats._normal_z(8, expanded=True) == pytest.approx(math.sqrt(8 / 7) * t.ppf(0.975, 7))


def test_infinite_ends_are_written_as_such():
    assert Interval(0.5, 0.4, math.inf, 8).text() == "0.50 [0.40, inf]"


def test_the_too_few_interval_names_its_minimum():
    interval = stats.too_few(0.5, 3, min_images=12)
    assert interval.method == "too few images to decide (n < 12)" and interval.min_images == 12
    assert interval.too_few and math.isnan(interval.low) and math.isnan(interval.high) and interval.n == 3


def test_a_statistic_undefined_on_the_whole_sample_is_not_measured():
    interval = image_bootstrap({"x": np.zeros(MIN_IMAGES)}, lambda c: float("nan"), seed=0)
    assert math.isnan(interval.estimate) and math.isnan(interval.low) and math.isnan(interval.high)
    assert interval.n == MIN_IMAGES and interval.method == f"not measured: statistic undefined on the {MIN_IMAGES} images"
    assert interval.text() == "not measured"


def test_at_least_two_images_are_resampled_whatever_the_minimum():
    one = image_bootstrap({"x": np.array([0.5])}, mean, min_images=1)
    assert one.too_few and one.text() == "0.50 (too few images for an interval: 1 of 2 needed)"
    two = image_bootstrap({"x": np.array([0.5, 0.7])}, mean, min_images=2)
    assert not two.too_few and two.low <= 0.6 <= two.high


def test_the_defaults_seed_zero_and_the_method_says_nothing_of_undefined_resamples_when_there_are_none():
    values = {"x": np.random.default_rng(3).lognormal(0, 0.5, 10)}
    assert image_bootstrap(values, mean, n_resamples=99) == image_bootstrap(values, mean, seed=0, n_resamples=99)
    assert image_bootstrap(values, mean, n_resamples=99).method == "studentized bootstrap over images"


def test_the_most_undefined_share_is_allowed_and_a_larger_one_is_not():
    n = 12
    columns = {"x": np.linspace(0.0, 1.0, n), "id": np.arange(n)}
    dropped = image_bootstrap(columns, without_image_zero, seed=0)
    share = dropped.undefined_share
    assert dropped.method == f"expanded BCa bootstrap over images, {share:.0%} of resamples undefined (left out)"
    at = image_bootstrap(columns, without_image_zero, seed=0, max_undefined=share)
    assert math.isfinite(at.low) and math.isfinite(at.high)
    below = image_bootstrap(columns, without_image_zero, seed=0, max_undefined=share - 1e-9)
    assert math.isnan(below.low) and below.method == f"not measured, {share:.0%} of resamples undefined (left out)"
    assert below.undefined_share == share


def test_a_constant_statistic_is_every_resample_equal_whatever_undefined_says_when_none_is_undefined():
    pinned = np.zeros((MIN_IMAGES, 64), dtype=bool)
    pinned[:, :4] = True
    for undefined in stats.UNDEFINED_RULES:
        interval = image_bootstrap({"h": pinned}, lambda c: float(np.mean(c["h"])), seed=0, undefined=undefined)
        assert interval.every_resample_equal and interval.low == interval.high == 4 / 64, undefined
        assert interval.method == "every resample equal (zero width, bootstrap over images)"


@pytest.mark.parametrize("bad, message", [({"method": "bogus"}, "method must be one of"),
                                          ({"undefined": "bogus"}, "undefined must be one of")])
def test_bad_options_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        image_bootstrap({"x": np.ones(MIN_IMAGES)}, mean, **bad)


def test_quantiles_interpolate_linearly_and_keep_infinite_neighbours():
    values = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    for q in (0.0, 0.5, 0.6, 0.9, 1.0):
        assert stats._quantile(values, q, "low") == pytest.approx(np.quantile(values, q))
    assert stats._quantile(np.array([1.0, 1.0, 5.0]), 0.25, "low") == 1.0  # equal neighbours
    assert stats._quantile(np.array([1.0, math.inf]), 0.5, "low") == 1.0
    assert stats._quantile(np.array([1.0, math.inf]), 0.5, "high") == math.inf
    assert stats._quantile(np.array([-math.inf, 2.0]), 0.5, "low") == -math.inf
    assert stats._quantile(np.array([-math.inf, 2.0]), 0.5, "high") == 2.0
    assert stats._quantile(np.array([-math.inf, math.inf]), 0.5, "high") == math.inf


def test_levels_and_constants_are_counted_to_rounding_relative_to_the_values():
    assert stats._levels(np.array([0.0, 1.0, 1.0 + 1e-12, 2.0])) == 3
    assert stats._levels(np.array([1e-12, 2e-12, 3e-12])) == 3  # tiny values are still apart
    assert stats._constant(np.array([1.0, 1.0 + 1e-13])) and stats._constant(np.array([0.0, 1e-13]))
    assert stats._constant(np.array([1e6, 1e6 + 1e-7])) and not stats._constant(np.array([1e6, 1e6 + 1e-5]))
    assert not stats._constant(np.array([])) and not stats._constant(np.array([1.0, math.inf]))


def test_resamples_are_seeded_rows_of_image_indices():
    columns = {"x": np.arange(6, dtype=float)}
    index, draws = stats._resample(columns, mean, seed=3, n_resamples=50)
    assert index.shape == (50, 6) and index.min() >= 0 and index.max() <= 5
    assert np.array_equal(index, np.random.default_rng(3).integers(0, 6, size=(50, 6)))
    assert np.allclose(draws, index.mean(1))


def test_a_mean_is_recognised_from_its_resamples_and_other_statistics_are_not():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 0.5, 10)
    index, draws = stats._resample({"x": x}, mean, seed=1, n_resamples=99)
    assert np.allclose(stats._mean_influence(x.mean(), draws, index, 10), x - x.mean())
    ratio = {"x": x, "y": rng.lognormal(0, 0.5, 10)}
    r_index, r_draws = stats._resample(ratio, lambda c: float(np.mean(c["x"]) / np.mean(c["y"])), 1, 99)
    assert stats._mean_influence(float(np.mean(x) / np.mean(ratio["y"])), r_draws, r_index, 10) is None
    assert stats._mean_influence(x.mean(), draws[:10], index[:10], 10) is None  # no more resamples than images
    with_nan = draws.copy()
    with_nan[0] = np.nan
    assert stats._mean_influence(x.mean(), with_nan, index, 10) is None
    tiny = x * 1e-12  # recognised at any scale
    assert np.allclose(stats._mean_influence(tiny.mean(), draws * 1e-12, index, 10), tiny - tiny.mean())
    shifted = stats._mean_influence(x.mean() + 1e-3, draws, index, 10)  # a full-sample value off the mean
    assert shifted is None


def _bca_ends(estimate, draws, a, z):
    """Efron & Tibshirani's BCa ends, written out: bias z0 from the share below, acceleration ``a``."""
    from scipy.stats import norm

    z0 = norm.ppf((np.sum(draws < estimate) + 0.5 * np.sum(draws == estimate)) / draws.size)
    levels = [norm.cdf(z0 + (z0 + zz) / (1 - a * (z0 + zz))) for zz in (-z, z)]
    return tuple(np.quantile(np.sort(draws), levels))


def test_percentile_and_bca_ends_follow_their_definitions():
    from scipy.stats import norm

    rng = np.random.default_rng(2)
    draws = np.sort(rng.gamma(2.0, 1.0, 999))
    jack = rng.normal(0, 1, 12) ** 2
    estimate = float(np.median(draws)) + 0.1
    plain = stats._percentile_ends(estimate, draws, 12, None, bca=False, expanded=False)
    assert plain == pytest.approx(tuple(np.quantile(draws, [norm.cdf(-1.959964), norm.cdf(1.959964)])))
    z = stats._normal_z(12, expanded=True)
    wide = stats._percentile_ends(estimate, draws, 12, None, bca=False, expanded=True)
    assert wide == pytest.approx(tuple(np.quantile(draws, [norm.cdf(-z), norm.cdf(z)])))
    d = jack.mean() - jack
    a = np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5)
    bca = stats._percentile_ends(estimate, draws, 12, jack, bca=True, expanded=False)
    assert bca == pytest.approx(_bca_ends(estimate, draws, a, stats._normal_z(12, expanded=False)))
    assert stats._percentile_ends(estimate, draws, 12, jack, bca=True, expanded=True) == \
        pytest.approx(_bca_ends(estimate, draws, a, z))
    no_acceleration = stats._percentile_ends(estimate, draws, 12, None, bca=True, expanded=False)
    assert no_acceleration == pytest.approx(_bca_ends(estimate, draws, 0.0, stats._normal_z(12, expanded=False)))
    # every resample below the estimate: the bias correction is clipped at half a resample, not infinite
    above = stats._percentile_ends(draws[-1] + 1, draws, 12, None, bca=True, expanded=False)
    assert draws[-2] <= above[0] <= above[1] == draws[-1]


def test_the_studentized_interval_of_a_mean_is_the_bootstrap_t_written_out():
    """t_r = (mean_r - mean) / se_r over resamples, se = sd / sqrt(n); ends mean - t_(97.5 %) se, mean - t_(2.5 %) se.
    "auto" clips them to the range of the values."""
    rng = np.random.default_rng(6)
    x = rng.lognormal(0, 0.8, 12)
    n, seed, resamples = x.size, 4, 199
    index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    drawn = x[index]
    t_ratios = np.sort((drawn.mean(1) - x.mean()) / (drawn.std(1, ddof=1) / math.sqrt(n)))
    se = x.std(ddof=1) / math.sqrt(n)
    low, high = x.mean() - np.quantile(t_ratios, 0.975) * se, x.mean() - np.quantile(t_ratios, 0.025) * se
    plain = image_bootstrap({"x": x}, mean, seed=seed, n_resamples=resamples, method="studentized")
    assert plain.method == "studentized bootstrap over images"
    assert (plain.low, plain.high) == pytest.approx((low, high))
    auto = image_bootstrap({"x": x}, mean, seed=seed, n_resamples=resamples)
    assert auto.method == "studentized bootstrap over images"
    assert (auto.low, auto.high) == pytest.approx((max(low, x.min()), min(high, x.max())))


@pytest.mark.parametrize("method", stats.METHODS)
def test_every_method_is_the_interval_it_names(method):
    rng = np.random.default_rng(8)
    columns = {"x": rng.lognormal(0, 0.5, 12), "y": rng.lognormal(0, 0.5, 12)}

    def ratio(c):
        return float(np.mean(c["x"]) / np.mean(c["y"]))

    interval = image_bootstrap(columns, ratio, seed=0, n_resamples=199, method=method)
    named = "expanded BCa" if method == "auto" else method
    assert interval.method == f"{named} bootstrap over images"
    index, draws = stats._resample(columns, ratio, 0, 199)
    draws = np.sort(draws)
    if method in ("percentile", "expanded percentile", "BCa", "expanded BCa", "auto"):
        jack = stats._Jackknife(columns, ratio, 12).values() if "BCa" in named else None
        expected = stats._percentile_ends(interval.estimate, draws, 12, jack, bca="BCa" in named,
                                          expanded=named.startswith("expanded"))
        assert (interval.low, interval.high) == pytest.approx(expected)
    assert interval.low < interval.estimate < interval.high


def test_undefined_resamples_of_a_studentized_interval_make_the_end_they_count_towards_infinite():
    """Undefined on resamples that draw fewer than 7 distinct images of 12 (a few %), defined on every jackknife
    sample: the studentized interval leaves them out of its t-ratios, and "low" / "high" open that end."""
    n = 12
    columns = {"x": np.random.default_rng(9).lognormal(0, 0.5, n), "id": np.arange(n)}

    def needs_seven(c):
        return float(np.mean(c["x"])) if np.unique(c["id"]).size >= 7 else float("nan")

    dropped = image_bootstrap(columns, needs_seven, seed=0, method="studentized")
    assert 0.025 <= dropped.undefined_share <= 0.5
    assert dropped.method.startswith("studentized") and math.isfinite(dropped.low) and math.isfinite(dropped.high)
    low = image_bootstrap(columns, needs_seven, seed=0, method="studentized", undefined="low")
    assert low.low == -math.inf and low.high == dropped.high and "counted low" in low.method
    high = image_bootstrap(columns, needs_seven, seed=0, method="studentized", undefined="high")
    assert high.high == math.inf and high.low == dropped.low and "counted high" in high.method


def test_auto_clips_a_studentized_interval_to_the_range_of_the_values():
    """One image of 12 far above the rest: the bootstrap-t runs past both ends of the values; no mean of them can."""
    x = np.concatenate([np.random.default_rng(0).uniform(1.0, 1.3, 11), [60.0]])
    plain = image_bootstrap({"x": x}, mean, seed=0, n_resamples=199, method="studentized")
    assert plain.low < x.min() and plain.high > x.max()
    auto = image_bootstrap({"x": x}, mean, seed=0, n_resamples=199)
    assert auto.method.startswith("studentized") and (auto.low, auto.high) == pytest.approx((x.min(), x.max()))


def test_resamples_without_spread_give_the_studentized_interval_unbounded_ends():
    """Two images: half the resamples repeat one image (no spread, an infinite t), so both t-quantiles are
    infinite; the plain studentized interval says so, "auto" (a lattice of two values here) reads expanded BCa."""
    columns = {"x": np.array([0.2, 0.9])}
    plain = image_bootstrap(columns, mean, seed=0, n_resamples=199, method="studentized", min_images=2)
    assert plain.low == -math.inf and plain.high == math.inf and plain.method.startswith("studentized")
    auto = image_bootstrap(columns, mean, seed=0, n_resamples=199, min_images=2)
    assert auto.method.startswith("expanded BCa") and 0.2 <= auto.low <= auto.high <= 0.9


def test_images_to_settle_scales_the_half_width_as_one_over_root_n():
    interval = Interval(0.5, 0.4, 0.6, 10)  # half-width 0.1
    assert stats.images_to_settle(interval, 0.45) == 40  # 10 x (0.1 / 0.05)^2
    assert stats.images_to_settle(interval, 0.3) == 3  # ceil(10 x 0.25)
    assert stats.images_to_settle(interval, 0.5) is None  # on the margin: no size settles it
    assert stats.images_to_settle(Interval(0.5, 0.5, 0.5, 10), 0.4) is None  # no width
    assert stats.images_to_settle(Interval(0.5, 0.4, 0.6, 1), 0.4) is None
    assert stats.images_to_settle(stats.NOT_MEASURED, 0.4) is None
