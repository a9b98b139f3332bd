"""Shared fixtures. The real offline model is read from ../shared/weights (or $REGISTERS_WEIGHTS_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from analysis import features, images, models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = models.OFFLINE_MODEL


def shared_weights_dir() -> Path:
    configured = os.environ.get(models.WEIGHTS_DIR_ENV)
    return Path(configured) if configured else ROOT.parent / "shared" / "weights"


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    folder = shared_weights_dir()
    if not (folder / f"{TINY}.safetensors").is_file():
        pytest.fail(f"the study's offline weights are missing: expected {folder / (TINY + '.safetensors')}")
    return folder


@pytest.fixture(scope="session")
def ci_book(weights_dir):
    """The ci book, built once into _build (the browser test reads the same site); shared by every module that
    reads the built book (tests/test_pages.py, tests/test_prose.py)."""
    from analysis import run

    return run.build_book("ci", run.ROOT / "_build", str(weights_dir))


@pytest.fixture(scope="session")
def tiny(weights_dir):
    """The real pretrained ViT-Ti/16 and its provenance."""
    return models.load_model(TINY, weights_dir=weights_dir, allow_hub=False)


@pytest.fixture(scope="session")
def tiny_features(weights_dir, tmp_path_factory):
    """One cached pass of the real ViT-Ti over 8 of the 12 original shipped photos (seed 0).

    The original 12 (:data:`analysis.images.ORIGINAL_PHOTOS_SOURCE`), not ``"builtin"``: the real-model values the
    tests hold (tests/test_detector.py) were measured on this sample, which photos added later would reshuffle."""
    cache = tmp_path_factory.mktemp("cache")
    return features.extract(TINY, features.RunOptions(images.ORIGINAL_PHOTOS_SOURCE, 8, 224, weights_dir=weights_dir,
                                                      cache_dir=cache, allow_hub=False, progress=False))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never reach a hub: any hub attempt must fail fast, as on CI."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time


#: Images of every twin pass in the tests: the 12 original shipped photos, as the validation page draws them.
TWIN_SOURCE = images.ORIGINAL_PHOTOS_SOURCE
TWIN_IMAGES = 12


@pytest.fixture(scope="session")
def twin_cache(tmp_path_factory):
    """One feature cache for the twin passes of this session (tests/test_twins.py and tests/test_validation.py)."""
    folder = tmp_path_factory.getbasetemp() / "twin-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def twin_pass(weights_dir, twin_cache):
    """``twin_pass(name)``: the cached pass of the registered twin ``name`` on its base network, the 12 original
    shipped photos."""
    from analysis import twins

    passes = {}

    def run(name: str) -> features.Features:
        if name not in passes:
            options = features.RunOptions(TWIN_SOURCE, TWIN_IMAGES, 224, weights_dir=weights_dir,
                                          cache_dir=twin_cache, allow_hub=False, progress=False)
            passes[name] = features.extract(twins.TWIN_BASES[name], options, plant=twins.TWINS[name])
        return passes[name]

    return run
