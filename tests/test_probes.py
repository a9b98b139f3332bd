"""Probes recover planted information and fail where none was planted; labelled sources."""

import numpy as np
import pytest

from analysis import images, probes


def planted_position_tokens(n_per_position=30, positions=16, dim=24, seed=0, informative=True):
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(positions, dim)) * 3
    labels = np.repeat(np.arange(positions), n_per_position)
    tokens = rng.normal(size=(labels.size, dim)) + (codes[labels] if informative else 0)
    return tokens, labels


def test_position_probe_recovers_planted_positions_and_not_noise():
    train_tokens, train_positions = planted_position_tokens(seed=0)
    informative = planted_position_tokens(seed=0, n_per_position=5)  # same codes, fresh noise below
    rng = np.random.default_rng(1)
    informative = (informative[0] + rng.normal(size=informative[0].shape) * 0.1, informative[1])
    noise = planted_position_tokens(seed=2, n_per_position=5, informative=False)
    scores = probes.position_probe(train_tokens, train_positions, {"normal": informative, "outlier": noise}, grid_width=4)
    assert scores["normal"]["top1"] > 0.95 and scores["normal"]["distance"] < 0.1
    assert scores["outlier"]["top1"] < 0.25 and scores["outlier"]["distance"] > 1.0


def test_position_distance_is_in_grid_units():
    train = (np.eye(4) * 10, np.arange(4))
    # a token coding position 0 evaluated as if it sat at position 3 (1 row + 1 column away on a 2x2 grid)
    scores = probes.position_probe(*train, {"shifted": (np.eye(4)[[0]] * 10, np.array([3]))}, grid_width=2)
    assert scores["shifted"]["top1"] == 0.0 and scores["shifted"]["distance"] == pytest.approx(np.sqrt(2))


def test_pixel_probe_reconstructs_linear_pixels():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(16, 12))
    pixels = rng.normal(size=(400, 12))
    tokens = pixels @ mixing.T
    errors = probes.pixel_probe(tokens[:300], pixels[:300], {"normal": (tokens[300:], pixels[300:]),
                                "scrambled": (rng.normal(size=(100, 16)) * tokens.std(), pixels[300:])}, alpha=1e-3)
    assert errors["normal"] < 0.05 < 1.0 < errors["scrambled"]


def test_class_probe_on_separable_and_on_random_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    means = rng.normal(size=(5, 10)) * 4
    features = means[labels] + rng.normal(size=(200, 10))
    order = rng.permutation(200)
    train, test = order[:100], order[100:]
    assert probes.class_probe(features[train], labels[train], features[test], labels[test]) > 0.9
    noise = rng.normal(size=(200, 10))
    assert probes.class_probe(noise[train], labels[train], noise[test], labels[test]) < 0.45


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
