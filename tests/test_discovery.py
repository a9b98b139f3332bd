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


# --- VOC 2007 (make voc), LOST's truth rule, and the paper's Table 3 beside the measured CorLoc -----------------

import shutil  # noqa: E402
import urllib.error  # noqa: E402

from analysis import cli, voc  # noqa: E402

HARD_XML = """<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
OBJECT_XML = ("<object><name>thing</name><truncated>{truncated}</truncated><difficult>{difficult}</difficult>"
              "<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def voc_annotation(path, name, size, objects):
    """``objects``: ``(x0, y0, x1, y1, truncated, difficult)`` in VOC's 1-based inclusive pixels."""
    path.write_text(HARD_XML.format(name=name, w=size[0], h=size[1], objects="".join(
        OBJECT_XML.format(x0=x0, y0=y0, x1=x1, y1=y1, truncated=t, difficult=d) for x0, y0, x1, y1, t, d in objects)))


def made_voc(root, count=12, trainval=8, size=160, photos=True):
    """A VOC 2007 folder as torchvision lays it out (``root/VOCdevkit/VOC2007``): ``count`` images, the first
    ``trainval`` listed in ``ImageSets/Main/trainval.txt`` (the rest in ``test.txt``); every image's object is the
    planted one, plus a difficult and a truncated box. Returns the inner folder."""
    inner = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (inner / sub).mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}" for i in range(count)]
    if photos:
        planted = discovery.planted_voc(root.parent / f"{root.name}_planted", count, seed=3, size=size)
        for name, (path, boxes) in zip(names, discovery.list_voc(planted)):
            shutil.copy(path, inner / "JPEGImages" / f"{name}.jpg")
            (x0, y0, x1, y1), = boxes
            hard = [(1, 1, 20, 20, 0, 1), (5, 5, 30, 30, 1, 0)]  # a difficult and a truncated object
            voc_annotation(inner / "Annotations" / f"{name}.xml", name, (size, size),
                           [(int(x0) + 1, int(y0) + 1, int(x1), int(y1), 0, 0)] + hard)
    else:
        from PIL import Image

        for name in names:
            Image.new("RGB", (size, size), (90, 120, 150)).save(inner / "JPEGImages" / f"{name}.jpg")
            voc_annotation(inner / "Annotations" / f"{name}.xml", name, (size, size), [(11, 21, 50, 60, 0, 0)])
    (inner / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names[:trainval]) + "\n")
    (inner / "ImageSets" / "Main" / "test.txt").write_text("\n".join(names[trainval:]) + "\n")
    return inner


def test_voc_folder_resolves_the_torchvision_layout_and_honours_the_split(tmp_path, monkeypatch):
    inner = made_voc(tmp_path / "voc2007", photos=False)
    for named in (tmp_path / "voc2007", tmp_path / "voc2007" / "VOCdevkit", inner):
        assert voc.resolve_voc_folder(named) == inner
        assert [p.stem for p, _ in discovery.list_voc(named, "trainval")] == [f"{i:06d}" for i in range(1, 9)]
    assert len(discovery.list_voc(tmp_path / "voc2007")) == 12  # no split: every annotation
    assert [p.stem for p, _ in discovery.list_voc(inner, "test")] == [f"{i:06d}" for i in range(9, 13)]
    assert discovery.list_voc(inner, "trainval")[0][1] == [(10.0, 20.0, 50.0, 60.0)]  # 1-based inclusive → 0-based
    assert discovery.voc_dataset(tmp_path / "voc2007") == "VOC2007"
    with pytest.raises(ImageError, match="no 'val' split"):
        discovery.list_voc(inner, "val")
    monkeypatch.setenv(voc.VOC_ENV, str(tmp_path / "voc2007"))
    assert voc.voc_folder() == inner and voc.voc_available()
    (inner / "JPEGImages" / "000003.jpg").unlink()  # a listed image missing: not available
    assert voc.missing_files(inner) == ["JPEGImages/000003.jpg"] and not voc.voc_available()
    monkeypatch.delenv(voc.VOC_ENV)
    monkeypatch.setattr(voc, "default_voc_dir", lambda: tmp_path / "data" / "voc2007")
    assert voc.voc_folder() == tmp_path / "data" / "voc2007" and not voc.voc_available()


