"""The paper's claims, the verdicts this run's numbers give them, and the negative controls.

Two kinds of claim:

* **the paper's claims about named models** (DINO has no high-norm tokens, DINOv2 ViT-g does, …):
  judged only on the models the paper names; any other model gets *not testable*;
* **the mechanism, conditional on outliers** ("where a model has high-norm tokens, they …"):
  testable on any *pretrained* model that has them; the page then says the model is one the
  paper does not test.

A verdict is one of four words, decided from an interval over images, never from a bare number:

* ``reproduced``      the interval clears the rule's margin on the claim's side;
* ``not reproduced``  it clears the margin on the other side;
* ``inconclusive``    it straddles the margin (the page says how many images would likely settle it);
* ``not testable``    these weights cannot speak to the claim.

Random-init twins are *controls*, not claims: :func:`control` checks that an untrained network has
no high-norm tokens. Each ``judge_*`` takes plain numbers and :class:`~analysis.stats.Interval` s, so
every rule is unit-tested at and around its margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import pandas as pd

from .stats import Interval, images_to_settle


class Verdict(str, Enum):
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"
    NOT_TESTABLE = "not testable"

    def __str__(self) -> str:
        return self.value


class Kind(str, Enum):
    PAPER = "the paper's claim about named models"
    MECHANISM = "mechanism, conditional on outliers"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Judgement:
    """A rule's output: the verdict, why, the rule itself and the interval it read."""

    verdict: Verdict
    reason: str
    rule: str = ""
    interval: Interval | None = None


@dataclass(frozen=True)
class Claim:
    """One claim, checked against one run on one model."""

    page: str
    kind: Kind
    model: str  # short model name the verdict is about
    claim: str  # the claim, in the paper's terms
    paper: str  # the paper's own figure for it
    measured: str  # this run's figure, with its interval
    verdict: Verdict
    reason: str  # why this verdict
    rule: str  # the rule and its margin
    weights: str  # provenance of the weights the verdict rests on

    @classmethod
    def of(cls, page: str, kind: Kind, model: str, claim: str, paper: str, measured: str,
           judgement: Judgement, weights: str) -> "Claim":
        return cls(page, kind, model, claim, paper, measured, judgement.verdict, judgement.reason,
                   judgement.rule, weights)

    def as_row(self) -> dict:
        row = asdict(self)
        row["verdict"], row["kind"] = str(self.verdict), str(self.kind)
        return row


CLAIM_COLUMNS = ["page", "kind", "model", "claim", "paper", "measured", "verdict", "reason", "rule", "weights"]


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([c.as_row() for c in claims], columns=CLAIM_COLUMNS)


def headline(verdicts: list[Verdict | str]) -> str:
    """A page's headline: ``reproduced`` only when every testable claim is; otherwise the counts."""
    verdicts = [Verdict(v) for v in verdicts]
    if not verdicts:
        return "no claim evaluated"
    testable = [v for v in verdicts if v is not Verdict.NOT_TESTABLE]
    untested = len(verdicts) - len(testable)
    if testable and all(v is Verdict.REPRODUCED for v in testable):
        return str(Verdict.REPRODUCED) + (f" ({untested} {Verdict.NOT_TESTABLE})" if untested else "")
    counts = [(v, sum(1 for x in verdicts if x is v)) for v in Verdict]
    return ", ".join(f"{count} {verdict}" for verdict, count in counts if count)


# ---------------------------------------------------------------------------------------------
# What the paper says about named models. Nothing else is expected of any model.

#: Models the paper reports *with* high-norm outlier tokens (Sec. 2, Fig. 2-4).
PAPER_WITH_OUTLIERS: dict[str, str] = {
    "vit_large_patch14_dinov2.lvd142m": "outliers in the three largest DINOv2 sizes (Fig. 4c)",
    "vit_giant_patch14_dinov2.lvd142m": "about 2% of DINOv2 ViT-g output tokens above norm 150 (Fig. 3)",
    **{f"deit3_{s}_patch16_224.fb_in1k": "supervised DeiT-III shows the artifact (Fig. 2)" for s in ("base", "large")},
    "vit_base_patch16_clip_224.laion2b": "OpenCLIP shows the artifact (Fig. 2)",
    "vit_large_patch14_clip_224.laion2b": "OpenCLIP shows the artifact (Fig. 2)",
}
#: Models the paper reports *without* them.
PAPER_WITHOUT_OUTLIERS: dict[str, str] = {
    **{name: "DINO output norms stay below 100, no outliers (Fig. 3)" for name in (
        "vit_small_patch16_224.dino", "vit_base_patch16_224.dino", "vit_small_patch8_224.dino",
        "vit_base_patch8_224.dino")},
    **{f"vit_{s}_patch14_dinov2.lvd142m": "no outliers below the three largest DINOv2 sizes (Fig. 4c)"
       for s in ("small", "base")},
    **{f"vit_{s}_patch14_reg4_dinov2.lvd142m": "registers remove the outliers (Fig. 7)"
       for s in ("small", "base", "large", "giant")},
}
#: The family the size claim speaks of, small → large (Fig. 4c: only L, H and g have outliers).
PAPER_SIZE_FAMILY = ["vit_small_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m",
                     "vit_large_patch14_dinov2.lvd142m", "vit_giant_patch14_dinov2.lvd142m"]
