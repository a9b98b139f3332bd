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
import re
from dataclasses import asdict, dataclass, replace
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
    "dinov3": [
        "vit_small_patch16_dinov3.lvd1689m",
        "vit_base_patch16_dinov3.lvd1689m",
        "vit_large_patch16_dinov3.lvd1689m",
    ],
    "siglip": ["vit_base_patch16_siglip_224.webli"],
    "eva02": ["eva02_base_patch14_224.mim_in22k"],
    "augreg": [
        "vit_small_patch16_224.augreg_in21k_ft_in1k",
        "vit_base_patch16_224.augreg_in21k_ft_in1k",
        "vit_large_patch16_224.augreg_in21k_ft_in1k",
    ],
}

#: How each family was trained (the census figure's colours).
RECIPES = {
    "supervised-augreg": "supervised (labels)", "augreg": "supervised (labels)", "deit3": "supervised (labels)",
    "dino": "self-supervised (DINO)", "dinov2": "self-supervised (DINOv2)", "dinov2-reg4": "self-supervised (DINOv2)",
    "dinov3": "self-supervised (DINOv3)", "openclip": "image-text (CLIP)", "siglip": "image-text (SigLIP)",
    "eva02": "masked image modelling (EVA-02)",
}

#: The census page's default list: every family, small to large.
CENSUS = [name for names in FAMILIES.values() for name in names]


class ModelError(ValueError):
    """A model spec that cannot be turned into a model (unknown name, not a ViT)."""


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weights for a model in any place the resolver looks."""


class WeightsMismatchError(ValueError):
    """A weight file whose tensors do not fit the requested architecture."""


class UnsafeWeightsError(ValueError):
    """A pickle weight file that would need to run code to load."""


class NonFiniteWeightsError(WeightsMismatchError):
    """A weight file holding NaN or infinite values (a broken export or a diverged checkpoint)."""


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from; travels with every result."""

    model: str
    source: str  # "file" | "folder" | "hf-cache" | "hub" | "random"
    location: str  # file path, hub id, or "" for random
    sha256: str  # of the weight file (a hub model's file in the Hugging Face cache too); "" for random
    seed: int | None = None
    revision: str | None = None  # hub models: the commit of the Hugging Face cache snapshot the file came from

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
        revision = f"revision {self.revision[:12]}, " if self.revision else ""
        return (f"{self.model}: pretrained, {self.source} {Path(self.location).name} "
                f"({revision}sha256 {self.short_hash})")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: timm name, whether random weights were asked for, and an explicit weight file.

    ``"<name>"``, ``"random:<name>"``, or ``"<name>@<path>"`` (weights from that file).
    """

    name: str
    random: bool = False
    weights_file: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        if not isinstance(spec, str) or not spec.strip():
            raise ModelError(f"a model is a timm name such as 'vit_small_patch14_dinov2.lvd142m', got {spec!r}")
        spec = spec.strip()
        if spec.startswith(RANDOM_PREFIX):
            return cls(spec[len(RANDOM_PREFIX):], random=True)
        name, at, path = spec.partition("@")
        if at and not path:
            raise ModelError(f"{spec!r}: after '@' comes the path of a weight file, e.g. {name}@weights.safetensors")
        return cls(name, weights_file=path or None)

    def __str__(self) -> str:
        if self.random:
            return RANDOM_PREFIX + self.name
        return self.name + (f"@{self.weights_file}" if self.weights_file else "")


def family_of(name: str) -> str:
    """Family key of a timm name, or ``"other"``."""
    bare = ModelSpec.parse(name).name
    for family, names in FAMILIES.items():
        if bare in names:
            return family
    return "other"


def recipe_of(spec: str) -> str:
    family = family_of(spec)
    return "random init (control)" if ModelSpec.parse(spec).random else RECIPES.get(family, "other")


def parameter_count(spec: str) -> int:
    """Parameters of ``spec``'s architecture, counted on the meta device (no memory, no download)."""
    return sum(p.numel() for p in build_architecture(ModelSpec.parse(spec).name, device="meta").parameters())


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


#: timm modules whose models the study can hook (the ViTs with a CLS token and plain blocks).
VIT_MODULES = ("vision_transformer", "deit", "eva")


