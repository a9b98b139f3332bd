"""Bad input and faults, table-driven: every case is one clear line naming the input, nothing half-written.

Each case builds its input under ``tmp_path`` and calls the public entry point a user would
(``features.extract`` or the page runner). Conversions that are not errors (grayscale, RGBA,
16-bit, palette) must succeed and leave a note.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from analysis import features, images, models, run
from analysis.images import ImageError
from analysis.features import DiskFullError
from analysis.models import (ModelError, NonFiniteWeightsError, UnsafeWeightsError, WeightsMismatchError,
                             WeightsNotFoundError)

TINY = models.OFFLINE_MODEL
SMALL = "vit_small_patch16_224.augreg_in21k_ft_in1k"


def photo_folder(tmp_path, name="photo.png", array=None, mode=None):
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    array = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8) if array is None else array
    Image.fromarray(array, mode).save(folder / name) if mode else Image.fromarray(array).save(folder / name)
    return folder


def corrupt(tmp_path):
    folder = photo_folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return dict(image_source=str(folder))


def truncated(tmp_path):
    folder = photo_folder(tmp_path, "whole.jpg", np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").write_bytes(data[: len(data) // 3])
    return dict(image_source=str(folder))


def one_pixel(tmp_path):
    return dict(image_source=str(photo_folder(tmp_path, "dot.png", np.zeros((1, 1, 3), np.uint8))))


def very_large(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 150 * 150)  # same code path as a 16k x 16k photo, in milliseconds
    return dict(image_source=str(photo_folder(tmp_path, "huge.png", np.zeros((200, 200, 3), np.uint8))))


def empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return dict(image_source=str(tmp_path / "empty"))


def missing_folder(tmp_path):
    return dict(image_source=str(tmp_path / "no-such-folder"))


def unknown_model(tmp_path):
    return dict(spec="vit_imaginary_patch16_224")


def bad_resolution(tmp_path):
    return dict(resolution=230)


def weights_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    return dict(spec=SMALL, weights_dir=str(tmp_path / "empty-weights"))


def other_models_weights(tmp_path, weights_dir):
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(weights_dir / f"{TINY}.safetensors", folder / f"{SMALL}.safetensors")
    return dict(spec=SMALL, weights_dir=str(folder))


class RunsCode:
    def __reduce__(self):
        return (print, ("this must never print",))


def executable_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"blocks.0.attn.qkv.weight": RunsCode()}, protocol=2))  # torch names the global
    return dict(weights_file=str(path))


def resnet(tmp_path):
    return dict(spec="resnet18")


def negative_resolution(tmp_path):
    return dict(resolution=-224)


def corrupt_safetensors(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"this is not a safetensors header at all")
    return dict(weights_file=str(path))


def weights_by_name_at_path(tmp_path):
    path = tmp_path / "elsewhere.safetensors"
    path.write_bytes(b"\x00" * 16)
    return dict(spec=f"{TINY}@{path}")


def folder_named_like_an_image(tmp_path):
    (tmp_path / "photo.jpg").mkdir()
    (tmp_path / "photo.jpg" / "inner.txt").write_text("not an image")
    return dict(image_source=str(tmp_path / "photo.jpg"))


def no_model_may_load(monkeypatch):
    """A fault that must be reported before the model is loaded (the expensive part) fails the test otherwise."""
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the error"))


def fewer_images_than_asked(tmp_path, monkeypatch):
    no_model_may_load(monkeypatch)
    return dict(image_source=str(photo_folder(tmp_path)), n_images=50)


def more_than_the_shipped_photos(tmp_path, monkeypatch):
    no_model_may_load(monkeypatch)
    return dict(n_images=len(images.BUILTIN_PHOTOS) + 1)


def nearly_full_disk(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=200_000))  # 0.2 MB free
    return {}


def disk_fills_while_writing(tmp_path, monkeypatch):
    """The free-space check passes, then the disk fills between two frames of the first batch."""
    import pyarrow.parquet as pq

    real, calls = pq.ParquetWriter.write_table, []

    def write_table(self, table, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # norms written, patches not: a half-written entry if it were kept
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)
    return {}


def disk_fills_on_a_kept_array(tmp_path, monkeypatch):
    """Reserving a kept array's blocks (so a memory-mapped write cannot SIGBUS) finds the disk full."""
    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    return dict(keep=("output",))


