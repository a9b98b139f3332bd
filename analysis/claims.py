"""The paper's claims and the verdicts this run's numbers give them.

A verdict is one of three words, decided only from measured values:

* ``reproduced``      the measurement agrees with the paper's claim;
* ``not reproduced``  it does not;
* ``not testable``    these weights cannot speak to the claim (random init, missing
  weights, or a model the paper makes no statement about).

Each ``judge_*`` function takes plain numbers (no frames, no models), so each rule is
unit-tested on inputs whose right verdict is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import pandas as pd


class Verdict(str, Enum):
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    NOT_TESTABLE = "not testable"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, checked against one run."""

    page: str
    claim: str  # the paper's claim, in the paper's terms
    paper: str  # the paper's own figure for it
    measured: str  # this run's figure
    verdict: Verdict
    weights: str  # provenance of the weights the verdict rests on
    reason: str = ""  # why this verdict (the rule that fired)

    def as_row(self) -> dict:
        row = asdict(self)
        row["verdict"] = str(self.verdict)
        return row


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    columns = ["page", "claim", "paper", "measured", "verdict", "weights", "reason"]
    return pd.DataFrame([c.as_row() for c in claims], columns=columns)


#: What the paper says about each model's output tokens: True = has high-norm outliers,
#: False = has none, missing = the paper makes no statement about this model.
EXPECTED_ARTIFACTS: dict[str, tuple[bool, str]] = {
    **{
        name: (False, "paper: DINO output norms stay below 100, no outliers")
        for name in (
            "vit_small_patch16_224.dino",
            "vit_base_patch16_224.dino",
            "vit_small_patch8_224.dino",
            "vit_base_patch8_224.dino",
        )
    },
    "vit_large_patch14_dinov2.lvd142m": (True, "paper: outliers in the three largest DINOv2 sizes"),
    "vit_giant_patch14_dinov2.lvd142m": (True, "paper: ~2% of ViT-g output tokens above norm 150"),
    **{
        f"vit_{size}_patch14_reg4_dinov2.lvd142m": (False, "paper: registers remove the outliers")
        for size in ("small", "base", "large", "giant")
    },
    **{
        f"deit3_{size}_patch16_224.fb_in1k": (True, "paper: supervised DeiT-III shows the artifact")
        for size in ("small", "base", "large")
    },
    "vit_base_patch16_clip_224.laion2b": (True, "paper: OpenCLIP shows the artifact"),
    "vit_large_patch14_clip_224.laion2b": (True, "paper: OpenCLIP shows the artifact"),
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": (
        True,
        "like with like: a label-supervised ViT, as DeiT-III in the paper (the paper does not test ViT-Ti)",
    ),
}

#: Below this share of tokens, "a few high-norm tokens" — the paper's ViT-g has ~2%.
MAX_OUTLIER_SHARE = 0.10


def untestable(random_weights: bool, missing: bool = False) -> str | None:
    """Reason a claim cannot be tested with these weights, or None."""
    if missing:
        return "no pretrained weights for this model in this run"
    if random_weights:
        return "random initialisation: an untrained network cannot show a training effect"
    return None


def judge_outliers(
    model: str, random_weights: bool, bimodal: bool, outlier_share: float
) -> tuple[Verdict, str]:
    """Does the model have (or lack) a small high-norm mode, as the paper says it should?"""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if model not in EXPECTED_ARTIFACTS:
        return Verdict.NOT_TESTABLE, "the paper makes no statement about this model"
    expected, _ = EXPECTED_ARTIFACTS[model]
    has_outliers = bimodal and 0 < outlier_share <= MAX_OUTLIER_SHARE
    if has_outliers == expected:
        return Verdict.REPRODUCED, ("a small high-norm mode is present" if has_outliers else "no high-norm mode")
    return Verdict.NOT_REPRODUCED, ("a small high-norm mode is present" if has_outliers else "no high-norm mode")