#: Pairs (without, with registers) the register claim speaks of.
PAPER_REGISTER_PAIRS = {f"vit_{s}_patch14_dinov2.lvd142m": f"vit_{s}_patch14_reg4_dinov2.lvd142m"
                        for s in ("small", "base", "large", "giant")}


def paper_expectation(model: str) -> bool | None:
    """True/False when the paper says ``model`` has/lacks high-norm tokens; None when it says nothing."""
    if model in PAPER_WITH_OUTLIERS:
        return True
    if model in PAPER_WITHOUT_OUTLIERS:
        return False
    return None


def paper_statement(model: str) -> str:
    return PAPER_WITH_OUTLIERS.get(model) or PAPER_WITHOUT_OUTLIERS.get(model) or "the paper does not test this model"


NO_STATEMENT = "the paper makes no statement about this model"
RANDOM = "random initialisation: an untrained network cannot show what training does"


# ---------------------------------------------------------------------------------------------
# The one interval rule every measured claim goes through.

def interval_rule(interval: Interval, margin: float, above: bool = True, strict: bool = False) -> Verdict:
    """Reproduced when the whole interval is on the claim's side of ``margin``, not reproduced when
    the whole interval is on the other side, inconclusive when it straddles (or was not measured).

    ``above``: the claim says the value is at least ``margin`` (``strict``: more than ``margin``).
    """
    low, high = interval.low, interval.high
    if math.isnan(low) or math.isnan(high):
        return Verdict.INCONCLUSIVE
    if not above:  # mirror: "value at most margin"
        low, high, margin = -high, -low, -margin
    passes = low > margin if strict else low >= margin
    fails = high <= margin if strict else high < margin
    if passes:
        return Verdict.REPRODUCED
    if fails:
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


def _judge(interval: Interval, margin: float, rule: str, fmt: str, above: bool = True, strict: bool = False,
           name: str = "value") -> Judgement:
    verdict = interval_rule(interval, margin, above, strict)
    reason = f"{name} {interval.text(fmt)} ({interval.method}, n={interval.n})"
    if verdict is Verdict.INCONCLUSIVE:
        needed = images_to_settle(interval, margin)
        reason += (f": the interval straddles the margin; about {needed} images would likely settle it"
                   if needed else ": the interval straddles the margin")
    return Judgement(verdict, reason, rule, interval)


def _untestable(reason: str, rule: str = "") -> Judgement:
    return Judgement(Verdict.NOT_TESTABLE, reason, rule)


def not_applicable(model: str, what: str = "a CLS token") -> Judgement:
    """A claim about something the model does not have (e.g. CLS attention in SigLIP)."""
    return Judgement(Verdict.NOT_TESTABLE, f"not applicable: {model} has no {what}", "")


# ---------------------------------------------------------------------------------------------
# Negative controls (random-init twins).

@dataclass(frozen=True)
class Control:
    model: str
    expectation: str
    measured: str
    passed: bool

    def line(self) -> str:
        status = "as expected" if self.passed else "CONTROL FAILED"
        return f"{self.model}: {self.measured} ({self.expectation}: {status})"


def control(model: str, bimodal: bool, outlier_share: float) -> Control:
    """A random-init network must have no high-norm mode: anything else means the measurement is off."""
    return Control(model, "random init has no high-norm tokens", f"{outlier_share:.1%} high-norm tokens",
                   passed=not bimodal and outlier_share == 0)


# ---------------------------------------------------------------------------------------------
# The rules, page by page.

#: "A few" high-norm tokens: at most this share of the output patch tokens (the paper's ViT-g: ~2%).
MAX_OUTLIER_SHARE = 0.10


