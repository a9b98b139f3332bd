"""Metrics against hand-computed or planted truth."""

import math

import numpy as np
import pytest
import torch

from analysis import metrics, mixture


def test_high_norm_share_is_strictly_above_threshold():
    assert metrics.high_norm_fraction(np.array([149.0, 150.0, 150.5, 600.0]), 150) == 0.5


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_threshold_must_be_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        metrics.high_norm_fraction(np.ones(3), bad)


def planted_norms(n=5000, share=0.02, seed=0):
    rng = np.random.default_rng(seed)
    norms = rng.lognormal(mean=np.log(20), sigma=0.15, size=n)
    outliers = rng.choice(n, int(n * share), replace=False)
    norms[outliers] = rng.lognormal(mean=np.log(500), sigma=0.1, size=outliers.size)
    return norms, outliers


def test_adaptive_threshold_recovers_planted_outliers():
    norms, outliers = planted_norms()
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal
    assert fit.upper_share == pytest.approx(0.02)
    found = np.flatnonzero(norms > fit.threshold)
    assert set(found) == set(outliers)
    assert norms[~np.isin(np.arange(norms.size), outliers)].max() < fit.threshold < norms[outliers].min()


def test_adaptive_threshold_finds_four_outliers_in_one_image_and_in_eight():
    """One image of a ViT-Ti: 192 patches at 13-27 and 4 corner outliers at 290-500. Four tokens stand apart: the
    dip alone cannot call them a mode (undecided, candidate in the gap); the mixture finds two components and the
    density dips in their trough, but 196 norms are fewer than the MIN_MIXTURE_TOKENS on which that dip's floor was
    set, so the answer stays undecided, saying why. Eight such images are a mode by the dip alone, cut in the gap."""
    rng = np.random.default_rng(4)
    norms = np.concatenate([rng.uniform(13, 27, 192), [290.0, 380.0, 469.0, 500.0]])
    alone = metrics.dip_threshold(norms)
    assert not alone.bimodal and alone.undecided and alone.threshold == float("inf")
    assert 27 < alone.candidate < 290 and alone.upper_count == 4 and "too few tokens" in alone.reason
    two = mixture.mixture_threshold(norms)
    assert metrics.trough_dip(norms, math.exp(two.lower_mean), math.exp(two.upper_mean)) >= metrics.MIN_MIXTURE_DIP
    fit = metrics.adaptive_threshold(norms)
    assert fit.undecided and not fit.bimodal and "two components fit" in fit.reason
    assert f"196 norms are fewer than the {metrics.MIN_MIXTURE_TOKENS}" in fit.reason
    eight = np.concatenate([rng.uniform(13, 27, (8, 192)), rng.uniform(290, 500, (8, 4))], axis=1)
    fit = metrics.dip_threshold(eight)
    assert fit.bimodal and 27 < fit.threshold < 290
    assert metrics.high_norm_fraction(eight, fit.threshold) == pytest.approx(4 / 196)


def test_a_mixture_mode_with_a_dip_in_its_trough_is_a_mode_from_the_family_size_up():
    """Eight images (1568 norms, the development family's smallest sample) whose 4 outliers a picture spread over
    3-30x the median: the dip reading alone cannot call them, the mixture with the dip in its trough does; the same
    tokens one image short are undecided."""
    rng = np.random.default_rng(0)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        norms = rng.lognormal(np.log(20), 0.25, (8, 196))
        norms[:, :3] = 20 * np.exp(rng.uniform(np.log(3), np.log(30), (8, 3)))
        fit = metrics.adaptive_threshold(norms)
        if fit.bimodal and not metrics.dip_threshold(norms).bimodal:
            break
    else:
        pytest.fail("no sample where the mixture's route decides")
    assert fit.dip >= metrics.MIN_MIXTURE_DIP and "two components" in fit.reason
    assert fit.dip == pytest.approx(metrics.trough_dip(norms, math.exp(fit.lower_mean), math.exp(fit.upper_mean)))
    short = metrics.adaptive_threshold(norms[:7])
    assert not short.bimodal
