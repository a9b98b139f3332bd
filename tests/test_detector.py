"""The high-norm detector, :func:`analysis.metrics.adaptive_threshold`, against planted truth.

Seeded samples shaped like the paper's models: normal tokens log-normal around the median, outliers a
small log-normal mode far above. Every assertion is on the planted labels, so a detector that misses the
mode, splits a single mode, or moves the cutoff into a mode fails here.
"""

import numpy as np
import pytest

from analysis import metrics

#: Image counts of a pass (patches per image: 1024, ViT-g/14 at 448 px).
IMAGE_COUNTS = (8, 30, 100, 1000)
PATCHES = 1024


def dinov2_like(n_images: int, seed: int, between: float = 0.0, patches: int = PATCHES):
    """DINOv2 ViT-g-like norms: normal log-normal(log 50, 0.25), 2.4 % outliers log-normal(log 420, 0.2),
    and a ``between`` share of tokens log-uniform in [150, 300]. Returns norms and the two masks."""
    rng = np.random.default_rng(seed)
    n = n_images * patches
    norms = rng.lognormal(np.log(50), 0.25, n)
    order = rng.permutation(n)
    outlier, middle = np.zeros(n, bool), np.zeros(n, bool)
    outlier[order[: round(0.024 * n)]] = True
    middle[order[round(0.024 * n): round(0.024 * n) + round(between * n)]] = True
    norms[outlier] = rng.lognormal(np.log(420), 0.2, outlier.sum())
    norms[middle] = np.exp(rng.uniform(np.log(150), np.log(300), middle.sum()))
    return norms, outlier, middle


@pytest.mark.parametrize("n_images", IMAGE_COUNTS)
def test_dinov2_like_outliers_are_recovered_at_every_image_count(n_images):
    norms, outlier, _ = dinov2_like(n_images, seed=n_images)
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal
    assert 100 < fit.threshold < 300  # between the modes (normal median 50, outlier median 420)
    found = norms > fit.threshold
    # the modes are > 4 spreads from the cutoff: all but a handful of tokens on the planted side
    assert np.count_nonzero(found != outlier) <= 2 + 1e-4 * norms.size
    assert fit.upper_share == pytest.approx(outlier.mean(), abs=0.0005)  # ±0.05 percentage point
    assert fit.upper_share == pytest.approx(0.024, abs=0.005)  # the paper-like share, ±0.5 point
    assert fit.upper_count == np.count_nonzero(found)
    assert np.log(300) < fit.upper_mean < np.log(600) and np.log(35) < fit.lower_mean < np.log(70)


@pytest.mark.parametrize("n_images", IMAGE_COUNTS)
def test_tokens_between_the_modes_do_not_hide_the_outliers(n_images):
    """0.5 % of tokens log-uniform in [150, 300] (the old gap rule found no mode as soon as the gap
    filled). They lie closer to the outliers than to the normal tokens and count with either side: the
    share above the cutoff must lie between the planted outliers alone and outliers plus all of them
    (±0.05 point), i.e. within [-0.05, +0.55] point of the planted 2.4 %."""
    norms, outlier, middle = dinov2_like(n_images, seed=n_images, between=0.005)
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal
    assert 100 < fit.threshold < 300
    found = norms > fit.threshold
    assert found[outlier].mean() >= 0.999  # the planted outliers are found
    assert found[~outlier & ~middle].mean() <= 1e-4  # no normal token is
    assert outlier.mean() - 0.0005 <= fit.upper_share <= outlier.mean() + middle.mean() + 0.0005


@pytest.mark.parametrize("n_images", (1, 8, 100))
def test_vit_tiny_like_outliers_are_recovered_exactly(n_images):
    """ViT-Ti/16-like: 196 patches per image around 15 (σ 0.3 in log), 2 % at 560 (σ 0.05)."""
    rng = np.random.default_rng(n_images)
    n = n_images * 196
    norms = rng.lognormal(np.log(15), 0.3, n)
    planted = rng.choice(n, round(0.02 * n), replace=False)
    norms[planted] = rng.lognormal(np.log(560), 0.05, planted.size)
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal
    assert set(np.flatnonzero(norms > fit.threshold)) == set(planted)
    assert fit.upper_share == pytest.approx(planted.size / n)