def judge_outliers(model: str, random_weights: bool, bimodal: bool, share: Interval) -> Judgement:
    """Paper claim: ``model`` has (or lacks) a small high-norm mode, as the paper says it does."""
    rule = (f"has outliers: a separated high-norm mode whose share interval lies in (0, {MAX_OUTLIER_SHARE:.0%}]; "
            "has none: no separated mode")
    if random_weights:
        return _untestable(RANDOM, rule)
    expected = paper_expectation(model)
    if expected is None:
        return _untestable(NO_STATEMENT, rule)
    few = bimodal and share.low > 0 and share.high <= MAX_OUTLIER_SHARE
    found = f"share {share.text('.2%')}" + ("" if bimodal else " (no separated high-norm mode)")
    if expected:
        verdict = Verdict.REPRODUCED if few else (
            Verdict.INCONCLUSIVE if bimodal and share.estimate <= MAX_OUTLIER_SHARE else Verdict.NOT_REPRODUCED)
    else:
        verdict = Verdict.REPRODUCED if not bimodal else Verdict.NOT_REPRODUCED
    return Judgement(verdict, found, rule, share)


#: High-norm patches must draw at least this many times their area share of CLS attention.
MIN_ATTENTION_ENRICHMENT = 2.0


def judge_attention(random_weights: bool, has_outliers: bool, enrichment: Interval) -> Judgement:
    """Mechanism: where a model has high-norm patches, last-layer CLS attention concentrates on them."""
    rule = f"CLS attention on high-norm patches / their area share >= {MIN_ATTENTION_ENRICHMENT:g}x (interval)"
    if random_weights:
        return _untestable(RANDOM, rule)
    if not has_outliers:
        return _untestable("no high-norm patches in this model: nothing to attend to", rule)
    return _judge(enrichment, MIN_ATTENTION_ENRICHMENT, rule, ".1f", name="enrichment")


#: Outliers must be absent from the first EARLY_FRACTION of the blocks ("appear from a middle layer on").
EARLY_FRACTION = 0.25


def judge_layer_onset(random_weights: bool, onset: Interval, depth: int) -> Judgement:
    """Mechanism: high-norm tokens appear from a middle block on (paper: about 15 of 40 in ViT-g).

    ``onset``: relative depth (block index / depth) of the first block from which every block has a
    separated high-norm mode, with its interval over images.
    """
    rule = f"first block with a separated high-norm mode (kept to the last block) at >= {EARLY_FRACTION:.0%} of depth"
    if random_weights:
        return _untestable(RANDOM, rule)
    if math.isnan(onset.estimate):
        return _untestable("no block has a separated high-norm mode", rule)
    return _judge(onset, EARLY_FRACTION, rule, ".0%", name=f"onset (of {depth} blocks)")


def judge_size_trend(sizes: list[tuple[str, bool, bool]]) -> Judgement:
    """Paper claim (DINOv2, Fig. 4c): outliers only in the larger sizes.

    ``sizes``: ``[(timm name, random weights, has outliers)]``. Judged only on pretrained DINOv2 sizes.
    """
    rule = "pretrained DINOv2 sizes: the largest has outliers, some smaller one has none, none reappear below"
    named = [(name, has) for name, random_weights, has in sizes if not random_weights and name in PAPER_SIZE_FAMILY]
    named.sort(key=lambda item: PAPER_SIZE_FAMILY.index(item[0]))
    if len(named) < 2:
        return _untestable("needs pretrained weights for at least two DINOv2 sizes (the family the paper measures)",
                           rule)
    flags = [has for _, has in named]
    if not flags[-1]:
        return Judgement(Verdict.NOT_REPRODUCED, "the largest size has no outliers", rule)
    if all(flags):
        return Judgement(Verdict.NOT_REPRODUCED, "every size has outliers, also the smallest", rule)
    onset = flags.index(True)
    if not all(flags[onset:]):
        return Judgement(Verdict.NOT_REPRODUCED, "outliers come and go with size", rule)
    return Judgement(Verdict.REPRODUCED, f"outliers from {named[onset][0]} up, none below", rule)


#: "About a third of training" (Fig. 4b), read with a factor-1.5 tolerance either way.
PAPER_TRAINING_ONSET = 1 / 3
ONSET_TOLERANCE = 1.5