def nan_in_weights(tmp_path, weights_dir):
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights_dir / f"{TINY}.safetensors"))
    state["blocks.3.mlp.fc1.weight"][5, 7] = float("nan")
    save_file(state, str(tmp_path / "x.safetensors"))
    return dict(weights_file=str(tmp_path / "x.safetensors"))


#: the one line of a full disk: the cache folder, the free space and what the pass needs
DISK_FULL = (r"^not enough disk space for the feature cache in .*cache: [\d.,]+ [MG]B free, the pass needs about "
             r"[\d.]+ MB \(2 images\); free some space or set REGISTERS_CACHE to a folder on a larger disk")

#: case id -> (setup, error type, message pattern); setups may take tmp_path, monkeypatch, weights_dir.
ERRORS = {
    "corrupt image in a folder": (corrupt, ImageError,
                                  r"asked for 2 images, .*photos holds 1 readable image\(s\); unreadable: .*broken\.jpg: not a readable image"),
    "fewer images than asked for": (fewer_images_than_asked, ImageError,
                                    r"^asked for 50 images, .*/photos holds 1 readable image\(s\)$"),
    "more than the shipped photos": (more_than_the_shipped_photos, ImageError,
                                     r"^asked for 21 images, builtin holds 20 readable image\(s\)$"),
    "nearly full disk": (nearly_full_disk, DiskFullError, DISK_FULL),
    "disk fills while writing": (disk_fills_while_writing, DiskFullError, DISK_FULL),
    "disk fills on a kept array": (disk_fills_on_a_kept_array, DiskFullError, DISK_FULL),
    "NaN in the weights": (nan_in_weights, NonFiniteWeightsError,
                           r"^weight file .*x\.safetensors holds non-finite values in blocks\.3\.mlp\.fc1\.weight \(1 NaN\)"),
    "truncated image": (truncated, ImageError, r"image .*whole\.jpg: not a readable image"),
    "1x1 image": (one_pixel, ImageError, r"image .*dot\.png: only 1x1 px \(need 16 px a side\)"),
    "very large image": (very_large, ImageError, r"image .*huge\.png: too large \(200x200 px\)"),
    "empty folder": (empty_folder, ImageError, r"empty holds no images"),
    "missing folder": (missing_folder, ImageError, r"no-such-folder does not exist \(use 'builtin'"),
    "unknown model": (unknown_model, ModelError, r"unknown timm model 'vit_imaginary_patch16_224'; similar ViT names: vit_"),
    "not a ViT": (resnet, ModelError, r"'resnet18' is a timm model but not a Vision Transformer; the study needs a timm ViT"),
    "resolution not a multiple of the patch": (bad_resolution, ImageError, r"resolution 230 px is not a positive multiple of the patch size 16"),
    "negative resolution": (negative_resolution, ImageError, r"resolution must be a positive whole number of pixels, e\.g\. 224, got -224"),
    "weights missing offline": (weights_missing, WeightsNotFoundError, rf"no pretrained weights for {SMALL}\. Looked in: .*python -m analysis fetch"),
    "weight file of another model": (other_models_weights, WeightsMismatchError, rf"does not hold weights of {SMALL}: \d+ tensors of the wrong shape"),
    "pickle that runs code": (executable_pickle, UnsafeWeightsError,
                              r"refused to load .*evil\.pth: the file holds pickled Python code \(it asks for the Python object [\w.]*print\).*convert it once to safetensors"),
    "corrupt safetensors file": (corrupt_safetensors, WeightsMismatchError, r"weight file .*broken\.safetensors is not a readable safetensors file"),
    "name@path weight file": (weights_by_name_at_path, WeightsMismatchError, r"elsewhere\.safetensors is not a readable safetensors file"),
    "folder named like an image": (folder_named_like_an_image, ImageError, r"photo\.jpg holds no images"),
}


