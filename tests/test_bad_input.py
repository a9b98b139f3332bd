"""Bad input and faults, table-driven: every case is one clear line naming the input, nothing half-written.

Each case builds its input under ``tmp_path`` and calls the public entry point a user would
(``features.extract`` or the page runner). Conversions that are not errors (grayscale, RGBA,
16-bit, palette) must succeed and leave a note.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from analysis import features, images, models, run
from analysis.images import ImageError
from analysis.models import ModelError, UnsafeWeightsError, WeightsMismatchError, WeightsNotFoundError

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
    path.write_bytes(pickle.dumps({"blocks.0.attn.qkv.weight": RunsCode()}))
    return dict(weights_file=str(path))


#: case id -> (setup, error type, message pattern); setups may take tmp_path, monkeypatch, weights_dir.
ERRORS = {
    "corrupt image": (corrupt, ImageError, r"broken\.jpg is not a readable image"),
    "truncated image": (truncated, ImageError, r"whole\.jpg could not be decoded .*truncated"),
    "1x1 image": (one_pixel, ImageError, r"dot\.png is only 1x1 px; need at least 16 px"),
    "very large image": (very_large, ImageError, r"huge\.png is too large .*downscale it first"),
    "empty folder": (empty_folder, ImageError, r"empty holds no images"),
    "missing folder": (missing_folder, ImageError, r"no-such-folder does not exist \(use 'builtin'"),
    "unknown model": (unknown_model, ModelError, r"unknown timm model 'vit_imaginary_patch16_224'"),
    "resolution not a multiple of the patch": (bad_resolution, ImageError, r"resolution 230 px is not a positive multiple of the patch size 16"),
    "weights missing offline": (weights_missing, WeightsNotFoundError, rf"no pretrained weights for {SMALL}\. Looked in: .*python -m analysis fetch"),
    "weight file of another model": (other_models_weights, WeightsMismatchError, rf"does not hold weights of {SMALL}: \d+ tensors of the wrong shape"),
    "pickle that runs code": (executable_pickle, UnsafeWeightsError, r"refused to load .*evil\.pth.*Convert it to \.safetensors"),
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
    with pytest.raises(error_type) as error:
        features.extract(spec, cache_dir=cache, progress=False, **arguments)
    message = str(error.value)
    assert "\n" not in message, message
    assert __import__("re").search(pattern, message), message
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written
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
    result = features.extract(TINY, str(folder), None, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False)
    assert any(note in n for n in result.meta["images"][0]["notes"])
    assert len(result.patches) == 196


def test_palette_gif_runs_with_a_note(tmp_path, weights_dir):
    folder = tmp_path / "gif"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)).convert("P").save(folder / "p.gif")
    result = features.extract(TINY, str(folder), None, 224, weights_dir=weights_dir, cache_dir=tmp_path / "c", progress=False)
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
