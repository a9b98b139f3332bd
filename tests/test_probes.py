"""Probes recover planted information and fail where none was planted; labelled sources."""

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import images, probes


def planted_classes(n_per_class=40, n_classes=5, dim=10, separation=4.0, seed=0):
    """Tokens ``(n, dim)`` around one random mean per class, and their labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.normal(size=(n_classes, dim)) * separation
    return means[labels] + rng.normal(size=(labels.size, dim)), labels


def objective(logits, labels, classes, weight, n):
    """Mean cross-entropy + ||W||² / (2n) (C = 1), computed here in float64, independent of both fits."""
    logits = logits - logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -log_p[np.arange(n), np.searchsorted(classes, labels)].mean() + (weight**2).sum() / (2 * n)


def test_planted_classes_are_recovered_held_out_and_noise_is_at_chance():
    features, labels = planted_classes(separation=8.0)
    labels = np.array(["cat", "dog", "emu", "fox", "gnu"])[labels]  # class labels may be strings
    noise = np.random.default_rng(1).normal(size=features.shape)
    fit, held_out = probes.split_images(len(labels), seed=0)
    correct = probes.global_information({"planted": features, "noise": noise}, labels, fit, held_out)
    assert correct["planted"].shape == correct["noise"].shape == (len(held_out),)
    assert correct["planted"].all()
    assert correct["noise"].mean() < 0.4  # chance is 0.2; 100 held-out images: 0.4 is five standard errors


def test_position_probe_places_tokens_that_carry_their_position_and_not_noise():
    n_images, grid, dim = 20, 4, 24
    rng = np.random.default_rng(0)
    code = np.eye(grid * grid, dim) * 6  # position i: a bump along axis i
    tokens = code[None] + rng.normal(size=(n_images, grid * grid, dim))
    pixels = rng.normal(size=(n_images, grid * grid, 12))
    fit, held_out = probes.split_images(n_images, seed=0)
    local = probes.local_information(tokens, pixels, fit, held_out, grid)
    assert local["position_correct"].shape == local["pixel_error"].shape == (len(held_out), grid * grid)
    assert local["position_correct"].all()
    noise = probes.local_information(rng.normal(size=tokens.shape), pixels, fit, held_out, grid)
    assert noise["position_correct"].mean() < 0.2  # chance is 1/16 over 160 held-out tokens


def test_positions_absent_from_the_fit_sample_are_never_predicted():
    n_images, n_patches = 4, 16
    tokens = np.random.default_rng(0).normal(size=(n_images, n_patches, 8)) + np.eye(n_patches, 8)[None] * 5
    pixels = np.zeros((n_images, n_patches, 3))
    fit, held_out = np.array([0, 1]), np.array([2, 3])
    local = probes.local_information(tokens, pixels, fit, held_out, 4, max_fit_tokens=10)  # ≤ 10 of 16 positions
    assert local["position_correct"].shape == (2, n_patches) and 0 < local["position_correct"].sum() <= 2 * 10
    probe = probes.fit_softmax(np.eye(3), np.array([7, 3, 11]))  # arbitrary integer labels
    assert probe.classes.tolist() == [3, 7, 11] and probe.predict(np.eye(3) * 5).tolist() == [7, 3, 11]
    with pytest.raises(ValueError, match="two classes"):
        probes.fit_softmax(np.eye(3), np.array([1, 1, 1]))


@pytest.mark.parametrize("n_classes", [2, 8])
def test_softmax_fit_agrees_with_scikit_learn_logistic_regression(n_classes):
    """Same standardisation, same penalty (C = 1): the same optimum, run to convergence on both sides."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = planted_classes(n_per_class=600 // n_classes, n_classes=n_classes, dim=20, separation=0.6)
    features = features * np.linspace(0.1, 10, 20) + 3  # uneven scales and offsets: standardisation matters
    scaler = StandardScaler().fit(features)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(scaler.transform(features), labels)
    probe = probes.fit_softmax(features, labels)
    reference_logits = reference.decision_function(scaler.transform(features)).reshape(len(labels), -1)
    if n_classes == 2:  # one logistic output: the logit of class 1 against 0
        reference_logits = np.concatenate([np.zeros_like(reference_logits), reference_logits], 1)
    expected = objective(reference_logits, labels, reference.classes_, reference.coef_, len(labels))
    fitted = objective(probe.logits(features), labels, probe.classes, probe.weight, len(labels))
    assert fitted == pytest.approx(expected, rel=1e-4)
    assert (probe.predict(features) == reference.predict(scaler.transform(features))).mean() >= 0.99
    assert 0.5 < (probe.predict(features) == labels).mean() < 1.0  # overlapping classes: a finite optimum
    assert np.array_equal(probe.weight, probes.fit_softmax(features, labels).weight)  # deterministic


