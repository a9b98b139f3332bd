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


def test_constant_statistic_gives_a_marked_zero_width_interval():
    pinned = np.zeros((MIN_IMAGES, 64), dtype=bool)
    pinned[:, [0, 7, 56, 63]] = True  # outliers at the same four positions in every image
    interval = image_bootstrap({"h": pinned}, lambda c: float(np.mean(c["h"])), seed=0)
    assert interval.low == interval.high == interval.estimate == 4 / 64
    assert interval.every_resample_equal and interval.method.startswith("every resample equal")
    assert not image_bootstrap({"x": np.linspace(0, 1, MIN_IMAGES)}, mean, seed=0).every_resample_equal


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
