"""Model families of the paper and the one weight resolver every page uses.

A model is asked for by a *spec* string:

* ``"vit_small_patch14_dinov2.lvd142m"`` – a timm name; pretrained weights are resolved
  (explicit file → local weights folder → Hugging Face cache / hub through timm).
* ``"random:vit_small_patch14_dinov2.lvd142m"`` – the same architecture with random
  initialisation. Random weights are only ever used when asked for like this, and the
  provenance of every result then says ``random``.

Weights never silently fall back to random: when nothing is found a :class:`WeightsNotFoundError`
names every place that was looked at and how to fetch the file on a connected machine.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file as load_safetensors
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

#: The study's offline model: a real, label-supervised ViT that has high-norm tokens.
OFFLINE_MODEL = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"

#: Environment variable naming a folder of ``<timm name>.safetensors`` files.
WEIGHTS_DIR_ENV = "REGISTERS_WEIGHTS_DIR"

RANDOM_PREFIX = "random:"

#: The paper's families, each a list of timm names ordered by size (small → large).
FAMILIES: dict[str, list[str]] = {
    "supervised-augreg": [OFFLINE_MODEL],
    "dino": [
        "vit_small_patch16_224.dino",
        "vit_base_patch16_224.dino",
        "vit_small_patch8_224.dino",
        "vit_base_patch8_224.dino",
    ],
    "dinov2": [
        "vit_small_patch14_dinov2.lvd142m",
        "vit_base_patch14_dinov2.lvd142m",
        "vit_large_patch14_dinov2.lvd142m",
        "vit_giant_patch14_dinov2.lvd142m",
    ],
    "dinov2-reg4": [
        "vit_small_patch14_reg4_dinov2.lvd142m",
        "vit_base_patch14_reg4_dinov2.lvd142m",
        "vit_large_patch14_reg4_dinov2.lvd142m",
        "vit_giant_patch14_reg4_dinov2.lvd142m",
    ],
    "deit3": [
        "deit3_small_patch16_224.fb_in1k",
        "deit3_base_patch16_224.fb_in1k",
        "deit3_large_patch16_224.fb_in1k",
    ],
    "openclip": [
        "vit_base_patch16_clip_224.laion2b",
        "vit_large_patch14_clip_224.laion2b",
    ],
}


class ModelError(ValueError):
    """A model spec that cannot be turned into a model (unknown name, not a ViT)."""


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weights for a model in any place the resolver looks."""


class WeightsMismatchError(ValueError):
    """A weight file whose tensors do not fit the requested architecture."""


class UnsafeWeightsError(ValueError):
    """A pickle weight file that would need to run code to load."""


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from; travels with every result."""

    model: str
    source: str  # "file" | "folder" | "hf-cache" | "hub" | "random"
    location: str  # file path, hub id, or "" for random
    sha256: str  # of the weight file; "" for random or hub-managed files
    seed: int | None = None

    @property
    def is_random(self) -> bool:
        return self.source == "random"

    @property
    def short_hash(self) -> str:
        return self.sha256[:12] if self.sha256 else "-"

    def label(self) -> str:
        """One line for figure captions and tables."""
        if self.is_random:
            return f"{self.model}: RANDOM INIT (seed {self.seed}) - not pretrained"
        return f"{self.model}: pretrained, {self.source} {Path(self.location).name} (sha256 {self.short_hash})"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: timm name plus whether random weights were asked for."""

    name: str
    random: bool = False

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        spec = spec.strip()
        if spec.startswith(RANDOM_PREFIX):
            return cls(spec[len(RANDOM_PREFIX):], random=True)
        return cls(spec)

    def __str__(self) -> str:
        return (RANDOM_PREFIX if self.random else "") + self.name


def family_of(name: str) -> str:
    """Family key of a timm name, or ``"other"``."""
    bare = ModelSpec.parse(name).name
    for family, names in FAMILIES.items():
        if bare in names:
            return family
    return "other"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_known(name: str) -> None:
    architecture = name.split(".")[0]
    if not timm.is_model(architecture):
        close = timm.list_models(f"*{architecture.split('_')[0]}*")[:5]
        raise ModelError(f"unknown timm model {name!r}; similar names: {', '.join(close) or 'none'}")