@pytest.mark.parametrize("n_classes, gap", [(10, 1e-5), (2, 1e-4)])
def test_a_nearly_collinear_pair_of_channels_still_reaches_scikit_learns_optimum(n_classes, gap):
    """One channel a copy of another plus noise of size ``gap``: a singular value ~1e-5 of the largest, kept by
    the whitening, whose penalty would dominate its curvature if the coordinates were not damped (plain
    whitened coordinates stopped far above the optimum here, and at zero weights, i.e. chance, on other draws)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = planted_classes(n_per_class=400 // n_classes, n_classes=n_classes, dim=16, separation=0.5)
    features[:, 1] = features[:, 0] + gap * np.random.default_rng(3).normal(size=len(features))
    scaler = StandardScaler().fit(features)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(scaler.transform(features), labels)
    reference_logits = reference.decision_function(scaler.transform(features)).reshape(len(labels), -1)
    if n_classes == 2:
        reference_logits = np.concatenate([np.zeros_like(reference_logits), reference_logits], 1)
    probe = probes.fit_softmax(features, labels)
    fitted = objective(probe.logits(features), labels, probe.classes, probe.weight, len(labels))
    expected = objective(reference_logits, labels, reference.classes_, reference.coef_, len(labels))
    assert fitted == pytest.approx(expected, rel=1e-3) and fitted < np.log(n_classes) - 0.05  # not chance
    assert (probe.predict(features) == labels).mean() > 1.5 / n_classes


def test_zero_weights_that_are_the_optimum_are_a_fit_and_a_stalled_fit_is_refused(monkeypatch):
    constant = np.ones((60, 5))  # tokens that say nothing; balanced labels: the optimum is zero weights
    for n_classes in (2, 3):
        probe = probes.fit_softmax(constant, np.arange(60) % n_classes)
        assert np.abs(probe.weight).max() < 1e-5 and np.abs(probe.bias).max() < 1e-5
    features, labels = planted_classes(n_per_class=40, n_classes=5, dim=10, separation=2.0)
    monkeypatch.setattr(torch.optim.LBFGS, "step", lambda self, closure: None)  # an optimiser that never moves
    with pytest.raises(probes.ProbeFitError, match="no progress"):
        probes.fit_softmax(features, labels)


def test_a_fit_stopped_before_its_tolerance_warns(monkeypatch):
    features, labels = planted_classes(n_per_class=40, n_classes=5, dim=10, separation=0.6)
    monkeypatch.setattr(probes, "MAX_ITERATIONS", 2)  # two L-BFGS iterations cannot reach 1e-3 of the start
    with pytest.warns(RuntimeWarning, match="above the tolerance"):
        probes.fit_softmax(features, labels)


def test_pixel_probe_is_scikit_learn_ridge_and_reconstructs_linear_pixels():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(400, 12))
    tokens = pixels @ rng.normal(size=(16, 12)).T * np.linspace(0.5, 5, 16) + 1
    mean, scale, weight, bias = probes.fit_ridge(tokens[:300], pixels[:300])
    reconstructed = (tokens[300:] - mean) / scale @ weight + bias
    reference = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(tokens[:300], pixels[:300])
    np.testing.assert_allclose(reconstructed, reference.predict(tokens[300:]), rtol=1e-8, atol=1e-10)
    # through local_information: 10 images of 40 patches, pixels a linear function of the tokens
    grid_tokens, grid_pixels = tokens.reshape(10, 40, 16), pixels.reshape(10, 40, 12)
    fit, held_out = probes.split_images(10, seed=0)
    error = probes.local_information(grid_tokens, grid_pixels, fit, held_out, 8)["pixel_error"]
    scrambled = probes.local_information(rng.normal(size=grid_tokens.shape), grid_pixels, fit, held_out, 8)
    typical = np.linalg.norm(grid_pixels, axis=-1).mean()  # the error of predicting 0
    assert error.mean() < 0.1 * typical and scrambled["pixel_error"].mean() > 0.9 * typical


def test_patch_pixels_order_matches_the_token_grid():
    image = np.arange(3 * 4 * 6).reshape(1, 3, 4, 6).astype(float)  # 2x3 grid of 2x2 patches
    patches = probes.patch_pixels(image, 2)
    assert patches.shape == (1, 6, 12)
    # patch (row 1, col 2) = token 5: channel 0 pixels at rows 2-3, cols 4-5
    assert patches[0, 5, :4].tolist() == [image[0, 0, 2, 4], image[0, 0, 2, 5], image[0, 0, 3, 4], image[0, 0, 3, 5]]


def test_digits_are_a_balanced_labelled_source():
    records = images.list_labelled_images("digits", per_class=3, seed=0)
    labels = [r.label for r in records]
    assert sorted(set(labels)) == [str(d) for d in range(10)] and all(labels.count(str(d)) == 3 for d in range(10))
    assert records[0].load().size == (64, 64)


def test_folder_labels_come_from_sub_folders(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (32, 32)).save(tmp_path / label / "a.png")
    records = images.list_labelled_images(tmp_path)
    assert [(r.image_id, r.label) for r in records] == [("cat/a", "cat"), ("dog/a", "dog")]
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (32, 32)).save(flat / "x.png")
    with pytest.raises(images.ImageError, match="no class sub-folders"):
        images.list_labelled_images(flat)


def test_the_probe_benchmark_reads_both_fits_objectives_on_one_scale():
    from analysis import bench

    tokens, labels = planted_classes(n_per_class=8, n_classes=8, dim=8, separation=1.0)
    mean, scale = tokens.mean(0), tokens.std(0)
    # zero weights: every class has probability 1/8, so the objective is log 8 exactly
    zero = bench._softmax_objective(tokens, labels, mean, scale, np.zeros((8, 8)), np.zeros(8))
    assert zero == pytest.approx(np.log(8))
    # a weight of 1 on the true class's channel for one-hot tokens: cross-entropy log(e + 7) - 1, penalty 8 / (2 * 8)
    one_hot = np.eye(8)
    assert bench._softmax_objective(one_hot, np.arange(8), 0.0, 1.0, np.eye(8), np.zeros(8)) == pytest.approx(
        np.log(np.e + 7) - 1 + 0.5)
    row = bench.probe_fit_ratio(tokens, labels, "planted", repeats=1)  # bookkeeping only, never timed
    assert row["metric"] in bench.TARGETS and row["value"] > 0 and row["unit"] == "x"
    assert "8-class position probe (planted), 64 tokens x 8 channels" in row["detail"]
    assert row["objective_over_sklearn"] == pytest.approx(1, abs=1e-4)  # a small problem: both reach its optimum
    rows = pd.DataFrame([{"metric": "probe_fit_over_sklearn", "value": 0.05, "objective_over_sklearn": 1.01},
                         {"metric": "probe_fit_over_sklearn", "value": 0.05, "objective_over_sklearn": 0.999},
                         {"metric": "probe_fit_over_sklearn", "value": 0.5, "objective_over_sklearn": 0.999},
                         {"metric": "probe_fit_over_sklearn", "value": 0.05, "objective_over_sklearn": np.nan},
                         {"metric": "capture_overhead", "value": 1.02}])
    # fast because it stopped early (or diverged) does not pass; a row without an objective is judged on its value
    assert bench.judged(rows).passed.tolist() == [False, True, False, False, True]


def test_the_probe_benchmark_fits_the_pages_position_probe_at_448_px_on_real_tokens(weights_dir):
    from analysis import bench

    tokens, labels, problem = bench.position_probe_problem(str(weights_dir), n_images=4)
    assert tokens.shape == (2 * 28 * 28, 192) and problem == "vit_tiny_patch16_224.augreg_in21k_ft_in1k at 448px"
    assert np.array_equal(labels, np.tile(np.arange(784), 2))