def test_a_small_mixture_mode_without_a_dip_in_its_trough_is_undecided():
    """8 images: 12 tokens spread log-uniformly over 3-11x the median and 10 between the modes (1.8-3x) fill the
    trough: the mixture fits two components, but its trough's dip stays under MIN_MIXTURE_DIP, and with fewer than
    MIN_POWER_TOKENS tokens a dip could not show anyway: undecided, saying why (not "no mode")."""
    rng = np.random.default_rng(3)
    norms = rng.lognormal(np.log(20), 0.2, (8, 196))
    chosen = rng.choice(norms.size, 22, replace=False)
    norms.flat[chosen[:12]] = 20 * np.exp(rng.uniform(np.log(3), np.log(11), 12))
    norms.flat[chosen[12:]] = 20 * np.exp(rng.uniform(np.log(1.8), np.log(3), 10))
    two = mixture.mixture_threshold(norms)
    assert two.bimodal and two.upper_count < metrics.MIN_POWER_TOKENS
    assert metrics.trough_dip(norms, math.exp(two.lower_mean), math.exp(two.upper_mean)) < metrics.MIN_MIXTURE_DIP
    fit = metrics.adaptive_threshold(norms)
    assert fit.undecided and not fit.bimodal and fit.threshold == math.inf
    assert "two components fit" in fit.reason and "no dip" in fit.reason


def test_adaptive_threshold_finds_nothing_in_a_unimodal_distribution():
    rng = np.random.default_rng(1)
    fit = metrics.adaptive_threshold(rng.lognormal(np.log(20), 0.3, 5000))
    assert not fit.bimodal
    assert fit.threshold == float("inf")


def test_adaptive_threshold_finds_nothing_in_a_small_unimodal_sample():
    """196 tokens of one mode can split into two tight groups; they are not outliers."""
    rng = np.random.default_rng(3)
    for seed in range(20):
        sample = np.random.default_rng(seed).normal(6.2, 0.5, 196)
        assert not metrics.adaptive_threshold(sample).bimodal, seed


def test_adaptive_threshold_rejects_a_majority_upper_mode():
    norms = np.concatenate([np.full(400, 10.0), np.full(600, 300.0)]) * np.linspace(0.99, 1.01, 1000)
    assert not metrics.adaptive_threshold(norms).bimodal


def test_neighbour_cosine_hand_computed_on_a_2x3_grid():
    # unit vectors on a 2x3 grid; x = (1, 0), y = (0, 1)
    x, y = [1.0, 0.0], [0.0, 1.0]
    grid = torch.tensor([[[x, x, y], [x, y, y]]])  # (1, 2, 3, 2)
    result = metrics.neighbour_cosine(grid)[0]
    # (0,0): right x, down x -> (1+1)/2 ; (0,1): left x, right y, down y -> (1+0+0)/3
    # (0,2): left x, down y -> (0+1)/2 ; (1,0): up x, right y -> (1+0)/2
    # (1,1): up x, left x, right y -> (0+0+1)/3 ; (1,2): up y, left y -> (1+1)/2
    expected = [[1.0, 1 / 3, 0.5], [0.5, 1 / 3, 1.0]]
    assert [row for row in result.tolist()] == [pytest.approx(row) for row in expected]


def test_neighbour_cosine_ignores_scale():
    grid = torch.randn(2, 4, 5, 8)
    scaled = grid * torch.rand(2, 4, 5, 1).add(0.1) * 100
    assert torch.allclose(metrics.neighbour_cosine(grid), metrics.neighbour_cosine(scaled), atol=1e-5)


def test_attention_share():
    attention = np.array([0.1, 0.6, 0.2, 0.1])
    mask = np.array([False, True, False, True])
    assert metrics.attention_share(attention, mask) == pytest.approx(0.7)


def test_separation_auc_perfect_and_undefined():
    scores = np.array([0.1, 0.2, 0.9, 0.8])
    assert metrics.separation_auc(scores, np.array([0, 0, 1, 1])) == 1.0
    assert math.isnan(metrics.separation_auc(scores, np.zeros(4)))



def test_high_norm_share_takes_any_positive_threshold_and_an_empty_array():
    assert metrics.high_norm_fraction(np.array([0.2, 0.6, 0.9, 1.5]), 0.5) == 0.75
    assert metrics.high_norm_fraction(np.array([]), 150) == 0.0


def test_attention_share_normalises_by_the_total_and_is_zero_without_attention():
    assert metrics.attention_share(np.array([1, 3]), np.array([True, False])) == pytest.approx(0.25)
    assert metrics.attention_share(np.zeros(3), np.array([True, False, True])) == 0.0


def test_neighbour_cosine_is_the_mean_over_the_existing_grid_neighbours():
    """Against the definition written out, on grids of 3 and more rows (every patch type: corner, edge, inside)."""
    grid = torch.randn(2, 4, 5, 8)
    unit = torch.nn.functional.normalize(grid, dim=-1)
    expected = torch.zeros(2, 4, 5)
    for i in range(4):
        for j in range(5):
            around = [(i + di, j + dj) for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)) if 0 <= i + di < 4 and 0 <= j + dj < 5]
            expected[:, i, j] = torch.stack([(unit[:, i, j] * unit[:, a, b]).sum(-1) for a, b in around]).mean(0)
    assert torch.allclose(metrics.neighbour_cosine(grid), expected, atol=1e-6)
    single = metrics.neighbour_cosine(torch.randn(1, 1, 1, 4))  # no neighbour at all: 0, not a division by zero
    assert single.tolist() == [[[0.0]]]