def judge_training_onset(steps: list[tuple[float, bool, bool]]) -> Judgement:
    """Outliers appear only after part of training, at about a third of it.

    ``steps``: ``[(training fraction, random weights, has outliers)]``; the initialisation (fraction 0)
    may be random. The onset lies between the last checkpoint without and the first with outliers.
    """
    low, high = PAPER_TRAINING_ONSET / ONSET_TOLERANCE, PAPER_TRAINING_ONSET * ONSET_TOLERANCE
    rule = f"no outliers at the first checkpoint, outliers at the last, onset bracket overlaps [{low:.0%}, {high:.0%}]"
    trained = [(f, has) for f, random_weights, has in steps if not random_weights or f == 0]
    if any(random_weights and f > 0 for f, random_weights, _ in steps):
        return _untestable("a trained checkpoint has random weights: " + RANDOM, rule)
    if len(trained) < 3:
        return _untestable("needs at least three checkpoints of one training run (the paper's are not public)", rule)
    trained.sort()
    if not trained[-1][1]:
        return Judgement(Verdict.NOT_REPRODUCED, "the final checkpoint has no outliers", rule)
    if trained[0][1]:
        return Judgement(Verdict.NOT_REPRODUCED, "outliers already at the first checkpoint", rule)
    first = next(i for i, (_, has) in enumerate(trained) if has)
    bracket = (trained[first - 1][0], trained[first][0])
    reason = f"onset between {bracket[0]:.0%} and {bracket[1]:.0%} of training"
    if bracket[1] < low or bracket[0] > high:
        return Judgement(Verdict.NOT_REPRODUCED, reason + " (far from a third)", rule)
    return Judgement(Verdict.REPRODUCED, reason, rule)


#: Neighbour similarity must separate high-norm from normal patches at least this well (ROC AUC).
MIN_REDUNDANCY_AUC = 0.6


def judge_redundancy(random_weights: bool, has_outliers: bool, auc: Interval, pinned: bool) -> Judgement:
    """Mechanism: high-norm tokens sit on patches similar to their 4 neighbours (after patch embedding).

    ``auc``: position-matched ROC AUC of neighbour cosine (outliers against non-outliers at the same
    grid positions); ``pinned``: the outliers never leave their positions, so no such match exists.
    """
    rule = (f"position-matched ROC AUC of neighbour cosine (outliers vs. non-outliers at the same grid positions) "
            f">= {MIN_REDUNDANCY_AUC} (interval)")
    if random_weights:
        return _untestable(RANDOM, rule)
    if not has_outliers:
        return _untestable("no high-norm patches in this model", rule)
    if pinned or math.isnan(auc.estimate):
        return Judgement(Verdict.INCONCLUSIVE, "confounded by position: the outliers sit at the same grid positions in "
                         "(almost) every image, so no non-outlier patch at those positions exists to compare with", rule, auc)
    return _judge(auc, MIN_REDUNDANCY_AUC, rule, ".2f", name="AUC")


def judge_local_information(random_weights: bool, has_outliers: bool, position_gap: Interval,
                            pixel_gap: Interval) -> Judgement:
    """Mechanism: high-norm tokens hold less local information than normal ones.

    ``position_gap``: position top-1 of normal minus high-norm tokens; ``pixel_gap``: pixel error of
    high-norm minus normal tokens. Both must be positive (intervals); either clearly negative fails.
    """
    rule = "position top-1 (normal - high-norm) > 0 and pixel error (high-norm - normal) > 0, both intervals"
    if random_weights:
        return _untestable(RANDOM, rule)
    if not has_outliers or math.isnan(position_gap.estimate):
        return _untestable("no high-norm tokens among the held-out images", rule)
    verdicts = [interval_rule(position_gap, 0.0, strict=True), interval_rule(pixel_gap, 0.0, strict=True)]
    reason = f"position gap {position_gap.text('.1%')}, pixel-error gap {pixel_gap.text('.2f')} (n={position_gap.n})"
    if all(v is Verdict.REPRODUCED for v in verdicts):
        return Judgement(Verdict.REPRODUCED, reason, rule, position_gap)
    if Verdict.NOT_REPRODUCED in verdicts:
        return Judgement(Verdict.NOT_REPRODUCED, reason, rule, position_gap)
    return Judgement(Verdict.INCONCLUSIVE, reason + ": an interval straddles 0", rule, position_gap)


#: Images (with a high-norm token, held out) a class probe needs before its accuracy means anything.
MIN_PROBE_IMAGES = 20