#: High-norm patches must draw at least this many times their area share of CLS attention.
MIN_ATTENTION_ENRICHMENT = 2.0


def judge_attention(random_weights: bool, outlier_share: float, attention_share: float) -> tuple[Verdict, str]:
    """Do high-norm patches draw a disproportionate share of last-layer CLS attention?"""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if outlier_share <= 0:
        return Verdict.NOT_TESTABLE, "no high-norm patches in this run: nothing to attend to"
    enrichment = attention_share / outlier_share
    verdict = Verdict.REPRODUCED if enrichment >= MIN_ATTENTION_ENRICHMENT else Verdict.NOT_REPRODUCED
    return verdict, f"high-norm patches get {enrichment:.1f}x their area share (rule: >= {MIN_ATTENTION_ENRICHMENT}x)"


#: Outliers must be absent from the first EARLY_FRACTION of the blocks ("appear from a middle layer").
EARLY_FRACTION = 0.25


def judge_layer_onset(random_weights: bool, first_layer: int | None, depth: int) -> tuple[Verdict, str]:
    """Do high-norm tokens appear only from a middle layer on (paper: ~15 of 40)?"""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if first_layer is None:
        return Verdict.NOT_TESTABLE, "no high-norm tokens in any layer"
    relative = first_layer / depth
    if relative >= EARLY_FRACTION:
        return Verdict.REPRODUCED, f"first at block {first_layer} of {depth} ({relative:.0%} of depth)"
    return Verdict.NOT_REPRODUCED, f"already at block {first_layer} of {depth} ({relative:.0%} of depth)"


def judge_size_trend(sizes: list[tuple[str, bool, bool]]) -> tuple[Verdict, str]:
    """Outliers only in larger models: ``sizes`` is ``[(name, random, has_outliers)]`` small → large.

    Reproduced when the largest pretrained size has outliers and some smaller one has none.
    """
    real = [(name, has) for name, random_weights, has in sizes if not random_weights]
    if len(real) < 2:
        return Verdict.NOT_TESTABLE, "needs pretrained weights for at least two sizes of one family"
    flags = [has for _, has in real]
    if not flags[-1]:
        return Verdict.NOT_REPRODUCED, "the largest model has no outliers"
    if all(flags):
        return Verdict.NOT_REPRODUCED, "every size has outliers, also the smallest"
    onset = next(i for i, has in enumerate(flags) if has)
    if any(not has for has in flags[onset:]):
        return Verdict.NOT_REPRODUCED, "outliers come and go with size"
    return Verdict.REPRODUCED, f"outliers from {real[onset][0]} up, none below"


def judge_training_onset(steps: list[tuple[float, bool]]) -> tuple[Verdict, str]:
    """Outliers appear only after part of training: ``steps`` is ``[(training fraction, has_outliers)]``."""
    if len(steps) < 3:
        return Verdict.NOT_TESTABLE, "needs at least three checkpoints along one training run"
    steps = sorted(steps)
    if not steps[-1][1]:
        return Verdict.NOT_REPRODUCED, "the final checkpoint has no outliers"
    if steps[0][1]:
        return Verdict.NOT_REPRODUCED, "outliers already at the first checkpoint"
    onset = next(fraction for fraction, has in steps if has)
    return Verdict.REPRODUCED, f"outliers from {onset:.0%} of training on"


#: Neighbour similarity must separate high-norm from normal patches at least this well.
MIN_REDUNDANCY_AUC = 0.6


def judge_redundancy(
    random_weights: bool, n_high: int, median_high: float, median_normal: float, auc: float
) -> tuple[Verdict, str]:
    """Do high-norm tokens sit on patches similar to their neighbours (after patch embedding)?"""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if n_high == 0 or math.isnan(auc):
        return Verdict.NOT_TESTABLE, "no high-norm patches in this run"
    detail = f"median cosine {median_high:.2f} vs {median_normal:.2f}, AUC {auc:.2f} (rule: AUC >= {MIN_REDUNDANCY_AUC})"
    if median_high > median_normal and auc >= MIN_REDUNDANCY_AUC:
        return Verdict.REPRODUCED, detail
    return Verdict.NOT_REPRODUCED, detail