def test_separation_auc_is_undefined_with_only_positives():
    assert math.isnan(metrics.separation_auc(np.array([0.1, 0.2]), np.ones(2)))
    assert metrics.separation_auc(np.array([0.1, 0.9, 0.4]), np.array([0, 1, 0])) == 1.0


def test_image_medians_count_only_finite_positive_norms_of_each_image():
    norms = np.array([[1.0, 2.0, 3.0, np.nan], [0.0, -1.0, 4.0, 6.0], [np.nan, 0.0, np.inf, -2.0]])
    medians = metrics.image_medians(norms)
    assert medians.shape == (3, 1)
    assert medians[0, 0] == 2.0 and medians[1, 0] == 5.0  # NaN, zeros and negatives left out; 4 and 6 → 5
    assert np.isnan(medians[2, 0])  # no valid norm at all
    assert metrics.image_medians(np.ones((2, 3, 5)) * np.arange(1, 7).reshape(2, 3, 1)).ravel().tolist() == [
        1, 2, 3, 4, 5, 6]  # (..., Np): one median per image, every leading axis flattened


def test_the_trough_dip_is_read_only_between_the_two_norms_given():
    """A planted mode at 8x the median with an empty trough below it: between the bulk and the mode the dip is large,
    above the mode's centre only a ripple, above its top 0, and a range that is not one (low >= high) reads 0."""
    rng = np.random.default_rng(0)
    norms = rng.lognormal(np.log(20), 0.15, (12, 196))
    norms[:, :6] = rng.lognormal(np.log(160), 0.1, (12, 6))
    assert metrics.trough_dip(norms, 25.0, 160.0) >= metrics.MIN_DIP
    assert metrics.trough_dip(norms, 20.0, 160.0) == pytest.approx(metrics.dip_threshold(norms).dip)
    assert metrics.trough_dip(norms, 200.0, 10_000.0) < metrics.MIN_UNDECIDED_DIP  # a ripple in the mode, no trough
    assert metrics.trough_dip(norms, norms.max(), 10_000.0) == 0.0  # no group starts up there
    assert metrics.trough_dip(norms, 160.0, 25.0) == 0.0
    assert metrics.trough_dip(np.full((2, 10), 5.0), 1.0, 10.0) == 0.0  # every norm equal


def test_whole_number_norms_make_no_trough_of_their_lattice():
    """Norms rounded to integers at a median of 5, with a power-law tail (10 % of the tokens from 1.3x the median,
    index 1: unimodal): between the few integers above the median, narrow bins are empty for want of an integer in
    them, and read as troughs the tail's integers became "modes" or "undecided" in every one of 10 seeds. Binned at
    least LATTICE_STEPS integers wide, none; a planted 5x mode on the same lattice is still found."""
    rng = np.random.default_rng(0)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        logs = np.log(5) + 0.15 * rng.standard_normal((8, 196))
        tail = rng.random(logs.shape) < 0.1
        logs[tail] = np.log(5 * 1.3) + rng.exponential(1.0, tail.sum())
        fit = metrics.adaptive_threshold(np.maximum(np.round(np.exp(logs)), 1))
        assert not fit.bimodal and not fit.undecided, (seed, fit.reason)
        bulk = np.exp(np.log(20) + 0.15 * rng.standard_normal((8, 196)))
        bulk[:, :4] *= 5
        assert metrics.adaptive_threshold(np.round(bulk)).bimodal
    assert metrics._lattice_width(np.array([1.0, 2.5]), 0.0) == 0.0  # not whole numbers: no floor
    assert metrics._lattice_width(np.array([2.0, 7.0]), math.log(4)) == pytest.approx(math.log(2))


def test_the_within_image_test_counts_the_share_far_above_each_images_median():
    """Tokens above a cutoff: they count as outliers within images when at least half of them lie MIN_MODE_RATIO
    or more above their own image's median. Hand-built: 3 images of 10 norms, median 10 each."""
    images = np.full((3, 10), 10.0)
    images[0, 0] = images[1, 0] = 30.0  # 3x their image's median: far
    images[2, :2] = 20.0  # 2x: above the cutoff, not far
    assert metrics._within_images(images, 15.0)  # 2 of 4 far: half
    images[1, 0] = 20.0
    assert not metrics._within_images(images, 15.0)  # 1 of 4 far
    one = np.array([[1.0] * 5 + [2.0] * 5])  # one image: nothing to compare across images
    assert metrics._within_images(one, 1.5) and metrics._within_images(one.ravel(), 1.5)
