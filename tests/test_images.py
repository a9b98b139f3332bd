"""Image sources, conversions with notes, and one clear error per bad input."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import images, models


def save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_builtin_photos_are_real_and_ordered():
    records = images.list_images("builtin")
    assert [r.image_id for r in records][:3] == ["astronaut", "chelsea", "coffee"]
    picture = records[1].load()
    assert picture.mode == "RGB" and picture.size == (451, 300)


#: Every shipped photo's (width, height) as loaded, read off the packages' files; the last 8 are grayscale.
SHIPPED_SIZES = {
    "astronaut": (512, 512), "chelsea": (451, 300), "coffee": (600, 400), "rocket": (640, 427),
    "motorcycle": (741, 500), "grace_hopper": (512, 600), "china": (640, 427), "flower": (640, 427),
    "hubble": (1000, 872), "retina": (1411, 1411), "immunohistochemistry": (512, 512), "camera": (512, 512),
    "blurred_clock": (400, 300), "greek_coins": (384, 303), "moon_surface": (512, 512), "handwriting": (448, 172),
    "brick_wall": (512, 512), "grass": (512, 512), "gravel": (512, 512), "floating_cell": (550, 660),
}
GRAYSCALE = {"camera", "blurred_clock", "greek_coins", "moon_surface", "handwriting", "brick_wall", "grass", "gravel",
             "floating_cell"}


def test_every_shipped_photo_loads_offline_as_8_bit_rgb_of_its_size(monkeypatch):
    """Each photo is read from a file inside an installed wheel: with the network cut, none may try a download
    (most of ``skimage.data`` is fetched by pooch on first use)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a shipped photo tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    records = images.list_images("builtin")
    assert [r.image_id for r in records] == list(SHIPPED_SIZES)
    for record in records:
        array = np.asarray(record.load())
        width, height = SHIPPED_SIZES[record.image_id]
        assert array.dtype == np.uint8 and array.shape == (height, width, 3), record.image_id
        assert array.std() > 10, record.image_id  # a picture, not a flat field
        gray = bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]))
        assert gray == (record.image_id in GRAYSCALE), record.image_id
        assert record.notes == ([f"builtin:{record.image_id}: L image converted to RGB"] if gray else [])


def test_named_shipped_photos_come_in_the_order_named_and_unknown_names_fail_in_one_line():
    assert [r.image_id for r in images.list_images("builtin:grass,chelsea")] == ["grass", "chelsea"]
    assert [r.origin for r in images.list_images("builtin:chelsea")] == ["builtin:chelsea"]
    unknown = r"^no shipped photo 'kitten', 'puppy'; choose from: astronaut, "
    with pytest.raises(images.ImageError, match=unknown) as error:
        images.list_images("builtin:chelsea,kitten,puppy")
    assert "\n" not in str(error.value)
    with pytest.raises(images.ImageError, match=r"^shipped photo named twice in 'builtin:grass,grass'$"):
        images.list_images("builtin:grass,grass")
    with pytest.raises(images.ImageError, match=r"^no shipped photo ''"):
        images.list_images("builtin:chelsea,")
    assert images.describe_sample(images.list_images("builtin:grass,chelsea"), "builtin:grass,chelsea") \
        == "2 images from builtin"


def test_the_original_photos_keep_the_samples_drawn_before_photos_were_added():
    """The validation page's twins and the tests' real-ViT-Ti values were measured on the 12 photos shipped first:
    drawn from :data:`images.ORIGINAL_PHOTOS_SOURCE` they are the same images, in the same order, as ``"builtin"``
    gave when it held only those (all 12; 8 with seed 0 were these)."""
    from analysis import params

    original = images.list_images(images.ORIGINAL_PHOTOS_SOURCE)
    assert [r.image_id for r in original] == [r.image_id for r in images.list_images("builtin")[:12]]
    assert images.readable_sample(original, 12, 0).records == original
    assert [r.image_id for r in images.readable_sample(original, 8, 0).records] == [
        "chelsea", "coffee", "rocket", "grace_hopper", "flower", "hubble", "retina", "immunohistochemistry"]
    for parameter_set in params.SETS.values():
        validation = parameter_set["validation"]
        assert (validation["image_source"], validation["n_images"]) == (images.ORIGINAL_PHOTOS_SOURCE, 12)


