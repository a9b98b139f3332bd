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


# --- LOST's exact rules (valeoai/LOST, object_discovery.py), each on keys with a known answer ----------------


def grid_keys(grid, fill, regions):
    """Exact (noise-free) keys: every patch ``fill``, each ``(r0, c0, r1, c1)`` block its own vector."""
    h, w = grid
    keys = np.tile(np.asarray(fill, float), (h, w, 1))
    for (r0, c0, r1, c1), vector in regions:
        keys[r0:r1, c0:c1] = vector
    return keys.reshape(h * w, -1)


def test_anti_correlated_block_is_found_exactly():
    # (a) object keys anti-correlate with the background's: LOST's box is exactly the block
    keys = grid_keys((10, 12), [1.0, 0.0], [((3, 4, 6, 9), [-1.0, 1.0])])
    found = discovery.lost(keys, (10, 12))  # k = 100 > the 15 object patches: background ones are candidates too
    inside = np.zeros((10, 12), bool)
    inside[3:6, 4:9] = True
    assert found.box == (3, 4, 6, 9) and (found.mask == inside).all() and inside.flat[found.seed]


def test_degree_counts_strictly_positive_similarities():
    # (b) object orthogonal to the background: the zeros must not count as neighbours (LOST: ``A > 0``).
    # Counting ``>= 0`` (the old rule) ties every degree, seeds patch 0 and masks the whole image.
    keys = grid_keys((8, 8), [1.0, 0.0], [((4, 2, 7, 5), [0.0, 1.0])])
    similarity = keys @ keys.T
    order, degree = discovery.patch_order(similarity)
    assert degree.max() == 64 - 9 - 1 and degree.min() == 9 - 1  # other patches of the same kind, self excluded
    found = discovery.lost(keys, (8, 8))
    assert found.box == (4, 2, 7, 5) and found.mask.sum() == 9
    assert discovery.box_area_share(found) == pytest.approx(9 / 64)


def test_diagonal_is_not_a_neighbour():
    # LOST zeroes the diagonal before counting: a lone patch with a positive self-similarity has degree 0
    keys = grid_keys((4, 4), [1.0, 0.0], [((2, 2, 3, 3), [-1.0, 0.5])])
    _, degree = discovery.patch_order(keys @ keys.T)
    assert degree[2 * 4 + 2] == 0 and (np.delete(degree, 10) == 14).all()


def test_degree_ties_go_to_the_lower_weighted_degree_not_to_patch_zero():
    # (c) two 2×2 objects of equal degree (3): A in the corner holding patch 0 with twice the key norm
    # (like a corner outlier), B elsewhere. LOST's unstable argsort may pick either; our documented rule
    # takes the lower weighted degree (3·5 = 15 for B vs 3·20 = 60 for A), where argmin took patch 0.
    u, v = np.array([-1.0, 2.0, 0.0]), np.array([-1.0, -2.0, 0.0])  # both anti-correlate with e1 and each other
    keys = grid_keys((8, 8), [1.0, 0.0, 0.0], [((0, 0, 2, 2), 2 * u), ((4, 5, 6, 7), v)])
    similarity = keys @ keys.T
    order, degree = discovery.patch_order(similarity)
    assert degree[0] == degree[4 * 8 + 5] == degree.min() == 3
    assert int(np.argmin((similarity >= 0).sum(1))) == 0  # the old rule's seed
    found = discovery.lost(keys, (8, 8))
    assert found.seed == 4 * 8 + 5 and found.box == (4, 5, 6, 7)
    assert list(order[:8]) == [37, 38, 45, 46, 0, 1, 8, 9]  # then ties resolve by patch index


def test_expansion_keeps_only_candidates_positively_correlated_with_the_seed():
    # with k = 4 only B's patches are candidates; with k = 8 A's enter but anti-correlate with the seed
    u, v = np.array([-1.0, 2.0, 0.0]), np.array([-1.0, -2.0, 0.0])
    keys = grid_keys((8, 8), [1.0, 0.0, 0.0], [((0, 0, 2, 2), 2 * u), ((4, 5, 6, 7), v)])
    for k in (1, 4, 8, 100):
        assert discovery.lost(keys, (8, 8), k=k).box == (4, 5, 6, 7)


def test_zero_seed_key_is_an_error_as_in_lost():
    keys = grid_keys((4, 4), [1.0, 0.0], [((0, 0, 1, 1), [0.0, 0.0])])
    with pytest.raises(ValueError, match="outside its own mask"):
        discovery.lost(keys, (4, 4))


def test_all_positive_keys_put_lost_at_its_floor():
    # (d) every pair of keys correlates positively (the offline ViT-Ti's case): whole-image box on every image
    rng = np.random.default_rng(0)
    keys = np.abs(rng.normal(size=(5, 36, 8))) + 0.1
    found = discovery.discover(keys, (6, 6))
    assert all(f.box == (0, 0, 6, 6) for f in found)
    assert all(discovery.box_area_share(f, (6, 6)) == 1.0 for f in found)
    assert discovery.floor_share(found) == 1.0 and discovery.at_floor(found)
    assert discovery.pixel_boxes(found, 16, [(1.0, 1.0)] * 5) == [(0.0, 0.0, 96.0, 96.0)] * 5


def test_floor_share_rule():
    # whole-image box: box area ≥ 95 % of the patch grid (here 20×20 = 400 patches)
    def box(rows, cols):
        return discovery.Discovery(0, np.ones((20, 20), bool), (0, 0, rows, cols))

    whole, almost, under, small = box(20, 20), box(20, 19), box(19, 19), box(2, 2)  # 100 %, 95 %, 90.25 %, 1 %
    assert [discovery.box_area_share(b) for b in (whole, almost, under, small)] == [1.0, 0.95, 0.9025, 0.01]
    assert discovery.box_area_share(small, (4, 4)) == 0.25  # an explicit grid overrides the mask's shape
    assert discovery.floor_share([whole, almost, under, small]) == 0.5
    assert discovery.at_floor([whole, almost, under, small])  # half the images: at the floor
    assert not discovery.at_floor([whole, under, small])
    assert np.isnan(discovery.floor_share([])) and discovery.at_floor([])
    assert discovery.FLOOR_SHARE == 0.5 and discovery.WHOLE_IMAGE_SHARE == 0.95


def test_register_partners_pair_each_patch14_model_with_its_reg4_twin():
    def result(spec, hits):
        return discovery.LostResult(spec, "w", False, 0, [], [], np.array(hits, bool))

    results = {"vit_small_patch14_dinov2.lvd142m": result("vit_small_patch14_dinov2.lvd142m", [0, 0, 1]),
               "vit_small_patch14_reg4_dinov2.lvd142m": result("vit_small_patch14_reg4_dinov2.lvd142m", [1, 1, 1]),
               "vit_small_patch16_224.dino": result("vit_small_patch16_224.dino", [1, 0, 0])}
    pairs = discovery.register_partners(results)
    assert [(plain.spec, partner.spec) for plain, partner in pairs] == [
        ("vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m")]
    assert discovery.LostResult("m", "w", False, 0, [], [], np.array([True, False])).row()["corloc"] == 0.5