UNIMODAL = {
    "log-normal σ 0.25 (registers-like)": lambda rng, n: rng.lognormal(np.log(50), 0.25, n),
    "log-normal σ 0.5": lambda rng, n: rng.lognormal(np.log(50), 0.5, n),
    "log-normal σ 0.6 (long right tail)": lambda rng, n: rng.lognormal(np.log(50), 0.6, n),
    "gamma shape 2": lambda rng, n: rng.gamma(2.0, 25.0, n),
    "Student-t (3 dof) in log": lambda rng, n: 50 * np.exp(0.25 * rng.standard_t(3, n)),
    "ex-Gaussian in log (skewed right)":
        lambda rng, n: 50 * np.exp(0.2 * rng.standard_normal(n) + rng.exponential(0.3, n)),
}


@pytest.mark.parametrize("n_images", IMAGE_COUNTS)
@pytest.mark.parametrize("family", list(UNIMODAL))
def test_a_single_mode_is_never_split(family, n_images):
    """Registers-like / DINO-like passes: one mode, light or heavy tails, at every image count."""
    norms = UNIMODAL[family](np.random.default_rng(n_images), n_images * PATCHES)
    fit = metrics.adaptive_threshold(norms)
    assert not fit.bimodal
    assert fit.threshold == float("inf")


@pytest.mark.parametrize("n_images", (1,) + IMAGE_COUNTS)
@pytest.mark.parametrize("strays", [1, 3])
def test_a_few_stray_tokens_far_above_one_mode_are_not_a_mode(strays, n_images):
    rng = np.random.default_rng(strays + n_images)
    norms = rng.lognormal(np.log(50), 0.25, n_images * PATCHES)
    norms[:strays] = 20 * np.median(norms) * rng.uniform(0.9, 1.1, strays)
    assert not metrics.adaptive_threshold(norms).bimodal


def test_three_stray_tokens_in_one_image_are_not_a_mode_but_four_outliers_are():
    """The boundary MIN_UPPER_TOKENS draws: one ViT-Ti image (196 patches) has about 4 outliers."""
    rng = np.random.default_rng(5)
    normal = rng.lognormal(np.log(15), 0.3, 196)
    assert not metrics.adaptive_threshold(np.concatenate([normal[:193], [300.0, 420.0, 510.0]])).bimodal
    fit = metrics.adaptive_threshold(np.concatenate([normal[:192], [300.0, 420.0, 510.0, 560.0]]))
    assert fit.bimodal and fit.upper_count == 4


@pytest.mark.parametrize("upper_share, bimodal", [(0.15, True), (0.4, False)])
def test_only_a_minority_mode_is_an_outlier_mode(upper_share, bimodal):
    rng = np.random.default_rng(7)
    n = 30 * PATCHES
    norms = rng.lognormal(np.log(50), 0.25, n)
    upper = rng.random(n) < upper_share
    norms[upper] = rng.lognormal(np.log(420), 0.2, upper.sum())
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal is bimodal
    assert fit.separation > metrics.MIN_SEPARATION  # well separated: only the share decides
    assert fit.upper_weight == pytest.approx(upper.mean(), abs=0.01)


@pytest.mark.parametrize("stray_norm", [420.0 * 1000, 50.0 / 1000], ids=["above", "below"])
def test_a_few_strays_far_out_do_not_hide_a_real_mode(stray_norm):
    """One image: 25 outliers, and 3 tokens 1000x beyond the outliers (or below the normal ones) that a
    single wide component would swallow with the outliers; the refit without them finds the mode."""
    norms, outlier, _ = dinov2_like(1, seed=0)
    stray = np.flatnonzero(~outlier)[:3]
    norms[stray] = stray_norm
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal and 100 < fit.threshold < 300
    expected = outlier | (np.isin(np.arange(norms.size), stray) & (stray_norm > 300))
    assert np.array_equal(norms > fit.threshold, expected)
    assert fit.upper_count == expected.sum()


