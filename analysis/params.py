"""The three named parameter sets of the book, and the choice between them.

* ``lite`` – real pretrained models a laptop (or one free GPU) runs in minutes: the paper's DINO ViT-B/16,
  DINOv2 ViT-S/14 and ViT-B/14 with and without registers, DeiT-III ViT-B/16 and OpenCLIP ViT-B/16, plus LOST's
  own DINO ViT-S/16 for object discovery (about 2 GB of weights from the hub); the shipped photos at 224 px.
  The paper's ViT-g claims are not judged on it (each page says so).
* ``paper`` – the paper's models and a larger resolution; for a machine with the weights
  (in a local folder, the Hugging Face cache, or the hub). Its images are Imagenette (100 per page, 50 per
  class for the class probe) when ``make images`` has put it in ``data/imagenette``, else the shipped photos
  and digits.
* ``ci`` – the real offline ViT-Ti/16 from ``../shared/weights`` plus explicitly random
  twins for the families without weights; 8 shipped photos a page (16 on the test-time page, which holds half
  of them out); minutes on 2 CPU cores.

Each set maps a page id to the papermill parameters of that page's notebook.
"""

from __future__ import annotations

from pathlib import Path

from .images import BUILTIN_PHOTOS, ORIGINAL_PHOTOS_SOURCE, imagenette_available
from .models import CENSUS, OFFLINE_MODEL, ModelSpec, weights_available
from .voc import voc_available, voc_folder

TINY = OFFLINE_MODEL

COMMON_CI = {"image_source": "builtin", "n_images": 8, "resolution": 224, "seed": 0, "threshold": 150.0}
#: The paper measured thousands of ImageNet images; the ``paper`` set draws 100 per page from Imagenette (10 ImageNet
#: classes, ``make images``) and 50 per class for the class probe, whether or not Imagenette is on the machine that
#: plans the run (the plan counts what the published book will draw; a page without it stops with one line).
IMAGENETTE = imagenette_available()
PAPER_IMAGES = {"image_source": "imagenette", "n_images": 100}
#: The lite set's class probe: Imagenette when ``make images`` put it here (20 per class), else the digits.
LITE_LABELLED = {"labelled_source": "imagenette" if IMAGENETTE else "digits", "per_class": 20}
PAPER_LABELLED = {"labelled_source": "imagenette", "per_class": 50}
#: Object discovery reads VOC 2007 trainval (LOST's and the paper's Table 3 set) when ``make voc`` put it here, else
#: the planted set (the page then says its CorLoc is not comparable with Table 3); a seeded sample either way.
VOC = {"voc_root": str(voc_folder()), "voc_split": "trainval"} if voc_available() else {}
COMMON_PAPER = {**PAPER_IMAGES, "resolution": 448, "seed": 0, "threshold": 150.0}
#: Pages that draw their own (labelled or annotated) images take everything but the image sample.
UNLABELLED_CI = {k: v for k, v in COMMON_CI.items() if k not in ("image_source", "n_images")}
UNLABELLED_PAPER = {k: v for k, v in COMMON_PAPER.items() if k not in ("image_source", "n_images")}
#: The test-time page chooses its units on half its images and judges them on the other half, and an interval needs
#: :data:`analysis.stats.MIN_IMAGES` (8) images: 8 drawn would leave 4 held out, inconclusive by construction.
CI_TEST_TIME_IMAGES = 16
#: The validation page's twins were calibrated on the 12 photos the study shipped first: every set draws exactly
#: those (:data:`analysis.images.ORIGINAL_PHOTOS_SOURCE`), so photos added to the shipped ones leave it unchanged.
VALIDATION_IMAGES = {"image_source": ORIGINAL_PHOTOS_SOURCE, "n_images": 12}

