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


def plant_hf_cache(root, weights_dir, revision: str):
    """A Hugging Face cache under ``root`` holding the real ViT-Ti as timm expects it: ``models--timm--<name>/
    snapshots/<revision>/model.safetensors`` with ``refs/main`` pointing at that revision."""
    repo = root / f"models--timm--{TINY}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    shutil.copy(weights_dir / f"{TINY}.safetensors", repo / "snapshots" / revision / "model.safetensors")
    return repo / "snapshots" / revision / "model.safetensors"


def test_hub_weights_name_their_snapshot_revision_and_file_hash(weights_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    revision = "5f0c2d1e" * 5  # a planted snapshot commit
    planted = plant_hf_cache(tmp_path / "hub", weights_dir, revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import time
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    model, provenance = models.load_model(TINY)  # no local folder: timm's hub path, offline (conftest)
    assert provenance.source == "hf-cache" and provenance.location.startswith(f"timm/{TINY}")
    assert provenance.revision == revision
    assert provenance.sha256 == models.sha256_of(planted) == models.sha256_of(weights_dir / f"{TINY}.safetensors")
    assert provenance.as_dict()["revision"] == revision
    assert f"(revision {revision[:12]}, sha256 {provenance.sha256[:12]})" in provenance.label()
    assert models.resolve_weights(TINY) == provenance  # the cache key sees the same file before any load
    assert models.Provenance(**{k: v for k, v in provenance.as_dict().items() if k != "revision"}).revision is None


def nan_weights(weights_dir, folder, key="blocks.3.mlp.fc1.weight", value=float("nan")):
    """A copy of the real ViT-Ti weights with one value of ``key`` replaced by ``value``."""
    from safetensors.torch import load_file

    state = load_file(str(weights_dir / f"{TINY}.safetensors"))
    state[key] = state[key].clone()
    state[key][0, 0] = value
    path = folder / "x.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("value, count", [(float("nan"), "1 NaN"), (float("inf"), "1 infinite")])
def test_non_finite_weights_are_refused_naming_the_file_and_tensor(weights_dir, tmp_path, value, count):
    path = nan_weights(weights_dir, tmp_path, value=value)
    with pytest.raises(models.NonFiniteWeightsError) as error:
        models.load_model(TINY, weights_file=path)
    message = str(error.value)
    assert message.startswith(f"weight file {path.resolve()} holds non-finite values in blocks.3.mlp.fc1.weight "
                              f"({count})") and "\n" not in message
    assert isinstance(error.value, models.WeightsMismatchError)  # caught wherever a bad weight file is
