"""The dry run's hub cache: random-valued weights in the layout a real download leaves, loaded by timm offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from analysis import dry_run, params

TINY = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def test_a_planted_model_has_the_layout_of_a_download(tmp_path):
    planted = dry_run.plant_hub_cache([TINY], tmp_path / "hub")[TINY]
    folder = tmp_path / "hub" / f"models--timm--{TINY}"
    commit = (folder / "refs" / "main").read_text()
    assert planted == folder / "snapshots" / commit / "model.safetensors"
    assert planted.is_symlink() and planted.resolve().parent == (folder / "blobs").resolve()
    import hashlib

    assert planted.resolve().name == hashlib.sha256(planted.read_bytes()).hexdigest()  # blobs named by content
    assert not list((folder / "blobs").glob(".*"))  # no temporary file left
    assert dry_run.plant_hub_cache([TINY], tmp_path / "hub")[TINY] == planted  # planted once


def test_timm_loads_a_planted_model_through_the_hub_cache_offline(tmp_path):
    planted = dry_run.plant_hub_cache([TINY], tmp_path / "hub", seed=3)[TINY]
    code = ("import json; from analysis import models; "
            f"model, provenance = models.load_model({TINY!r}, allow_hub=True); "
            "print(json.dumps({'source': provenance.source, 'sha256': provenance.sha256, "
            "'pos': float(model.pos_embed.detach().sum())}))")
    environment = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
                   "REGISTERS_WEIGHTS_DIR": str(tmp_path / "no-weights-here")}
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    import hashlib

    assert loaded["source"] == "hf-cache"  # the real hub path, not a local weights folder
    assert loaded["sha256"] == hashlib.sha256(planted.read_bytes()).hexdigest()
    assert loaded["pos"] == pytest.approx(float(load_file(str(planted))["pos_embed"].sum()), rel=1e-6)


def test_the_smaller_set_keeps_every_model_and_shrinks_every_sample():
    smaller = dry_run.smaller_set("lite", n_images=2)
    assert "validation" not in smaller and set(smaller) == set(params.LITE) - {"validation"}
    for page, parameters in smaller.items():
        original = params.LITE[page]
        assert parameters.get("models") == original.get("models") and parameters.get("model") == original.get("model")
        for count in ("n_images", "n_discovery"):
            if count in original:
                assert parameters[count] == 2
    assert smaller["information_probes"]["per_class"] == 1


def test_the_lite_set_is_real_models_within_about_two_gigabytes():
    from analysis.plan import geometry

    names = params.LITE_MODELS
    assert not any(params.ModelSpec.parse(spec).random for spec in params.models_of(params.LITE) if spec != TINY)
    assert set(params.models_of(params.LITE)) - {TINY} <= set(names)
    assert sum(geometry(name, 224).weights_bytes for name in names) <= 2.1e9
