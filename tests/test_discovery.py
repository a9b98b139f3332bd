"""LOST on planted keys with a known object, CorLoc arithmetic, VOC reading."""

import numpy as np
import pytest

from analysis import discovery
from analysis.images import ImageError


def planted_keys(grid=(8, 8), box=(2, 3, 5, 7), seed=0):
    """Background keys along e1, object keys along -e1 + e2: object and background anti-correlate."""
    rng = np.random.default_rng(seed)
    h, w = grid
    keys = np.tile([1.0, 0.0, 0.0, 0.0], (h * w, 1))
    r0, c0, r1, c1 = box
    inside = np.zeros(grid, bool)
    inside[r0:r1, c0:c1] = True
    keys[inside.ravel()] = [-1.0, 1.0, 0.0, 0.0]
    return keys + rng.normal(scale=0.05, size=keys.shape), inside


def test_lost_finds_the_planted_object():
    keys, inside = planted_keys()
    found = discovery.lost(keys, (8, 8), k=20)
    assert inside.ravel()[found.seed]
    assert found.box == (2, 3, 5, 7)
    assert (found.mask == inside).all()


def test_lost_keeps_only_the_seed_component():
    keys, inside = planted_keys(box=(0, 0, 2, 2))
    second = np.zeros((8, 8), bool)
    second[6:8, 6:8] = True  # a second, disconnected object region of the same kind
    keys[second.ravel()] = keys[inside.ravel()][:4]
    found = discovery.lost(keys, (8, 8), k=20)
    assert found.mask.sum() == 4 and found.box in ((0, 0, 2, 2), (6, 6, 8, 8))


def test_box_conversion_and_iou():
    assert discovery.patch_box_to_pixels((1, 2, 3, 5), 16, (2.0, 0.5)) == (64.0, 8.0, 160.0, 24.0)
    assert discovery.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert discovery.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert discovery.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_corloc_counts_images_with_a_matching_box():
    truth = [[(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)], [(0, 0, 10, 10)]]
    predicted = [(0, 0, 10, 9), (21, 21, 30, 30), (50, 50, 60, 60)]
    assert discovery.corloc(predicted, truth) == pytest.approx(2 / 3)


def test_voc_round_trip_and_planted_set(tmp_path):
    folder = discovery.planted_voc(tmp_path / "voc", count=3, seed=1, size=128)
    items = discovery.list_voc(folder)
    assert len(items) == 3
    for path, boxes in items:
        (x0, y0, x1, y1), = boxes
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and x1 - x0 == y1 - y0 >= 32
    again = discovery.list_voc(discovery.planted_voc(tmp_path / "voc", count=3, seed=1, size=128))
    assert [b for _, b in again] == [b for _, b in items]


def test_not_a_voc_folder(tmp_path):
    with pytest.raises(ImageError, match="not a VOC-style folder"):
        discovery.list_voc(tmp_path)