def test_difficult_and_truncated_boxes_are_truth_as_in_lost(tmp_path):
    # LOST's published CorLoc counts every object (``--no_hard`` off): a box on a difficult object is a hit
    path = tmp_path / "a.xml"
    voc_annotation(path, "a", (100, 80), [(11, 11, 40, 40, 0, 0), (51, 1, 100, 80, 0, 1), (1, 41, 30, 80, 1, 0)])
    assert discovery.read_voc_boxes(path) == [(10.0, 10.0, 40.0, 40.0), (50.0, 0.0, 100.0, 80.0),
                                              (0.0, 40.0, 30.0, 80.0)]
    assert discovery.read_voc_boxes(path, exclude_hard=True) == [(10.0, 10.0, 40.0, 40.0)]  # LOST's --no_hard
    truth = [discovery.read_voc_boxes(path)]
    assert discovery.hits([(50.0, 0.0, 100.0, 80.0)], truth).tolist() == [True]
    assert discovery.hits([(50.0, 0.0, 100.0, 80.0)], [discovery.read_voc_boxes(path, True)]).tolist() == [False]
    # an image whose every object is hard: kept by default, dropped under --no_hard
    inner = made_voc(tmp_path / "voc", count=2, trainval=2, photos=False)
    voc_annotation(inner / "Annotations" / "000002.xml", "000002", (160, 160), [(1, 1, 20, 20, 1, 1)])
    assert len(discovery.list_voc(inner, "trainval")) == 2
    assert [p.stem for p, _ in discovery.list_voc(inner, "trainval", exclude_hard=True)] == ["000001"]


def fake_voc_detection(count=3, fail_after_images=None, error=None, skip=None):
    """A stand-in for ``torchvision.datasets.VOCDetection(download=True)``: writes the archive and a tiny
    VOCdevkit/VOC2007 of ``count`` trainval images (``skip``: one it leaves out), or fails part-way."""
    class FakeVOCDetection:
        calls = []

        def __init__(self, root, year="2012", image_set="train", download=False, **_):
            FakeVOCDetection.calls.append((root, year, image_set, download))
            assert (year, image_set, download) == ("2007", "trainval", True)
            if error is not None and fail_after_images is None:
                raise error
            from pathlib import Path

            from PIL import Image

            root = Path(root)
            (root / "VOCtrainval_06-Nov-2007.tar").write_bytes(b"tar" * 100)
            inner = root / "VOCdevkit" / "VOC2007"
            for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
                (inner / sub).mkdir(parents=True)
            names = [f"{i:06d}" for i in range(1, count + 1)]
            for index, name in enumerate(names):
                if fail_after_images is not None and index == fail_after_images:
                    raise error
                if name != skip:
                    Image.new("RGB", (40, 30)).save(inner / "JPEGImages" / f"{name}.jpg")
                voc_annotation(inner / "Annotations" / f"{name}.xml", name, (40, 30), [(2, 2, 20, 20, 0, 0)])
            (inner / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names) + "\n")

    return FakeVOCDetection


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