def build_architecture(name: str, img_size: int | None = None, device: str = "cpu") -> VisionTransformer:
    """A randomly initialised timm ViT of ``name`` at ``img_size`` (no download).

    ``device="meta"`` builds only the structure (no memory, no init): enough to read
    the patch size or depth of a billion-parameter model instantly.
    """
    _check_known(name)
    kwargs = {"img_size": img_size} if img_size else {}
    with torch.device(device):
        model = timm.create_model(name, pretrained=False, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise ModelError(f"{name!r} is a {type(model).__name__}, not a timm VisionTransformer")
    return model.eval()


def weights_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """Local weight folders in the order they are searched: parameter, then environment."""
    dirs: list[Path] = []
    candidates = [weights_dir] if weights_dir else []
    candidates += [part for part in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if part]
    for candidate in candidates:
        if Path(candidate).resolve() not in [d.resolve() for d in dirs]:
            dirs.append(Path(candidate))
    return dirs


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a weight file without ever executing code from it."""
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_safetensors(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError or RuntimeError here
            raise UnsafeWeightsError(
                f"refused to load {path}: it is not a plain tensor checkpoint "
                f"(weights_only=True load failed: {str(error).splitlines()[0][:200]}). "
                "Convert it to .safetensors on a machine you trust."
            ) from None
        if not isinstance(state, dict):
            raise WeightsMismatchError(f"{path} holds a {type(state).__name__}, not a state dict")
        return state
    raise WeightsMismatchError(f"{path}: unsupported weight file type {path.suffix!r} (.safetensors, .pth, .pt)")


def _load_checked(model: VisionTransformer, state: dict[str, torch.Tensor], origin: str, name: str) -> None:
    """Load ``state`` strictly, turning a mismatch into one readable error."""
    state = checkpoint_filter_fn(state, model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} tensors of the wrong shape (file vs model), e.g. {'; '.join(wrong_shape[:3])}")
        if missing:
            parts.append(f"{len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors, e.g. {', '.join(unexpected[:3])}")
        raise WeightsMismatchError(f"{origin} does not hold weights of {name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _hub_cached_only() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _load_from_hub(name: str, img_size: int | None) -> VisionTransformer:
    """timm's own pretrained path: HF cache first, the hub when online."""
    kwargs = {"img_size": img_size} if img_size else {}
    return timm.create_model(name, pretrained=True, **kwargs).eval()


def fetch_instructions(name: str) -> str:
    return (
        f"On a machine with internet: `python -m analysis fetch {name} --to WEIGHTS_DIR` "
        f"(writes WEIGHTS_DIR/{name}.safetensors), copy the file here and pass "
        f"--weights-dir WEIGHTS_DIR or set {WEIGHTS_DIR_ENV}; "
        f"or ask for random weights explicitly with '{RANDOM_PREFIX}{name}'."
    )


def _local_weight_file(name: str, weights_dir: str | Path | None) -> tuple[Path | None, list[str]]:
    """First ``<name>.safetensors|.pth|.pt`` in the local weight folders, and every path tried."""
    looked = []
    for folder in weights_dirs(weights_dir):
        for suffix in (".safetensors", ".pth", ".pt"):
            path = folder / f"{name}{suffix}"
            looked.append(str(path))
            if path.is_file():
                return path, looked
    return None, looked


def resolve_weights(
    spec: str | ModelSpec,
    *,
    weights_file: str | Path | None = None,
    weights_dir: str | Path | None = None,
    seed: int = 0,
    allow_hub: bool = True,
) -> Provenance:
    """Decide where ``spec``'s weights come from, without building the model.

    Order: ``weights_file`` → ``weights_dir`` and ``$REGISTERS_WEIGHTS_DIR`` (file name
    ``<timm name>.safetensors``) → Hugging Face cache / hub via timm. Random only for a
    ``random:`` spec. Raises :class:`WeightsNotFoundError` when nothing local exists and
    the hub is not allowed.
    """
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    name = spec.name
    _check_known(name)
    if spec.random:
        return Provenance(name, "random", "", "", seed)
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsNotFoundError(f"weight file {path} for {name} does not exist. {fetch_instructions(name)}")
        return Provenance(name, "file", str(path.resolve()), sha256_of(path))
    path, looked = _local_weight_file(name, weights_dir)
    if path is not None:
        return Provenance(name, "folder", str(path.resolve()), sha256_of(path))
    if not allow_hub:
        where = "; ".join(looked) if looked else f"no local weights folder given (parameter or ${WEIGHTS_DIR_ENV})"
        raise WeightsNotFoundError(f"no pretrained weights for {name}. Looked in: {where}. {fetch_instructions(name)}")
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) or name
    source = "hf-cache" if _hub_cached_only() else "hub"
    return Provenance(name, source, f"{hub_id} (timm {timm.__version__})", "")


def load_model(
    spec: str | ModelSpec,
    *,
    img_size: int | None = None,
    weights_file: str | Path | None = None,
    weights_dir: str | Path | None = None,
    seed: int = 0,
    allow_hub: bool = True,
) -> tuple[VisionTransformer, Provenance]:
    """Build a timm ViT with resolved weights (see :func:`resolve_weights`).

    Returns ``(model in eval mode, provenance)``.
    """
    provenance = resolve_weights(spec, weights_file=weights_file, weights_dir=weights_dir, seed=seed, allow_hub=allow_hub)
    name = provenance.model
    if provenance.is_random:
        torch.manual_seed(seed)
        return build_architecture(name, img_size), provenance
    if provenance.source in ("file", "folder"):
        model = build_architecture(name, img_size)
        _load_checked(model, load_state_dict_file(Path(provenance.location)), provenance.location, name)
        return model, provenance
    try:
        model = _load_from_hub(name, img_size)
    except Exception as error:  # network down, cache miss, gated repository, ...
        reason = str(error).splitlines()[0][:160] if str(error) else ""
        _, looked = _local_weight_file(name, weights_dir)
        where = "; ".join(looked) if looked else f"no local weights folder given (parameter or ${WEIGHTS_DIR_ENV})"
        raise WeightsNotFoundError(
            f"no pretrained weights for {name}. Looked in: {where}; Hugging Face cache/hub via timm "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}): {type(error).__name__} {reason}. "
            f"{fetch_instructions(name)}"
        ) from None
    return model, provenance


def weights_available(spec: str, weights_dir: str | Path | None = None) -> bool:
    """True when ``spec`` resolves without the network (random specs always do)."""
    parsed = ModelSpec.parse(spec)
    if parsed.random:
        return True
    for folder in weights_dirs(weights_dir):
        if any((folder / f"{parsed.name}{suffix}").is_file() for suffix in (".safetensors", ".pth", ".pt")):
            return True
    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(parsed.name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
        if hub_id:
            for filename in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(hub_id, filename), str):
                    return True
    except Exception:
        return False
    return False


def save_weights(name: str, folder: str | Path) -> Path:
    """Download ``name`` through timm and write ``folder/<name>.safetensors`` (connected machine)."""
    from safetensors.torch import save_file

    model = timm.create_model(name, pretrained=True)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.safetensors"
    tmp = target.with_suffix(".safetensors.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, target)
    return target


def patch_size(model: VisionTransformer) -> int:
    return int(model.patch_embed.patch_size[0])