def call_setup(setup, tmp_path, monkeypatch, weights_dir):
    names = setup.__code__.co_varnames[: setup.__code__.co_argcount]
    available = {"tmp_path": tmp_path, "monkeypatch": monkeypatch, "weights_dir": weights_dir}
    return setup(**{name: available[name] for name in names})


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_clear_line_and_leaves_no_cache_entry(case, tmp_path, monkeypatch, weights_dir, capsys):
    setup, error_type, pattern = ERRORS[case]
    arguments = dict(spec=TINY, image_source="builtin", n_images=2, resolution=224, weights_dir=str(weights_dir))
    arguments.update(call_setup(setup, tmp_path, monkeypatch, weights_dir))
    cache = tmp_path / "cache"
    spec = arguments.pop("spec")
    options = {name: arguments.pop(name) for name in ("weights_file", "keep") if name in arguments}
    with pytest.raises(error_type) as error:
        features.extract(spec, features.RunOptions(cache_dir=cache, progress=False, **arguments), **options)
    message = str(error.value)
    assert "\n" not in message, message
    assert __import__("re").search(pattern, message), message
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written: no entry, no .tmp-* folder
    assert "this must never print" not in capsys.readouterr().out


CONVERSIONS = {
    "grayscale": (np.full((64, 64), 120, np.uint8), None, "L image converted to RGB"),
    "RGBA": (np.full((64, 64, 4), 200, np.uint8), None, "transparency composited on white"),
    "16-bit PNG": (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16, None, "rescaled to 8 bit"),
}


@pytest.mark.parametrize("case", list(CONVERSIONS))
def test_convertible_images_run_with_a_note(case, tmp_path, weights_dir):
    array, mode, note = CONVERSIONS[case]
    folder = photo_folder(tmp_path, "odd.png", array, mode)
    result = features.extract(TINY, features.RunOptions(str(folder), None, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False))
    assert any(note in n for n in result.meta["images"][0]["notes"])
    assert len(result.patches) == 196


def test_palette_gif_runs_with_a_note(tmp_path, weights_dir):
    folder = tmp_path / "gif"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)).convert("P").save(folder / "p.gif")
    result = features.extract(TINY, features.RunOptions(str(folder), None, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False))
    assert "P image converted to RGB" in result.meta["images"][0]["notes"][0]


@pytest.mark.parametrize("parameters, pattern", [
    ({"n_imagez": 3}, r"page 'norm_histogram' has no parameter 'n_imagez'; it takes: "),
    ({"threshold": 0}, r"threshold must be a positive number \(the paper uses 150\), got 0"),
    ({"threshold": -150.0}, r"threshold must be a positive number"),
])
def test_bad_page_parameters_are_refused_before_running(parameters, pattern, tmp_path):
    with pytest.raises(run.ParameterError, match=pattern):
        run.run_page("norm_histogram", parameters, tmp_path)
    assert not (tmp_path / "src").exists()


@pytest.mark.slow
def test_a_failing_notebook_names_its_cell_and_publishes_nothing(tmp_path, weights_dir):
    with pytest.raises(RuntimeError) as error:
        run.run_page("layer_dependence", {"image_source": str(tmp_path / "gone")}, tmp_path, str(weights_dir))
    message = str(error.value)
    assert "page 'layer_dependence' failed in cell" in message and "ImageError" in message and "gone does not exist" in message
    assert not (tmp_path / "src" / "book" / "layer_dependence.ipynb").exists()
    assert (tmp_path / "failed" / "layer_dependence.ipynb").is_file()
    assert not list((tmp_path / "src" / "book").glob(".*running*"))


def test_phone_photo_is_analysed_as_shown(tmp_path, weights_dir):
    """A JPEG stored landscape with EXIF orientation 6 (rotate 90°) is a portrait photo."""
    folder = tmp_path / "phone"
    folder.mkdir()
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 100, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(folder / "portrait.jpg", exif=exif)
    record = images.list_images(folder)[0]
    assert record.load().size == (60, 100)  # width x height as shown, not (100, 60) as stored
    assert "EXIF orientation 6 applied" in record.notes[0]
    result = features.extract(TINY, features.RunOptions(str(folder), None, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False))
    assert any("EXIF orientation 6" in note for note in result.notes)