def test_fetch_voc_is_atomic(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    monkeypatch.setattr(voc, "EXPECTED_IMAGES", {"trainval": 3})
    target = tmp_path / "data" / "voc2007"
    monkeypatch.setattr(torchvision.datasets, "VOCDetection", fake_voc_detection())
    assert cli.main(["fetch-voc", "--to", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target / "VOCdevkit" / "VOC2007")
    assert len(discovery.list_voc(target, "trainval")) == 3 and not list(target.glob("*.tar"))  # archive deleted
    assert leftovers(target.parent) == []
    # already there: returned as it is, nothing downloaded
    monkeypatch.setattr(torchvision.datasets, "VOCDetection", fake_voc_detection(error=AssertionError("no call")))
    assert voc.save_voc2007(target) == target / "VOCdevkit" / "VOC2007"

    # interrupted half-way (Ctrl-C): no folder, no partial folder
    other = tmp_path / "data" / "second"
    monkeypatch.setattr(torchvision.datasets, "VOCDetection", fake_voc_detection(fail_after_images=2,
                                                                                 error=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        voc.save_voc2007(other)
    assert not other.exists() and leftovers(other.parent) == []
    # a download that lacks a listed image: refused, nothing left
    monkeypatch.setattr(torchvision.datasets, "VOCDetection", fake_voc_detection(skip="000002"))
    with pytest.raises(voc.VocFetchError, match="incomplete: 1 files of the trainval split are missing"):
        voc.save_voc2007(other)
    assert not other.exists() and leftovers(other.parent) == []
    # offline: one line, exit 2, nothing left
    monkeypatch.setattr(torchvision.datasets, "VOCDetection",
                        fake_voc_detection(error=urllib.error.URLError("[Errno -2] Name or service not known")))
    assert cli.main(["fetch-voc", "--to", str(other)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: could not download VOC 2007 trainval") and "connected machine" in error
    assert error.count("\n") == 1 and not other.exists() and leftovers(other.parent) == []
    # a folder that holds something else is refused, not overwritten
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(voc.VocFetchError, match="exists but is not a complete VOC 2007 trainval set"):
        voc.save_voc2007(other)
    assert (other / "notes.txt").read_text() == "mine"


def voc_sample(n=8, dataset="VOC2007", split="trainval", available=5011, size=(500, 375)):
    from analysis.images import ImageRecord

    return discovery.AnnotatedSample([ImageRecord(f"{i:06d}", f"/nowhere/{i:06d}.jpg") for i in range(n)],
                                     [[(0, 0, 10, 10)]] * n, [size] * n, dataset, split, available)


def lost_result(spec, hits, registers=0, resolution=224, patch=14):
    return discovery.LostResult(spec, "w", spec.startswith("random:"), registers, [], [], np.array(hits, bool),
                                resolution, patch)


def test_table3_puts_the_published_corloc_beside_the_measured_one():
    plain, reg = "vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m"
    dino, deit = "vit_small_patch16_224.dino", "deit3_base_patch16_224.fb_in22k_ft_in1k"
    tiny = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    results = {plain: lost_result(plain, [1, 1, 0, 0, 0, 0, 0, 0]),  # CorLoc 2/8
               reg: lost_result(reg, [1, 1, 1, 1, 1, 0, 0, 0], registers=4),  # 5/8
               dino: lost_result(dino, [1, 1, 1, 1, 1, 1, 0, 0], patch=16),  # 6/8
               deit: lost_result(deit, [1, 0, 0, 0, 0, 0, 0, 0], patch=16),  # 1/8
               tiny: lost_result(tiny, [0] * 8, patch=16)}
    after, held = lost_result(plain, [1, 1, 0, 0]), lost_result(plain, [1, 0, 0, 0])
    moved = discovery.MovedComparison(None, True, False, [after.row(discovery.TEST_TIME_CONDITION),
                                                         held.row("as released (held-out half)")], (after, held))
    table = discovery.table3(results, {plain: moved}, voc_sample())
    assert list(table.columns) == discovery.TABLE3_COLUMNS
    assert list(table.model) == [plain, plain, plain, reg, dino, deit, tiny]
    assert table.corloc.tolist() == [2 / 8, 2 / 4, 1 / 4, 5 / 8, 6 / 8, 1 / 8, 0.0]
    # nan (shown "–"): the test-time register (nothing published) and the ViT-Ti (no family of the paper)
    assert table.published_corloc.fillna(-1).tolist() == [0.353, -1, 0.353, 0.554, 0.619, 0.117, -1]
    assert table.comparison[1] == table.comparison[6] == "no published figure for this model and condition"
    # the interval is the bootstrap over images of the hits (8 images: computed; 4: too few)
    interval = discovery.corloc_interval(results[plain].hits)
    assert (table.corloc_low[0], table.corloc_high[0]) == (interval.low, interval.high)
    assert interval.low <= 0.25 <= interval.high and np.isnan(table.corloc_low[1])
    assert table.comparison[0].startswith(f"{interval.text('.1%')} here, 35.3% published")
    # differences of setting, by row
    first = table.differences[0]
    assert "8 images: a seeded sample of 8 of the 5011 images (published: all 5011)" in first
    assert "each image squeezed to 224×224 px, a 16×16 patch grid" in first
    assert "the median image here, 500×375 px, gives 36×27 patches that way" in first
    assert "weights vit_small_patch14_dinov2.lvd142m (published: the paper's DINOv2 ViT-L/14" in first
    assert "no bias added to the Gram matrix" in first and "values" not in first
    dino_row = table.differences[4]
    assert "weights" not in dino_row and "bias" not in dino_row and "32×24 patches" in dino_row  # LOST's own model
    assert "LOST on the last block's keys (published: its values)" in table.differences[5]
    assert "4 images: the held-out half of a seeded sample of 8 of the 5011" in table.differences[1]
    listed = discovery.differences_markdown(table).splitlines()  # the page's list under the table
    assert len(listed) == 7 and listed[0].startswith("- **DINOv2 ViT-S/14** (as released), published 35.3% on the "
                                                     "paper's DINOv2 ViT-L/14")
    assert listed[6].startswith("- **AugReg ViT-Ti/16** (as released): 8 images")

    # not on VOC 2007: nothing published beside it, the comparison says why
    planted = discovery.table3(results, {}, voc_sample(dataset="planted", split=None, available=16))
    assert planted.published_corloc.isna().all()
    assert (planted.comparison == "not comparable: the planted set is not VOC 2007").all()
    assert "images from the planted set" in planted.differences[0]
    voc12 = discovery.table3({dino: results[dino]}, None, voc_sample(dataset="VOC2012"))
    assert voc12.comparison[0] == "not comparable: VOC2012 is not VOC 2007"


def test_published_figures_follow_the_family_and_condition():
    published = discovery.published_corloc
    assert published("vit_base_patch14_dinov2.lvd142m").corloc == 0.353
    assert published("vit_giant_patch14_reg4_dinov2.lvd142m").corloc == 0.554
    assert published("deit3_base_patch16_224.fb_in22k_ft_in1k").corloc == 0.117
    assert published("vit_base_patch16_clip_224.laion2b").corloc == 0.388
    assert published("vit_small_patch16_224.dino").corloc == 0.619
    assert published("vit_base_patch16_224.dino").corloc == 0.601  # LOST's own ViT-B/16 figure
    assert published("vit_base_patch8_224.dino").corloc == 0.619  # no own figure: the family's, model a difference
    for none in ("random:vit_small_patch16_224.dino", "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                 "vit_base_patch16_clip_224.openai"):
        assert published(none) is None
    assert published("vit_small_patch14_dinov2.lvd142m", discovery.TEST_TIME_CONDITION) is None
    assert discovery.paper_family("vit_small_patch14_reg4_dinov2.lvd142m") == ("dinov2", True)
    table = discovery.published_table()
    assert sorted(table.published_corloc) == [0.117, 0.271, 0.353, 0.371, 0.388, 0.554, 0.555, 0.601, 0.619]


@pytest.mark.slow
def test_object_discovery_page_runs_on_a_voc_folder(tmp_path, weights_dir):
    """The page end to end on a made VOC 2007 folder (the outer folder torchvision writes), its trainval split
    only, with the real ViT-Ti; then Table 3 on the same pass."""
    from analysis import features, params, run
    import pandas as pd

    made_voc(tmp_path / "voc2007", count=12, trainval=8)
    build = tmp_path / "build"
    tiny = params.TINY
    run.run_page("object_discovery", {**params.CI["object_discovery"], "models": [tiny], "n_discovery": 12,
                                      "voc_root": str(tmp_path / "voc2007"), "voc_split": "trainval",
                                      "test_time_register": False}, build, str(weights_dir))
    table = pd.read_parquet(build / "results" / "object_discovery.parquet")
    assert table.images.tolist() == [8]  # 12 asked, the split lists 8

    sample = discovery.annotated_sample(str(tmp_path / "voc2007"), "trainval", 12, 0)
    assert (sample.dataset, sample.split, sample.available) == ("VOC2007", "trainval", 8)
    assert sample.describe() == "8 of the 8 annotated images of VOC2007 trainval"
    feats = features.extract(tiny, features.RunOptions(sample.records, None, 224, 0, weights_dir,
                                                       cache_dir=build / "cache", allow_hub=False, progress=False),
                             keep=("keys",), square=True)
    result = discovery.evaluate(feats, sample)
    three = discovery.table3({tiny: result}, {}, sample)
    assert three.corloc[0] == result.hits.mean() and np.isnan(three.published_corloc[0])
    assert "each image squeezed to 224×224 px, a 14×14 patch grid" in three.differences[0]
    assert three.differences[0].startswith("8 images: all 8 images of this folder's trainval (published: all 5011)")


def test_object_patches_follow_the_squeeze_to_the_grid():
    # a 448x224 image squeezed to 224x224 (scale 2 across, 1 down), patch 16, grid 14x14
    mask = discovery.object_patches((64.0, 32.0, 192.0, 80.0), (2.0, 1.0), 16, (14, 14))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 4, 2, 5)  # y 32..80 -> rows 2..4; x 32..96 -> 2..5
    tiny = discovery.object_patches((10.0, 10.0, 11.0, 11.0), (1.0, 1.0), 16, (14, 14))
    assert tiny.sum() == 1 and tiny[0, 0]  # never empty
    edge = discovery.object_patches((220.0, 220.0, 224.0, 224.0), (1.0, 1.0), 16, (14, 14))
    assert edge.sum() == 1 and edge[13, 13]


@pytest.mark.slow
def test_the_positive_control_boxes_planted_objects_where_the_real_keys_sit_at_the_floor(tmp_path, weights_dir):
    """The ViT-Ti's real keys put LOST at its floor on the planted set; the same pass with each object planted in
    its keys is boxed (CorLoc near 100 %): the floor is the model's, not the code's."""
    from analysis import features

    sample = discovery.annotated_sample(None, None, 16, 0, cache_dir=tmp_path)
    run = features.RunOptions(sample.records, None, 224, 0, weights_dir, "cpu", cache_dir=tmp_path / "cache",
                              allow_hub=False, progress=False)
    feats = features.extract("vit_tiny_patch16_224.augreg_in21k_ft_in1k", run, keep=("keys",), square=True)
    real = discovery.evaluate(feats, sample)
    control = discovery.positive_control(feats, sample)
    assert real.at_floor and real.hits.mean() <= 0.2
    assert not control.at_floor and control.hits.mean() >= 0.9


def test_the_positive_control_sentence_in_each_state():
    def result(hits):
        return discovery.LostResult("m", "w", False, 0, [], [], np.array(hits, dtype=bool))

    assert discovery.positive_control_sentence(result([True] * 9 + [False]), "ViT-Ti").startswith(
        "Positive control: with each image's largest object planted in the keys of ViT-Ti's pass, this LOST boxes "
        "9 of 10 objects (CorLoc 90%)")
    failed = discovery.positive_control_sentence(result([True] * 8 + [False] * 2), "ViT-Ti")
    assert failed.startswith("Positive control FAILED") and "only 8 of 10 objects (CorLoc 80%)" in failed
    assert discovery.positive_control_sentence(result([]), "ViT-Ti") == "No positive control: no annotated image."


def test_lost_refuses_keys_out_of_step_with_the_sample_or_the_grid():
    from types import SimpleNamespace

    sample = discovery.AnnotatedSample([SimpleNamespace(image_id="a"), SimpleNamespace(image_id="b")],
                                       [[(0, 0, 10, 10)], [(0, 0, 10, 10)]], [(32, 32), (32, 32)])
    keys = np.random.default_rng(0).normal(size=(2, 1 + 4, 3))
    meta = {"num_prefix_tokens": 1, "grid": [2, 2], "patch_size": 16, "resolution": 32, "spec": "m",
            "num_registers": 0, "images": [{"image_id": "b"}, {"image_id": "a"}]}
    feats = SimpleNamespace(arrays={"keys": keys}, meta=meta, grid=(2, 2),
                            provenance=SimpleNamespace(label=lambda: "w", is_random=False))
    with pytest.raises(ValueError, match="not the annotated sample's"):
        discovery.evaluate(feats, sample)
    meta["images"] = [{"image_id": "a"}, {"image_id": "b"}]
    assert len(discovery.evaluate(feats, sample).hits) == 2
    meta["num_prefix_tokens"] = 0  # a prefix count that disagrees with the grid would shift every patch
    with pytest.raises(ValueError, match="prefix tokens"):
        discovery.evaluate(feats, sample)