def vit_names() -> list[str]:
    """Every timm architecture the study accepts."""
    return sorted({name for module in VIT_MODULES for name in timm.list_models(module=module)})


def _check_known(name: str) -> None:
    """Refuse, in one line, a name that is not a timm model or not a ViT the study can hook."""
    import difflib

    architecture = name.split(".")[0]
    accepted = vit_names()
    if architecture in accepted:
        return
    close = difflib.get_close_matches(architecture, accepted, n=5, cutoff=0.5)
    similar = f"; similar ViT names: {', '.join(close)}" if close else ""
    if timm.is_model(architecture):
        raise ModelError(f"{name!r} is a timm model but not a Vision Transformer; the study needs a timm ViT "
                         f"(timm.list_models(module='vision_transformer'), e.g. vit_small_patch14_dinov2.lvd142m){similar}")
    raise ModelError(f"unknown timm model {name!r}{similar or '; see timm.list_models(module=' + repr(VIT_MODULES[0]) + ')'}")


def build_architecture(name: str, img_size: int | None = None, device: str = "cpu", **overrides) -> VisionTransformer:
    """A randomly initialised timm ViT of ``name`` at ``img_size`` (no download).

    ``device="meta"`` builds only the structure (no memory, no init): enough to read
    the patch size or depth of a billion-parameter model instantly. ``overrides`` go to timm
    (e.g. ``depth=2``: the same blocks — registers, SwiGLU, LayerScale — fewer of them).
    """
    from timm.models.eva import Eva

    _check_known(name)
    kwargs = {"img_size": img_size} if img_size else {}
    with torch.device(device):
        model = timm.create_model(name, pretrained=False, **kwargs, **overrides)
    if not isinstance(model, (VisionTransformer, Eva)):
        raise ModelError(f"{name!r} is a {type(model).__name__}, not a timm VisionTransformer or Eva")
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
        try:
            return load_safetensors(str(path))
        except Exception as error:  # safetensors raises SafetensorError (a Rust error) or OSError
            raise WeightsMismatchError(
                f"weight file {path} is not a readable safetensors file ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:120] if str(error) else 'no detail'}); it is corrupt, truncated or "
                "another format under a .safetensors name"
            ) from None
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError or RuntimeError here
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" (it asks for the Python object {found.group(1)})" if found else ""
            raise UnsafeWeightsError(
                f"refused to load {path}: the file holds pickled Python code{what}, not just tensors, and loading it "
                "could run that code. If you trust its source, convert it once to safetensors on that trusted machine: "
                "read it with torch's loader and weights_only=False, then write the state dict with "
                f"safetensors.torch.save_file to {path.stem}.safetensors"
            ) from None
        if not isinstance(state, dict):
            raise WeightsMismatchError(f"{path} holds a {type(state).__name__}, not a state dict")
        return state
    raise WeightsMismatchError(f"{path}: unsupported weight file type {path.suffix!r} (.safetensors, .pth, .pt)")


def check_finite(state: dict[str, torch.Tensor], origin: str) -> None:
    """Refuse, in one line naming ``origin`` and the first bad tensor, weights holding NaN or ±inf.

    A single NaN poisons every token after the block that holds it, and would only surface later as a
    confusing failure far away (e.g. a log-scaled plot of NaN norms). One ``isfinite`` per tensor: about
    a second for a billion parameters.
    """
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.is_meta:
            continue
        if not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            infinite = int(torch.isinf(tensor).sum())
            counts = ", ".join(part for part in (f"{nan} NaN" if nan else "", f"{infinite} infinite" if infinite else "")
                               if part)
            raise NonFiniteWeightsError(f"weight file {origin} holds non-finite values in {key} ({counts}); "
                                        "the file is broken (re-export or re-download it)")


def _load_checked(model: VisionTransformer, state: dict[str, torch.Tensor], origin: str, name: str) -> None:
    """Load ``state`` strictly, turning a mismatch or a non-finite value into one readable error."""
    check_finite(state, origin)  # names as in the file, before timm's filter renames any
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
    meta = any(t.is_meta for t in model.state_dict().values())
    model.load_state_dict(state, strict=True, assign=meta)  # assign: the file's tensors become the parameters
    if meta:
        _materialise_buffers(model)