def test_a_minority_too_small_to_matter_is_not_a_mode_but_a_small_one_is():
    """MIN_UPPER_SHARE: 50 tokens at 20x the median in 100 images (0.05 %) are strays; 0.2 % are a mode."""
    rng = np.random.default_rng(8)
    norms = rng.lognormal(np.log(50), 0.25, 100 * PATCHES)
    norms[:50] = rng.lognormal(np.log(1000), 0.1, 50)
    assert not metrics.adaptive_threshold(norms).bimodal
    norms[:205] = rng.lognormal(np.log(1000), 0.1, 205)
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal and fit.upper_count == 205


@pytest.mark.parametrize("n_images", (8, 100))
def test_a_small_mode_close_to_the_bulk_is_found(n_images):
    """0.5 % of tokens at 2.5x the median (D ≈ 4): only a start with a small upper share reaches it."""
    rng = np.random.default_rng(n_images)
    n = n_images * PATCHES
    norms = rng.lognormal(np.log(50), 0.25, n)
    planted = rng.random(n) < 0.005
    norms[planted] = rng.lognormal(np.log(125), 0.2, planted.sum())
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal
    assert fit.upper_share == pytest.approx(planted.mean(), abs=0.0015)  # the modes overlap a little
    assert fit.upper_mean == pytest.approx(np.log(125), abs=0.05)