def judge_global_information(random_weights: bool, n_images: int, accuracy_gap: Interval) -> Judgement:
    """Mechanism: one high-norm token predicts the image class better than a normal patch token.

    ``accuracy_gap``: accuracy of the high-norm token minus that of a normal patch, on held-out images.
    """
    rule = f"class accuracy (high-norm - normal patch) > 0 (interval, >= {MIN_PROBE_IMAGES} held-out images)"
    if random_weights:
        return _untestable(RANDOM, rule)
    if n_images < MIN_PROBE_IMAGES:
        return _untestable(f"only {n_images} held-out images have a high-norm token (need {MIN_PROBE_IMAGES})", rule)
    return _judge(accuracy_gap, 0.0, rule, ".1%", strict=True, name="accuracy gap")


def judge_registers(plain: str, with_registers: str, random_weights: bool, plain_has_outliers: bool,
                    registers_share: Interval) -> Judgement:
    """Paper claim (DINOv2 ± registers): with registers the high-norm patch tokens vanish."""
    rule = "model pair the paper trains; the register model's outlier-share interval is 0"
    if random_weights:
        return _untestable(RANDOM, rule)
    if PAPER_REGISTER_PAIRS.get(plain) != with_registers:
        return _untestable(NO_STATEMENT + " pair", rule)
    if not plain_has_outliers:
        return _untestable("the model without registers has no outliers to remove", rule)
    verdict = interval_rule(registers_share, 0.0, above=False)
    return Judgement(verdict, f"outlier share with registers {registers_share.text('.2%')}", rule, registers_share)


def judge_norm_in_registers(plain: str, with_registers: str, random_weights: bool, registers_ratio: Interval,
                            plain_cutoff_ratio: float) -> Judgement:
    """Paper claim (DINOv2 ± registers): the high norms move into the register tokens.

    ``registers_ratio``: median register norm / median patch norm in the register model;
    ``plain_cutoff_ratio``: the plain model's outlier cutoff / its median patch norm. The registers
    carry the high norm when they would count as outliers on the plain model's scale.
    """
    rule = "register norm / median patch norm >= the plain model's outlier cutoff / median patch norm (interval)"
    if random_weights:
        return _untestable(RANDOM, rule)
    if PAPER_REGISTER_PAIRS.get(plain) != with_registers:
        return _untestable(NO_STATEMENT + " pair", rule)
    if not math.isfinite(plain_cutoff_ratio):
        return _untestable("the model without registers has no outlier cutoff", rule)
    return _judge(registers_ratio, plain_cutoff_ratio, rule, ".1f", name="register/patch norm ratio")


#: The test-time register must remove at least this share of the outliers on held-out images.
MIN_OUTLIER_REDUCTION = 0.9


def judge_test_time_registers(random_weights: bool, has_outliers: bool, n_neurons: int,
                              reduction: Interval) -> Judgement:
    """Mechanism (Jiang et al. 2025): moving a few units onto an extra token removes the outliers.

    ``reduction``: 1 - share after / share before, on images *not* used to choose the units.
    """
    rule = f"outlier share falls by >= {MIN_OUTLIER_REDUCTION:.0%} on held-out images (interval)"
    if random_weights:
        return _untestable(RANDOM, rule)
    if not has_outliers:
        return _untestable("the model has no outliers to remove", rule)
    if n_neurons == 0:
        return Judgement(Verdict.NOT_REPRODUCED, "no unit singles out the outlier positions", rule)
    return _judge(reduction, MIN_OUTLIER_REDUCTION, rule, ".0%", name="reduction")


#: Images with boxes that LOST's CorLoc needs before a difference means anything.
MIN_DISCOVERY_IMAGES = 8


def judge_discovery(random_weights: bool, has_outliers: bool, moved: bool, corloc_gain: Interval) -> Judgement:
    """Mechanism: LOST finds objects better once the outliers are gone.

    ``moved``: the intervention removed outliers; ``corloc_gain``: CorLoc with minus without, paired
    over the same images.
    """
    rule = f"CorLoc gain (with - without the register) > 0 (interval, >= {MIN_DISCOVERY_IMAGES} images)"
    if random_weights:
        return _untestable(RANDOM, rule)
    if not has_outliers:
        return _untestable("the model has no outliers on these images: nothing to remove", rule)
    if not moved:
        return _untestable("the register moved no outlier on these images", rule)
    if corloc_gain.n < MIN_DISCOVERY_IMAGES:
        return _untestable(f"only {corloc_gain.n} annotated images (need {MIN_DISCOVERY_IMAGES})", rule)
    return _judge(corloc_gain, 0.0, rule, ".1%", strict=True, name="CorLoc gain")