CI: dict[str, dict] = {
    "attention_maps": {
        **COMMON_CI,
        "models": [TINY, f"random:{TINY}", "random:vit_small_patch14_reg4_dinov2.lvd142m"],
    },
    "norm_histogram": {**COMMON_CI, "models": [TINY, f"random:{TINY}"]},
    "layer_dependence": {**{k: v for k, v in COMMON_CI.items() if k != "threshold"}, "model": TINY},
    "model_size": {
        **COMMON_CI,
        "models": ["random:vit_small_patch14_dinov2.lvd142m", "random:vit_base_patch14_dinov2.lvd142m"],
    },
    "training_time": {**COMMON_CI, "model": TINY, "checkpoints": ["random", "pretrained"], "training_fractions": [0.0, 1.0]},
    "redundancy": {**COMMON_CI, "model": TINY},
    "registers": {
        **COMMON_CI,
        "models": ["random:vit_small_patch14_dinov2.lvd142m", "random:vit_small_patch14_reg4_dinov2.lvd142m"],
    },
    "information_probes": {**UNLABELLED_CI, "model": TINY, "labelled_source": "digits", "per_class": 20},
    "test_time_registers": {**COMMON_CI, "n_images": CI_TEST_TIME_IMAGES, "model": TINY},
    "object_discovery": {**UNLABELLED_CI, "models": [TINY, f"random:{TINY}"], "n_discovery": 16},
    "census": {**COMMON_CI, "models": ["available"], "controls": [f"random:{TINY}"]},
    "claims": {},
    "summary": {},
    "your_image": {**{k: v for k, v in COMMON_CI.items() if k not in ("image_source", "n_images")},
                   "image": "builtin:chelsea", "models": [TINY, f"random:{TINY}"]},
    "validation": {**{k: v for k, v in COMMON_CI.items() if k != "threshold"}, **VALIDATION_IMAGES},
    "quality": {},
}

PAPER: dict[str, dict] = {
    "attention_maps": {
        **COMMON_PAPER,
        "models": [
            "vit_base_patch16_224.dino",
            "vit_giant_patch14_dinov2.lvd142m",
            "deit3_base_patch16_224.fb_in22k_ft_in1k",
            "vit_base_patch16_clip_224.laion2b",
            "vit_giant_patch14_reg4_dinov2.lvd142m",
        ],
    },
    "norm_histogram": {**COMMON_PAPER, "models": ["vit_base_patch16_224.dino", "vit_giant_patch14_dinov2.lvd142m"]},
    "layer_dependence": {**{k: v for k, v in COMMON_PAPER.items() if k != "threshold"},
                         "model": "vit_giant_patch14_dinov2.lvd142m"},
    "model_size": {
        **COMMON_PAPER,
        "models": [
            "vit_small_patch14_dinov2.lvd142m",
            "vit_base_patch14_dinov2.lvd142m",
            "vit_large_patch14_dinov2.lvd142m",
            "vit_giant_patch14_dinov2.lvd142m",
        ],
    },
    "training_time": {
        **COMMON_PAPER,
        "model": "vit_giant_patch14_dinov2.lvd142m",
        "checkpoints": ["random", "pretrained"],
        "training_fractions": [0.0, 1.0],
    },
    "redundancy": {**COMMON_PAPER, "model": "vit_giant_patch14_dinov2.lvd142m"},
    "registers": {
        **COMMON_PAPER,
        "models": ["vit_giant_patch14_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m"],
    },
    "information_probes": {**UNLABELLED_PAPER, "model": "vit_giant_patch14_dinov2.lvd142m", **PAPER_LABELLED},
    "test_time_registers": {**COMMON_PAPER, "model": "vit_large_patch14_dinov2.lvd142m"},
    "object_discovery": {**UNLABELLED_PAPER, **VOC, "resolution": 224, "n_discovery": 1000,
                         "models": ["vit_small_patch16_224.dino", "vit_small_patch14_dinov2.lvd142m",
                                    "vit_small_patch14_reg4_dinov2.lvd142m"]},
    "census": {**COMMON_PAPER, "resolution": 224, "models": CENSUS, "controls": [f"random:{TINY}"]},
    "claims": {},
    "summary": {},
    "your_image": {**{k: v for k, v in COMMON_PAPER.items() if k not in ("image_source", "n_images")},
                   "image": "builtin:chelsea",
                   "models": ["vit_base_patch16_224.dino", "vit_giant_patch14_dinov2.lvd142m",
                              "vit_giant_patch14_reg4_dinov2.lvd142m"]},
    "validation": {**{k: v for k, v in COMMON_CI.items() if k != "threshold"}, **VALIDATION_IMAGES},
    "quality": {},
}

#: The ``lite`` set's models (timm names): every weight file it downloads, about 2 GB in all.
DINO_B16 = "vit_base_patch16_224.dino"
DINO_S16 = "vit_small_patch16_224.dino"  # LOST's own model (CorLoc 61.9 on VOC 2007 in the LOST paper)
DINOV2_S14, DINOV2_S14_REG = "vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m"
DINOV2_B14, DINOV2_B14_REG = "vit_base_patch14_dinov2.lvd142m", "vit_base_patch14_reg4_dinov2.lvd142m"
DEIT3_B16 = "deit3_base_patch16_224.fb_in22k_ft_in1k"
OPENCLIP_B16 = "vit_base_patch16_clip_224.laion2b"
LITE_MODELS = [DINO_B16, DINOV2_S14, DINOV2_S14_REG, DINOV2_B14, DINOV2_B14_REG, DEIT3_B16, OPENCLIP_B16, DINO_S16]
#: Every shipped photo (no download besides the weights), at 224 px: minutes on a laptop's CPU.
COMMON_LITE = {"image_source": "builtin", "n_images": len(BUILTIN_PHOTOS), "resolution": 224, "seed": 0,
               "threshold": 150.0}