def test_the_histogram_em_matches_a_full_gaussian_mixture_fit():
    """On 30 images with overlapping modes (2 % at 3x the median) the binned EM lands where scikit-learn's
    GaussianMixture on every value does."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(2)
    n = 30 * PATCHES
    norms = rng.lognormal(np.log(50), 0.25, n)
    planted = rng.random(n) < 0.02
    norms[planted] = rng.lognormal(np.log(150), 0.2, planted.sum())
    fit = metrics.adaptive_threshold(norms)
    log_norms = np.log(norms)[:, None]
    reference = GaussianMixture(2, means_init=[[np.log(50)], [np.log(150)]], tol=1e-8, max_iter=1000,
                                random_state=0).fit(log_norms)
    upper = int(np.argmax(reference.means_[:, 0]))
    assert fit.upper_weight == pytest.approx(reference.weights_[upper], abs=1e-3)
    assert fit.upper_mean == pytest.approx(reference.means_[upper, 0], abs=2e-3)
    assert fit.lower_mean == pytest.approx(reference.means_[1 - upper, 0], abs=2e-3)
    assert fit.upper_std == pytest.approx(np.sqrt(reference.covariances_[upper, 0, 0]), abs=2e-3)
    assert fit.lower_std == pytest.approx(np.sqrt(reference.covariances_[1 - upper, 0, 0]), abs=2e-3)
    one = GaussianMixture(1).fit(log_norms)
    assert fit.bic_gain == pytest.approx(one.bic(log_norms) - reference.bic(log_norms), rel=1e-3)


def test_zero_norms_count_as_normal_and_leave_the_fit_alone():
    norms, outlier, _ = dinov2_like(8, seed=1)
    zero = (np.arange(norms.size) % 97 == 0) & ~outlier  # 1 % of the normal tokens
    norms[zero] = 0.0
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal and 100 < fit.threshold < 300
    assert fit.upper_share == pytest.approx(outlier.mean(), abs=0.0005)  # zeros are in the denominator


@pytest.mark.parametrize("norms", [
    np.array([]), np.array([3.0]), np.array([1.0, 2.0, 100.0]), np.full(500, 7.0), np.zeros(1000),
    np.full(10, np.nan), np.array([np.inf, 1.0, 1.0, 1.0]),
], ids=["empty", "one", "three", "all-equal", "zeros", "nan", "inf"])
def test_degenerate_inputs_are_not_bimodal(norms):
    fit = metrics.adaptive_threshold(norms)
    assert not fit.bimodal and fit.threshold == float("inf")


def test_the_fit_is_deterministic_order_free_and_scale_equivariant():
    norms, _, _ = dinov2_like(30, seed=11, between=0.005)
    fit = metrics.adaptive_threshold(norms)
    assert metrics.adaptive_threshold(norms) == fit
    shuffled = metrics.adaptive_threshold(np.random.default_rng(0).permutation(norms).reshape(30, PATCHES))
    assert shuffled.threshold == pytest.approx(fit.threshold, rel=1e-9)
    assert shuffled.upper_count == fit.upper_count
    scaled = metrics.adaptive_threshold(norms * 3.0)
    assert scaled.threshold == pytest.approx(3.0 * fit.threshold, rel=1e-6)
    assert scaled.separation == pytest.approx(fit.separation, rel=1e-6)


def test_real_vit_tiny_outliers_are_found_in_the_late_blocks_only(tiny_features):
    """The shipped ViT-Ti/16 on 8 photos: ~2 % of patches at ~560 vs a median ~15 in the last block, from
    block 7 on (../shared/weights/README); blocks 0-5 hold one mode. Block 6, where the future outliers
    first stand apart (at 14-28 over a bulk ending near 13), is left to the detector."""
    patch = tiny_features.norms[tiny_features.norms.kind == "patch"]
    per_block = {layer: group.norm.to_numpy() for layer, group in patch.groupby("block")}
    for layer in range(6):
        assert not metrics.adaptive_threshold(per_block[layer]).bimodal, layer
    for layer in range(7, 12):
        assert metrics.adaptive_threshold(per_block[layer]).bimodal, layer
    last = per_block[11]
    fit = metrics.adaptive_threshold(last)
    high = last > fit.threshold
    assert 0.01 <= fit.upper_share <= 0.04
    assert np.array_equal(high, last > 150)  # the same tokens as the paper's fixed cutoff
    assert 30 < fit.threshold < 150
    assert 400 <= np.median(last[high]) <= 700 and 10 <= np.median(last[~high]) <= 25
    assert fit.separation > 2 * metrics.MIN_SEPARATION


def _between_widened(seed: int = 0) -> tuple[np.ndarray, int]:
    """A twin's block: a tight bulk (log sigma 0.1), 4 outliers per image at ~30x (sigma 0.2) and 1 token per image
    between the modes (3-8x): 12 images x 196 patches. Returns the norms and the planted outlier count."""
    rng = np.random.default_rng(seed)
    images, patches = 12, 196
    bulk = rng.lognormal(np.log(10), 0.1, (images, patches))
    bulk[:, :4] = 10 * rng.lognormal(np.log(30), 0.2, (images, 4))
    bulk[:, 4] = 10 * np.exp(rng.uniform(np.log(3), np.log(8), images))
    bulk[:, 5] *= 1.8  # and one just above the bulk, as a capped native outlier leaves it
    return bulk, 4 * images


@pytest.mark.parametrize("seed", range(4))
def test_a_mode_widened_by_tokens_between_the_modes_is_found(seed):
    """Ashman's D of these samples falls around 3 (2.97 for seed 3): the wide route must find every one."""
    norms, planted = _between_widened(seed)
    fit = metrics.adaptive_threshold(norms)
    assert fit.bimodal and fit.separation < 3.2
    assert (norms[:, :4] > fit.threshold).all()  # every outlier counted
    assert int((norms > fit.threshold).sum()) <= planted + 26  # beside them the tokens between, little else


@pytest.mark.parametrize("share", [0.01, 0.03, 0.1])
def test_a_power_law_tail_over_a_tight_bulk_is_not_a_mode(share):
    rng = np.random.default_rng(1)
    n = 100_000
    bulk = rng.lognormal(np.log(20), 0.1, int(n * (1 - share)))
    tail = 26 * (1 + rng.pareto(1.0, int(n * share)))  # a continuum from 1.3x the median far out
    assert not metrics.adaptive_threshold(np.concatenate([bulk, tail])).bimodal


def test_a_group_only_slightly_longer_than_a_tight_bulk_is_not_the_artifact():
    """DINO-like: every norm below 100, a tight bulk at 35 and 10 % of tokens at 1.5x: D is large, the ratio small."""
    rng = np.random.default_rng(4)
    norms = rng.lognormal(np.log(35), 0.05, (12, 784))
    norms[:, :78] *= 1.5
    assert norms.max() < 100
    assert not metrics.adaptive_threshold(norms).bimodal
