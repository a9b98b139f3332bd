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
    dip alone cannot call them a mode (undecided, candidate in the gap); the mixture finds two components, but over a
    flat bulk their dip stays under MIN_UNDECIDED_DIP, so the answer stays undecided, saying why. Eight such images
    are a mode by the dip alone, cut in the gap."""
    rng = np.random.default_rng(4)
    norms = np.concatenate([rng.uniform(13, 27, 192), [290.0, 380.0, 469.0, 500.0]])
    alone = metrics.dip_threshold(norms)
    assert not alone.bimodal and alone.undecided and alone.threshold == float("inf")
    assert 27 < alone.candidate < 290 and alone.upper_count == 4 and "too few tokens" in alone.reason
    fit = metrics.adaptive_threshold(norms)
    assert mixture.mixture_threshold(norms).bimodal and fit.dip < metrics.MIN_UNDECIDED_DIP
    assert fit.undecided and not fit.bimodal and "no dip" in fit.reason and "two components fit" in fit.reason
    eight = np.concatenate([rng.uniform(13, 27, (8, 192)), rng.uniform(290, 500, (8, 4))], axis=1)
    fit = metrics.dip_threshold(eight)
    assert fit.bimodal and 27 < fit.threshold < 290
    assert metrics.high_norm_fraction(eight, fit.threshold) == pytest.approx(4 / 196)


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