UNLABELLED_LITE = {k: v for k, v in COMMON_LITE.items() if k not in ("image_source", "n_images")}

LITE: dict[str, dict] = {
    "attention_maps": {**COMMON_LITE, "models": [DINO_B16, DINOV2_B14, DEIT3_B16, OPENCLIP_B16, DINOV2_B14_REG]},
    "norm_histogram": {**COMMON_LITE, "models": [DINO_B16, DINOV2_B14]},
    "layer_dependence": {**{k: v for k, v in COMMON_LITE.items() if k != "threshold"}, "model": DINOV2_B14},
    "model_size": {**COMMON_LITE, "models": [DINOV2_S14, DINOV2_B14]},
    "training_time": {**COMMON_LITE, "model": DINOV2_B14, "checkpoints": ["random", "pretrained"],
                      "training_fractions": [0.0, 1.0]},
    "redundancy": {**COMMON_LITE, "model": DINOV2_B14},
    "registers": {**COMMON_LITE, "models": [DINOV2_B14, DINOV2_B14_REG]},
    "information_probes": {**UNLABELLED_LITE, "model": DINOV2_B14, **LITE_LABELLED},
    "test_time_registers": {**COMMON_LITE, "model": DINOV2_B14},
    "object_discovery": {**UNLABELLED_LITE, **VOC, "n_discovery": 100,
                         "models": [DINO_S16, DINOV2_B14, DINOV2_B14_REG, DEIT3_B16, OPENCLIP_B16]},
    "census": {**COMMON_LITE, "models": [m for m in LITE_MODELS], "controls": [f"random:{DINOV2_B14}"]},
    "claims": {},
    "summary": {},
    "your_image": {**UNLABELLED_LITE, "image": "builtin:chelsea", "models": [DINO_B16, DINOV2_B14, DINOV2_B14_REG]},
    "validation": {**{k: v for k, v in COMMON_CI.items() if k != "threshold"}, **VALIDATION_IMAGES},
    "quality": {},
}

SETS = {"ci": CI, "lite": LITE, "paper": PAPER}


def dry_run_set(specs: list[str], n_images: int = 2, device: str = "auto") -> dict[str, dict]:
    """The ``paper`` set's pages with their models replaced by random-init ``specs`` at full size.

    Proves the mechanics, time and memory of each page for models whose weights are not here: a page on
    several models gets all of ``specs`` (the registers page: without, then with registers), a page on one
    model the first. Each page keeps its own resolution, draws ``n_images`` shipped photos (one digit per
    class for the probe page) and has no controls beside the models themselves.
    """
    controls = [f"random:{ModelSpec.parse(spec).name}" for spec in specs]
    smaller = {"n_images": n_images, "n_discovery": n_images, "per_class": 1, "image_source": "builtin",
               "labelled_source": "digits", "controls": [], "models": controls, "model": controls[0]}
    dry = {}
    for page, parameters in PAPER.items():
        dry[page] = {name: smaller.get(name, value) for name, value in parameters.items()}
        if "resolution" in parameters:  # a page that runs a model
            dry[page]["device"] = device
    return dry


def models_of(parameter_set: dict[str, dict]) -> list[str]:
    """Every model spec a parameter set needs, in first-use order."""
    seen: dict[str, None] = {}
    for params in parameter_set.values():
        for spec in params.get("models", []) + ([params["model"]] if "model" in params else []):
            if spec != "available":  # the census's word for "whatever this machine has"
                seen.setdefault(spec, None)
    return list(seen)


def missing_weights(name: str, weights_dir: str | Path | None = None) -> list[str]:
    """Models of set ``name`` whose weights cannot be had without the network."""
    return [spec for spec in models_of(SETS[name]) if not weights_available(spec, weights_dir)]


def choose(name: str, weights_dir: str | Path | None = None) -> str:
    """``auto`` → the richest set whose weights are all available offline (paper, then lite); else ``name``."""
    if name != "auto":
        if name not in SETS:
            raise ValueError(f"unknown parameter set {name!r}; choose one of: auto, {', '.join(SETS)}")
        return name
    return next((candidate for candidate in ("paper", "lite") if not missing_weights(candidate, weights_dir)), "ci")