def _materialise_buffers(model: VisionTransformer) -> None:
    """Non-persistent buffers (e.g. RoPE tables) are not in a state dict: rebuild any left on the meta device."""
    for module in model.modules():
        for key, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.is_meta:
                raise WeightsMismatchError(f"buffer {key} of {type(module).__name__} is not in the weight file and "
                                           "cannot be rebuilt; load this model without the meta device")


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
    weights_file = weights_file or spec.weights_file
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
    cached = hub_weight_file(name)
    if _hub_cached_only() and cached is None:
        where = "; ".join(looked) if looked else f"no local weights folder given (parameter or ${WEIGHTS_DIR_ENV})"
        raise WeightsNotFoundError(f"no pretrained weights for {name}. Looked in: {where}; the Hugging Face cache "
                                   f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}, so the hub is not asked). "
                                   f"{fetch_instructions(name)}")
    source = "hf-cache" if _hub_cached_only() else "hub"
    return _hub_provenance(Provenance(name, source, f"{hub_id} (timm {timm.__version__})", ""), cached)


def _hub_provenance(provenance: Provenance, cached: tuple[Path, str] | None) -> Provenance:
    """``provenance`` with the cached file's sha256 and snapshot revision (unchanged when nothing is cached yet,
    e.g. before the first download)."""
    if cached is None:
        return provenance
    path, revision = cached
    return replace(provenance, sha256=sha256_of(path), revision=revision)


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
        model = build_architecture(name, img_size, device="meta")  # structure only: no memory, no init
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
    cached = hub_weight_file(name)  # what timm read: the file resolved above, downloaded just now, or a newer main
    if cached is not None and (cached[1] != provenance.revision or not provenance.sha256):
        provenance = _hub_provenance(provenance, cached)
    check_finite(model.state_dict(), str(cached[0]) if cached else provenance.location)
    return model, provenance


#: timm's default hub weight file, and the safetensors file it reads instead when the repository has one
#: (``timm.models._hub.load_state_dict_from_hf`` and ``_get_safe_alternatives``).
HF_DEFAULT_FILE = "pytorch_model.bin"
HF_SAFE_ALTERNATIVES = {"pytorch_model.bin": "model.safetensors",
                        "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


def _hub_candidates(filename: str) -> list[str]:
    """The files timm tries for a hub weight file name, in its order: safetensors first."""
    if filename.endswith(".safetensors"):
        return [filename]
    safe = HF_SAFE_ALTERNATIVES.get(filename) or (filename[:-4] + ".safetensors" if filename.endswith(".bin") else None)
    return [safe, filename] if safe else [filename]


def hub_weight_file(name: str) -> tuple[Path, str] | None:
    """``(file, revision)``: the file in the local Hugging Face cache that timm loads ``name``'s pretrained
    weights from, and the commit of the snapshot that holds it (``refs/main``, or the ``@revision`` of the
    model's ``hf_hub_id``); None when the cache holds none (or the model has no hub weights).

    Cache layout: ``$HF_HUB_CACHE/models--<org>--<name>/snapshots/<revision>/<file>``; nothing is downloaded.
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # no hub client, or a name timm has no pretrained configuration for
        return None
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    if not hub_id:
        return None
    repository, _, revision = hub_id.partition("@")
    for filename in _hub_candidates(getattr(cfg, "hf_hub_filename", None) or HF_DEFAULT_FILE):
        found = try_to_load_from_cache(repository, filename, revision=revision or None)
        if isinstance(found, str):  # not None, and not the "known not to exist" marker
            path = Path(found)
            snapshot = next((folder for folder in path.parents if folder.parent.name == "snapshots"), path.parent)
            return path, snapshot.name
    return None


def _in_hf_cache(name: str) -> bool:
    """Are ``name``'s timm weights in the local Hugging Face cache?"""
    return hub_weight_file(name) is not None


def weights_available(spec: str, weights_dir: str | Path | None = None) -> bool:
    """True when ``spec`` resolves without the network (random specs always do)."""
    parsed = ModelSpec.parse(spec)
    if parsed.random:
        return True
    if parsed.weights_file:
        return Path(parsed.weights_file).is_file()
    if _local_weight_file(parsed.name, weights_dir)[0] is not None:
        return True
    return _in_hf_cache(parsed.name)


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