def test_large_jpeg_is_decoded_at_reduced_size_with_a_note(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (2400, 3600, 3), dtype=np.uint8)).save(path, quality=80)
    notes = []
    decoded = images.read_image_file(path, notes)
    assert min(decoded.size) == images.DECODE_SIDE and decoded.size[0] > decoded.size[1]
    assert "decoded at" in notes[0] and "from 3600x2400 px" in notes[0]


def test_bad_files_in_a_folder_are_skipped_listed_and_replaced(tmp_path, weights_dir):
    folder = photo_folder(tmp_path, "a.png")
    photo_folder(tmp_path, "b.png")
    photo_folder(tmp_path, "c.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    result = features.extract(TINY, features.RunOptions(str(folder), 3, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False))
    assert sorted(i["image_id"] for i in result.meta["images"]) == ["a", "b", "c"]
    assert len(result.meta["skipped"]) == 2 and any("broken.jpg" in s for s in result.meta["skipped"])
    assert sum(note.startswith("skipped ") for note in result.notes) == 2


def test_a_directory_named_like_an_image_is_called_a_folder(tmp_path):
    (tmp_path / "photo.jpg").mkdir()
    with pytest.raises(ImageError, match=r"photo\.jpg is a folder, not an image file"):
        images.read_image_file(tmp_path / "photo.jpg")


@pytest.mark.parametrize("value, expected", [
    ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", ["vit_tiny_patch16_224.augreg_in21k_ft_in1k"]),  # a bare name
    (["a", "b"], ["a", "b"]),
])
def test_a_string_where_a_list_is_expected_is_a_one_element_list(value, expected):
    assert run.check_parameters("norm_histogram", {"models": value})["models"] == expected


@pytest.mark.parametrize("key, text, pattern", [
    ("models", '["vit_tiny_patch16_224', r"models must be a JSON list, e\.g\. -p models '\[\"a\", \"b\"\]', got '\[\"vit_tiny"),
    ("n_images", "4,", r"n_images must be an int, e\.g\. -p n_images 12, got '4,'"),
    ("adaptive", "yes", r"adaptive must be a bool, e\.g\. -p adaptive true, got 'yes'"),
    ("resolution", "224.5", r"resolution must be an int, e\.g\. -p resolution 12, got 224\.5"),
])
def test_malformed_values_are_refused_with_the_expected_type(key, text, pattern):
    with pytest.raises(run.ParameterError, match=pattern):
        run.check_parameters("norm_histogram", {key: run.parse_value(text)})


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    book = tmp_path / "src" / "book"
    book.mkdir(parents=True)
    (book / f".norm_histogram.{pid}.running.ipynb").write_text("{}")
    (book / f".norm_histogram.{os.getpid()}.running.ipynb").write_text("{}")  # this process: still running
    (tmp_path / "runtime" / str(pid)).mkdir(parents=True)
    (tmp_path / "runtime" / str(pid) / "kernel-1.json").write_text("{}")
    removed = run.remove_abandoned_runs(tmp_path)
    assert len(removed) == 2 and not (tmp_path / "runtime" / str(pid)).exists()
    assert (book / f".norm_histogram.{os.getpid()}.running.ipynb").exists()


def test_a_full_disk_while_a_page_is_written_is_one_line_and_publishes_nothing(tmp_path, monkeypatch):
    """papermill writing the executed notebook on a full disk: one line naming the folder, no temporary notebook."""
    import re

    import papermill

    def fill_the_disk(source, target, **kwargs):
        with open(target, "w") as handle:
            handle.write('{"cells": [')  # half a notebook, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", fill_the_disk)
    with pytest.raises(DiskFullError) as error:
        run.run_page("norm_histogram", {}, tmp_path)
    message = str(error.value)
    assert "\n" not in message and error.value.errno == errno.ENOSPC
    assert re.match(r"page 'norm_histogram' could not be written: the disk holding .*src/book is full "
                    r"\([\d.,]+ MB free\); free some space or pass --build-dir on a larger disk", message), message
    book = tmp_path / "src" / "book"
    assert not list(book.glob(".*running*")) and not (book / "norm_histogram.ipynb").exists()