def test_the_ci_test_time_page_draws_enough_to_hold_out_an_interval_s_worth():
    """The test-time page judges its units on the half of its images it did not choose them on, and an interval
    needs :data:`analysis.stats.MIN_IMAGES`; the other ci pages keep 8."""
    from analysis import params, probes, stats

    ci = params.CI["test_time_registers"]
    chosen_on, held_out = probes.split_images(ci["n_images"], ci["seed"])
    assert len(held_out) >= stats.MIN_IMAGES and ci["n_images"] <= len(images.BUILTIN_PHOTOS)
    assert params.CI["norm_histogram"]["n_images"] == 8


def test_seeded_sampling_is_deterministic_and_keeps_source_order():
    records = images.list_images("builtin")

    def sample(n, seed):
        return images.readable_sample(records, n, seed).records

    first = sample(5, seed=1)
    assert [r.image_id for r in first] == [r.image_id for r in sample(5, seed=1)]
    assert [r.image_id for r in first] != [r.image_id for r in sample(5, seed=2)]
    order = [r.image_id for r in records]
    assert [order.index(r.image_id) for r in first] == sorted(order.index(r.image_id) for r in first)
    assert [r.image_id for r in images.sample_order(records, 5, seed=1)[:5]] == [r.image_id for r in first]
    assert images.sample_order(records, 100) == records  # every candidate; too few for 100 is readable_sample's error


def test_folder_is_searched_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    rgb = np.zeros((32, 32, 3), np.uint8)
    save(tmp_path / "b" / "z.png", rgb)
    save(tmp_path / "a.jpg", rgb)
    save(tmp_path / "b" / "c.webp", rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [r.image_id for r in images.list_images(tmp_path)] == ["a", "b/c", "b/z"]





def test_grayscale_is_converted_with_a_note(tmp_path):
    path = save(tmp_path / "gray.png", np.full((32, 32), 200, np.uint8))
    notes = []
    rgb = images.read_image_file(path, notes)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (200, 200, 200)
    assert "L image converted to RGB" in notes[0]


def test_rgba_is_composited_on_white(tmp_path):
    array = np.zeros((32, 32, 4), np.uint8)
    array[..., 0] = 255
    array[:16, ..., 3] = 255  # top half opaque red, bottom half transparent
    path = save(tmp_path / "alpha.png", array)
    notes = []
    rgb = images.read_image_file(path, notes)
    assert rgb.getpixel((0, 0)) == (255, 0, 0) and rgb.getpixel((0, 31)) == (255, 255, 255)
    assert "transparency" in notes[0]


def test_16_bit_png_is_rescaled_not_clipped(tmp_path):
    array = np.zeros((32, 32), np.uint16)
    array[:, 16:] = 65535
    array[:, :16] = 32768
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    notes = []
    rgb = np.asarray(images.read_image_file(path, notes))
    assert rgb[0, 31].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [0, 0, 0]
    assert "8 bit" in notes[0]


def test_palette_gif_is_converted(tmp_path):
    path = tmp_path / "palette.gif"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).convert("P").save(path)
    notes = []
    rgb = images.read_image_file(path, notes)
    assert rgb.mode == "RGB" and notes




def test_resolution_must_be_a_multiple_of_the_patch():
    images.check_resolution(224, 16)
    with pytest.raises(images.ImageError, match="not a positive multiple of the patch size 14"):
        images.check_resolution(224 + 1, 14)


