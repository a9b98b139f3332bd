"""Weight resolution: order, provenance, clear errors; the real ViT-Ti really is pretrained."""

import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

from analysis import images, models

TINY = models.OFFLINE_MODEL
SMALL = "vit_small_patch16_224.augreg_in21k_ft_in1k"


def test_the_offline_model_is_real(tiny):
    model, provenance = tiny
    assert provenance.source == "folder" and not provenance.is_random
    assert provenance.sha256 == "d64c51519a476f75bb3abc5c886156276752c37cb8dca4d4afbc2c60823a580d"
    record = images.ImageRecord("chelsea", "builtin:chelsea")
    pixels = images.make_transform(model, 224)(record.load())[None]
    with torch.inference_mode():
        top = model(pixels).argmax().item()
    assert top == 285  # ImageNet "Egyptian cat", as the weights' README records


def test_explicit_file_comes_before_the_folder(weights_dir, tmp_path):
    copy = tmp_path / "elsewhere.safetensors"
    shutil.copy(weights_dir / f"{TINY}.safetensors", copy)
    provenance = models.resolve_weights(TINY, weights_file=copy, weights_dir=weights_dir)
    assert provenance.source == "file" and provenance.location == str(copy.resolve())


def test_folder_from_environment(weights_dir, monkeypatch):
    monkeypatch.setenv(models.WEIGHTS_DIR_ENV, str(weights_dir))
    assert models.resolve_weights(TINY).source == "folder"


def test_missing_weights_offline_name_model_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(models.WeightsNotFoundError) as error:
        models.load_model(SMALL, weights_dir=tmp_path)
    message = str(error.value)
    assert SMALL in message
    assert str(tmp_path / f"{SMALL}.safetensors") in message
    assert "Hugging Face cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "python -m analysis fetch" in message and "random:" in message


def test_no_silent_random_fallback(tmp_path):
    with pytest.raises(models.WeightsNotFoundError):
        models.load_model(SMALL, weights_dir=tmp_path, allow_hub=False)


def test_random_only_when_asked():
    model, provenance = models.load_model(f"random:{TINY}", seed=3)
    assert provenance.is_random and provenance.seed == 3
    assert "RANDOM INIT (seed 3)" in provenance.label()
    again, _ = models.load_model(f"random:{TINY}", seed=3)
    torch.testing.assert_close(model.state_dict()["head.weight"], again.state_dict()["head.weight"])



def test_plain_pth_state_dict_loads(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / f"{TINY}.pth"
    torch.save(model.state_dict(), path)
    loaded, provenance = models.load_model(TINY, weights_dir=tmp_path)
    assert provenance.source == "folder" and provenance.location.endswith(".pth")
    torch.testing.assert_close(loaded.state_dict()["head.bias"], model.state_dict()["head.bias"])


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / f"{TINY}.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weights": Exploit(str(marker))}, handle)
    with pytest.raises(models.UnsafeWeightsError, match="refused"):
        models.load_model(TINY, weights_file=path)
    assert not marker.exists()


def test_unknown_model_name():
    with pytest.raises(models.ModelError, match="unknown timm model"):
        models.resolve_weights("vit_imaginary_patch3_99")


def test_non_vit_is_refused():
    with pytest.raises(models.ModelError, match="is a timm model but not a Vision Transformer"):
        models.build_architecture("resnet18")


def test_mismatch_on_missing_tensor(tmp_path, tiny):
    model, _ = tiny
    state = {k: v for k, v in model.state_dict().items() if k != "head.weight"}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(models.WeightsMismatchError, match="missing, e.g. head.weight"):
        models.load_model(TINY, weights_file=path)


def test_family_registry_names_are_timm_vits():
    from analysis.hooks import has_cls_token

    no_cls = set()
    for family, names in models.FAMILIES.items():
        for name in names:
            model = models.build_architecture(name, device="meta")
            if not has_cls_token(model):
                no_cls.add(name)
    assert no_cls == {"vit_base_patch16_siglip_224.webli"}  # SigLIP pools with attention: no CLS token
    assert models.family_of("random:vit_giant_patch14_reg4_dinov2.lvd142m") == "dinov2-reg4"
    assert models.recipe_of("random:vit_small_patch16_dinov3.lvd1689m") == "random init (control)"
    assert models.recipe_of("vit_small_patch16_dinov3.lvd1689m") == "self-supervised (DINOv3)"


def test_hugging_face_cache_is_used_offline(weights_dir, tmp_path):
    """A model in the HF cache loads through timm's own hub path with the network off."""
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / f"models--timm--{TINY}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(weights_dir / f"{TINY}.safetensors", snapshot / "model.safetensors")
    script = (
        "from analysis import models\n"
        f"assert models.weights_available('{TINY}')\n"
        f"model, p = models.load_model('{TINY}')\n"
        "print(p.source, p.location)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    env.pop(models.WEIGHTS_DIR_ENV, None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"hf-cache timm/{TINY}")


def test_weight_folders_are_searched_once_each(tmp_path, monkeypatch):
    other = tmp_path / "other"
    monkeypatch.setenv(models.WEIGHTS_DIR_ENV, f"{tmp_path}{__import__('os').pathsep}{other}")
    assert models.weights_dirs(tmp_path) == [tmp_path, other]