def judge_registers(
    random_weights: bool, plain_has_outliers: bool, registers_has_outliers: bool, register_norm_ratio: float
) -> tuple[Verdict, str]:
    """Registers remove patch outliers; the high norms move into the registers.

    ``register_norm_ratio``: median register norm / median patch norm in the register model.
    """
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if not plain_has_outliers:
        return Verdict.NOT_TESTABLE, "the model without registers has no outliers to remove"
    if registers_has_outliers:
        return Verdict.NOT_REPRODUCED, "the register model still has high-norm patch tokens"
    return Verdict.REPRODUCED, f"no patch outliers with registers; registers at {register_norm_ratio:.1f}x patch norm"


def judge_test_time_registers(
    random_weights: bool, share_before: float, share_after: float, n_neurons: int
) -> tuple[Verdict, str]:
    """Outliers vanish (≤ 10 % of their share before) once the register neurons are moved."""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if share_before <= 0:
        return Verdict.NOT_TESTABLE, "the model has no outliers to remove"
    if n_neurons == 0:
        return Verdict.NOT_REPRODUCED, "no neuron singles out the outlier positions"
    if share_after <= 0.1 * share_before:
        return Verdict.REPRODUCED, f"outlier share falls from {share_before:.2%} to {share_after:.2%}"
    return Verdict.NOT_REPRODUCED, f"outlier share only falls from {share_before:.2%} to {share_after:.2%}"


def judge_local_information(
    random_weights: bool, n_outliers: int, normal_top1: float, outlier_top1: float,
    normal_error: float, outlier_error: float,
) -> tuple[Verdict, str]:
    """High-norm tokens know less of their position and pixels than normal tokens do."""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if n_outliers == 0:
        return Verdict.NOT_TESTABLE, "no high-norm tokens among the held-out images"
    detail = f"position top-1 {normal_top1:.1%} vs {outlier_top1:.1%}, pixel error {normal_error:.2f} vs {outlier_error:.2f}"
    if outlier_top1 < normal_top1 and outlier_error > normal_error:
        return Verdict.REPRODUCED, detail
    return Verdict.NOT_REPRODUCED, detail


def judge_global_information(
    random_weights: bool, n_images: int, normal_accuracy: float, outlier_accuracy: float, min_images: int = 20
) -> tuple[Verdict, str]:
    """A high-norm token predicts the image class better than a normal patch token."""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if n_images < min_images:
        return Verdict.NOT_TESTABLE, f"only {n_images} images have a high-norm token (need {min_images})"
    detail = f"class accuracy {outlier_accuracy:.1%} (high-norm) vs {normal_accuracy:.1%} (normal patch)"
    verdict = Verdict.REPRODUCED if outlier_accuracy > normal_accuracy else Verdict.NOT_REPRODUCED
    return verdict, detail


def judge_discovery(random_weights: bool, corloc_with: float, corloc_without: float, n_images: int,
                    min_images: int = 8) -> tuple[Verdict, str]:
    """Object discovery (LOST) works better once the outliers are gone (registers, trained or test-time)."""
    if reason := untestable(random_weights):
        return Verdict.NOT_TESTABLE, reason
    if n_images < min_images or math.isnan(corloc_with) or math.isnan(corloc_without):
        return Verdict.NOT_TESTABLE, f"only {n_images} annotated images (need {min_images})"
    detail = f"CorLoc {corloc_without:.1%} without, {corloc_with:.1%} with registers"
    return (Verdict.REPRODUCED if corloc_with > corloc_without else Verdict.NOT_REPRODUCED), detail