def test_transform_uses_the_model_normalisation():
    model = models.build_architecture(models.OFFLINE_MODEL)  # mean = std = 0.5
    white = Image.fromarray(np.full((300, 400, 3), 255, np.uint8))
    tensor = images.make_transform(model, 224)(white)
    assert tensor.shape == (3, 224, 224)
    torch.testing.assert_close(tensor, torch.ones(3, 224, 224))


def fake_imagenette(folder, per_class=3):
    """An Imagenette-shaped folder: two class sub-folders of small JPEG photos crops."""
    photo = images.BUILTIN_PHOTOS["astronaut"]()
    for label in ("n01440764_tench", "n02102040_springer"):
        (folder / label).mkdir(parents=True)
        for index in range(per_class):
            save(folder / label / f"{label[:4]}_{index}.JPEG", photo[index * 20 : index * 20 + 64, :64])
    return folder


def test_imagenette_source_is_found_named_and_labelled(tmp_path, monkeypatch):
    monkeypatch.setenv(images.IMAGENETTE_ENV, str(tmp_path / "absent"))
    assert not images.imagenette_available()
    with pytest.raises(images.ImageError, match="make images"):
        images.list_images("imagenette")
    folder = fake_imagenette(tmp_path / "imagenette")
    monkeypatch.setenv(images.IMAGENETTE_ENV, str(folder))
    records = images.list_images("imagenette")
    assert len(records) == 6 and records[0].image_id == "n01440764_tench/n014_0"
    labelled = images.list_labelled_images("imagenette", per_class=2, seed=0)
    assert sorted(r.label for r in labelled) == ["n01440764_tench"] * 2 + ["n02102040_springer"] * 2
    # pages name their sample without machine paths
    assert images.describe_sample(labelled, labelled) == "4 images of 2 classes from imagenette"
    assert images.describe_sample(records[:5], "imagenette") == "5 images from imagenette"
    assert images.describe_sample(images.list_images("builtin")[:8], "builtin") == "8 images from builtin"
    digits = images.list_labelled_images("digits", per_class=2)
    assert images.describe_sample(digits, digits) == "20 images of 10 classes from digits"


def test_the_paper_set_always_draws_imagenette_and_the_lite_probe_only_when_present(tmp_path, monkeypatch):
    """The paper set is what the workflow publishes: Imagenette whether or not this machine has it (a page without it
    stops with one line, never substitutes the digits); the lite set's class probe takes it when it is here."""
    import importlib

    from analysis import params

    try:
        monkeypatch.setenv(images.IMAGENETTE_ENV, str(fake_imagenette(tmp_path / "imagenette")))
        present = importlib.reload(params)
        assert present.PAPER["norm_histogram"]["image_source"] == "imagenette"
        assert present.PAPER["information_probes"]["labelled_source"] == "imagenette"
        assert present.LITE["information_probes"]["labelled_source"] == "imagenette"
        monkeypatch.setenv(images.IMAGENETTE_ENV, str(tmp_path / "absent"))
        absent = importlib.reload(params)
        assert absent.PAPER["norm_histogram"]["image_source"] == "imagenette"
        assert absent.PAPER["information_probes"]["labelled_source"] == "imagenette"
        assert absent.LITE["information_probes"]["labelled_source"] == "digits"
    finally:
        monkeypatch.undo()
        importlib.reload(params)


def test_a_folder_with_class_subfolders_is_sampled_per_class(tmp_path):
    folder = fake_imagenette(tmp_path / "imagenette", per_class=3)
    (folder / "n03000000_third").mkdir()
    save(folder / "n03000000_third" / "only.JPEG", images.BUILTIN_PHOTOS["astronaut"]()[:64, :64])
    records = images.list_images(folder)
    for seed in range(5):
        chosen = images.readable_sample(records, 4, seed).records
        classes = sorted(r.image_id.split("/")[0] for r in chosen)
        assert classes.count("n03000000_third") == 1 and len(set(classes)) == 3  # 2 + 1 + 1 (or 1 + 2 + 1)
    order = images.sample_order(records, 3, 0)
    assert sorted(r.image_id.split("/")[0] for r in order[:3]) == sorted({r.image_id.split("/")[0] for r in records})
    assert len(order) == len(records) and {r.image_id for r in order} == {r.image_id for r in records}


def test_a_sample_is_never_smaller_than_asked_for(tmp_path):
    shipped = images.list_images("builtin")
    assert len(shipped) == 20  # the ci pages ask for up to 16 of them
    for n in (1, 8, 12, 16, None):
        sample = images.readable_sample(shipped, n, seed=0)
        assert len(sample.records) == (n or 20) and not sample.skipped
    with pytest.raises(images.ImageError, match=r"^asked for 21 images, builtin holds 20 readable image\(s\)$"):
        images.readable_sample(shipped, 21)
    save(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(images.ImageError, match=rf"^asked for 3 images, {re.escape(str(tmp_path))} holds 1 readable image\(s\); "
                                                r"unreadable: .*b\.png: not a readable image"):
        images.readable_sample(images.list_images(tmp_path), 3)


def test_a_file_is_known_by_its_id_and_bytes_not_its_path(tmp_path):
    first, second = tmp_path / "one" / "cat.png", tmp_path / "two" / "cat.png"
    for path in (first, second):
        path.parent.mkdir()
        Image.new("RGB", (40, 40), (10, 20, 30)).save(path)
    here, there = images.ImageRecord("cat", str(first)), images.ImageRecord("cat", str(second))
    assert here.fingerprint() == there.fingerprint() and here.content_digest() is not None
    recorded = images.records_of([{"image_id": "cat", "origin": str(first), "digest": here.content_digest()}])
    first.unlink()  # a cache made on another machine: the recorded path no longer exists here
    assert recorded[0].fingerprint() == there.fingerprint()
    assert images.ImageRecord("dog", str(second)).fingerprint() != there.fingerprint()  # another id
    Image.new("RGB", (40, 40), (10, 20, 31)).save(second)  # one value changed: another image
    assert images.ImageRecord("cat", str(second)).fingerprint() != recorded[0].fingerprint()
    # a digest recorded before the edit does not outvote the file that is there now
    stale = images.ImageRecord("cat", str(second), digest=recorded[0].digest)
    assert stale.fingerprint() == images.ImageRecord("cat", str(second)).fingerprint()
    assert images.ImageRecord("chelsea", "builtin:chelsea").fingerprint() == "builtin:chelsea"


def test_a_sample_is_keyed_by_its_images_contents_and_its_replacements_are_not_read(tmp_path, monkeypatch):
    for index in range(4):
        Image.new("RGB", (40, 40), (index, 0, 0)).save(tmp_path / f"photo_{index}.png")
    ordered = images.sample_order(images.list_images(tmp_path), 2, seed=0)
    key = images.image_set_key(ordered, 2)
    read = []
    original = images._file_digest.__wrapped__
    monkeypatch.setattr(images, "_file_digest",
                        lambda path, *stat: read.append(Path(path).name) or original(path, *stat))
    assert images.image_set_key(ordered, 2) == key
    assert read == [Path(r.origin).name for r in ordered[:2]]  # the two sampled files; the replacements only stat'ed
    Image.new("RGB", (40, 40), (9, 9, 9)).save(ordered[0].origin)  # a sampled image changes: another key
    assert images.image_set_key(ordered, 2) != key
    assert images.image_set_key(ordered, None) != images.image_set_key(ordered, 2)  # all four: all read


def test_a_file_that_cannot_be_read_still_has_a_key(tmp_path, monkeypatch):
    Image.new("RGB", (40, 40)).save(tmp_path / "locked.png")
    record = images.ImageRecord("locked", str(tmp_path / "locked.png"))

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "_file_digest", refuse)  # as a file without read permission (tests may run as root)
    assert record.content_digest().startswith("unreadable-") and images.image_set_key([record])
