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
* ``inconclusive``    it straddles the margin, too few images were measured, the measurement sits at
  a floor where it cannot tell, or position could produce the same number;
* ``not testable``    these weights cannot speak to the claim.

Each claim's sentence, kind and paper reference live beside its rule (:data:`CLAIMS`): a ``judge_*``
function takes plain numbers and :class:`~analysis.stats.Interval` s and returns a :class:`Judgement`
that carries them, so a page turns it into a table row with :meth:`Claim.of` and every rule is
unit-tested at and around its margin. Random-init twins are *controls*, not claims: :func:`control`
checks that an untrained network has no high-norm tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import pandas as pd

from .stats import EVERY_EQUAL, Interval, images_to_settle


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
class ClaimText:
    """What a claim says, of which kind it is, and where the paper says it."""

    page: str
    kind: Kind
    sentence: str
    paper: str


#: Every claim the study judges, keyed by the rule that judges it. A rule may refine ``paper`` per model.
CLAIMS: dict[str, ClaimText] = {
    "outliers": ClaimText("norm_histogram", Kind.PAPER, "has a few high-norm output tokens (or none, as stated)",
                          "DINOv2, DeiT-III and OpenCLIP have them, DINO has none (Fig. 3); other models: not stated"),
    "attention": ClaimText("attention_maps", Kind.MECHANISM,
                           "last-layer CLS attention concentrates on the high-norm patches",
                           "bright background spots in the attention maps are the high-norm tokens (Fig. 2, 5)"),
    "layer_onset": ClaimText("layer_dependence", Kind.MECHANISM,
                             "high-norm tokens appear from a middle block on, not in the early blocks",
                             "from about layer 15 of 40 in DINOv2 ViT-g (Fig. 4a); other models: not stated"),
    "layer_onset_paper": ClaimText("layer_dependence", Kind.PAPER,
                                   "high-norm tokens appear from about block 15 of 40",
                                   "from about layer 15 of 40 in DINOv2 ViT-g (Fig. 4a)"),
    "size": ClaimText("model_size", Kind.PAPER, "high-norm tokens appear only in the largest sizes",
                      "only ViT-L, H and g of a series trained alike have them (Fig. 4c)"),
    "training_onset": ClaimText("training_time", Kind.MECHANISM,
                                "high-norm tokens appear only after about a third of training",
                                "DINOv2 ViT-g, after about a third of training (Fig. 4b)"),
    "redundancy": ClaimText("redundancy", Kind.MECHANISM,
                            "high-norm tokens sit on patches similar to their 4 neighbours",
                            "cosine to the neighbours right after patch embedding is high at outliers (Fig. 5a)"),
    "local_information": ClaimText("information_probes", Kind.MECHANISM,
                                   "high-norm tokens hold less local information than normal ones",
                                   "DINOv2 ViT-g: position top-1 41.7% (normal) vs 22.8% (high-norm), pixel error 18.38 vs 25.23 (Table 1)"),
    "global_information": ClaimText("information_probes", Kind.MECHANISM,
                                    "a high-norm token predicts the image class better than a normal patch",
                                    "DINOv2 ViT-g on ImageNet: CLS 86.0%, normal patch 65.8%, high-norm 69.0% (Table 1)"),
    "registers": ClaimText("registers", Kind.PAPER, "with registers the high-norm patch tokens vanish",
                           "DINOv2 trained with 4 registers has no outlier patch tokens (Fig. 7)"),
    "norm_in_registers": ClaimText("registers", Kind.PAPER, "the high norms move into the register tokens",
                                   "the registers carry the high norm instead (Sec. 3, Fig. 8)"),
    "registers_released": ClaimText("registers", Kind.MECHANISM,
                                    "a released twin trained with registers has (almost) none of the high-norm "
                                    "patch tokens its twin without has",
                                    "registers remove the artifact (Sec. 3, Fig. 7); the released DINOv2 S/B/L "
                                    "with and without registers are distilled from the ViT-g pair"),
    "norm_in_registers_released": ClaimText("registers", Kind.MECHANISM,
                                            "in a released twin trained with registers, the registers carry the high "
                                            "norm instead",
                                            "the registers carry the high norm instead (Sec. 3, Fig. 8)"),
    "test_time_registers": ClaimText("test_time_registers", Kind.MECHANISM,
                                     "moving a few units onto an extra token removes the outliers",
                                     "Jiang et al. 2025: test-time registers remove the high-norm tokens"),
    "test_time_attention": ClaimText("test_time_registers", Kind.MECHANISM,
                                     "once the units move, CLS attention on the former outlier patches falls to "
                                     "about their area share",
                                     "Jiang et al. 2025: attention maps clean up with a test-time register"),
    "discovery": ClaimText("object_discovery", Kind.MECHANISM,
                           "LOST finds objects better once the outliers are gone",
                           "LOST's CorLoc improves with registers (Table 3)"),
    "discovery_registers": ClaimText("object_discovery", Kind.PAPER,
                                     "LOST finds objects better on DINOv2 trained with registers",
                                     "CorLoc of DINOv2 with registers above without (Table 3)"),
}


@dataclass(frozen=True)
class Judgement:
    """A rule's output: the verdict, why, the rule itself, what was measured and the interval it read.

    ``claim`` names the entry of :data:`CLAIMS` (``paper`` refines its reference for one model).
    """

    verdict: Verdict
    reason: str
    rule: str = ""
    interval: Interval | None = None
    claim: str = ""
    measured: str = ""
    paper: str = ""


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
    def of(cls, model: str, weights: str, judgement: Judgement) -> "Claim":
        """The table row of ``judgement`` about ``model`` (short name) with the weights it rests on."""
        text = CLAIMS[judgement.claim]
        return cls(text.page, text.kind, model, text.sentence, judgement.paper or text.paper,
                   judgement.measured or judgement.reason, judgement.verdict, judgement.reason, judgement.rule,
                   weights)

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
# What the paper says about named models. Nothing else is expected of any model: only checkpoints
# the paper itself reports, each with the figure that reports it.

#: Models the paper reports *with* high-norm outlier tokens.
PAPER_WITH_OUTLIERS: dict[str, str] = {
    "vit_giant_patch14_dinov2.lvd142m": "about 2% of DINOv2 ViT-g output tokens above norm 150 (Fig. 3)",
    "deit3_base_patch16_224.fb_in22k_ft_in1k": "supervised DeiT-III ViT-B shows the artifact (Fig. 2, Table 2)",
    "vit_base_patch16_clip_224.laion2b": "OpenCLIP ViT-B shows the artifact (Fig. 2, Table 2)",
}
#: Models the paper reports *without* them.
PAPER_WITHOUT_OUTLIERS: dict[str, str] = {
    "vit_base_patch16_224.dino": "DINO ViT-B/16 output norms stay below 100, no outliers (Fig. 3)",
    "vit_giant_patch14_reg4_dinov2.lvd142m": "DINOv2 ViT-g trained with registers has no outliers (Fig. 7)",
}
#: Where the paper gives its own numeric definition of "high norm" for a model (Fig. 3).
PAPER_CUTOFF: dict[str, float] = {"vit_giant_patch14_dinov2.lvd142m": 150.0,  # "about 2 % above 150"
                                  "vit_base_patch16_224.dino": 100.0}  # "DINO stays below 100"
#: Checkpoints of the series the size figure is about (Fig. 4c: sizes trained alike, from scratch). The public
#: DINOv2 S/B/L are *distilled* from ViT-g, so they cannot speak to it; the paper's series is not released.
PAPER_SIZE_SERIES: list[str] = []
#: Distilled releases: measured and shown on the size page, never judged.
DISTILLED = {f"vit_{s}_patch14_{reg}dinov2.lvd142m" for s in ("small", "base", "large") for reg in ("", "reg4_")}
#: Pairs (without, with registers) the register claims speak of: the ViT-g the paper trains with registers.
PAPER_REGISTER_PAIRS = {"vit_giant_patch14_dinov2.lvd142m": "vit_giant_patch14_reg4_dinov2.lvd142m"}


def paper_expectation(model: str) -> bool | None:
    """True/False when the paper says ``model`` has/lacks high-norm tokens; None when it says nothing."""
    if model in PAPER_WITH_OUTLIERS:
        return True
    if model in PAPER_WITHOUT_OUTLIERS:
        return False
    return None


def paper_statement(model: str) -> str:
    return PAPER_WITH_OUTLIERS.get(model) or PAPER_WITHOUT_OUTLIERS.get(model) or "the paper does not test this model"


def named_models() -> pd.DataFrame:
    """The paper's statements about named checkpoints, one row each (model, has outliers, figure)."""
    rows = [{"model": m, "has_outliers": True, "paper": s} for m, s in PAPER_WITH_OUTLIERS.items()]
    rows += [{"model": m, "has_outliers": False, "paper": s} for m, s in PAPER_WITHOUT_OUTLIERS.items()]
    return pd.DataFrame(rows)


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


def band_rule(interval: Interval, low: float, high: float) -> Verdict:
    """Reproduced when the interval lies inside ``[low, high]``, not reproduced when it lies wholly
    outside it, inconclusive otherwise (or when it was not measured)."""
    if math.isnan(interval.low) or math.isnan(interval.high):
        return Verdict.INCONCLUSIVE
    if low <= interval.low and interval.high <= high:
        return Verdict.REPRODUCED
    if interval.high < low or interval.low > high:
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


def _too_few(interval: Interval) -> bool:
    return bool(getattr(interval, "too_few", False))


def _judge(claim: str, interval: Interval, margin: float, rule: str, fmt: str, above: bool = True,
           strict: bool = False, name: str = "value") -> Judgement:
    verdict = interval_rule(interval, margin, above, strict)
    measured = f"{name} {interval.text(fmt)}"
    if _too_few(interval):
        return Judgement(verdict, f"{name} {interval.estimate:{fmt}} on {interval.n} images: too few images to "
                         "decide", rule, interval, claim, measured)
    reason = f"{measured} ({_method_words(interval)}, n={interval.n})"
    if verdict is Verdict.INCONCLUSIVE:
        needed = None if _too_few(interval) else images_to_settle(interval, margin)
        reason += (f": the interval straddles the margin; about {needed} images would likely settle it"
                   if needed else ": too few images to decide" if _too_few(interval) else
                   ": no interval could be computed" if math.isnan(interval.low) or math.isnan(interval.high)
                   else ": the interval straddles the margin")
    return Judgement(verdict, reason, rule, interval, claim, measured)


def _method_words(interval: Interval) -> str:
    """The interval's method for a reason that already shows its text: an all-equal interval's text says "every
    resample equal", so its method ("every resample equal (zero width, bootstrap over images)") drops those words."""
    prefix = f"{EVERY_EQUAL} ("
    if interval.every_resample_equal and interval.method.startswith(prefix) and interval.method.endswith(")"):
        return interval.method[len(prefix):-1]
    return interval.method


def _single_valued(claim: str, rule: str, measured: str, interval: Interval) -> Judgement | None:
    """Inconclusive when every resample gave the same value: a zero-width interval that says nothing about the
    statistic's uncertainty (one token of a kind, a lattice of a few images) cannot decide a comparison."""
    if interval.every_resample_equal:
        return Judgement(Verdict.INCONCLUSIVE, f"{measured}: every resample gave the same value, so the interval "
                         "says nothing about its uncertainty", rule, interval, claim, measured)
    return None


def _not_measurable(interval: Interval | None) -> str | None:
    """The reason a comparison could not be measured (e.g. too few tokens of a kind at the same positions), as the
    statistic's own ``method`` says it; None when it was measured or gives no such reason."""
    if interval is None or not interval.method.startswith("not measurable"):
        return None
    return interval.method


def _untestable(claim: str, reason: str, rule: str = "", measured: str = "") -> Judgement:
    return Judgement(Verdict.NOT_TESTABLE, reason, rule, None, claim, measured)


def not_applicable(claim: str, model: str, what: str = "a CLS token") -> Judgement:
    """A claim about something the model does not have (e.g. CLS attention in SigLIP)."""
    return Judgement(Verdict.NOT_TESTABLE, f"not applicable: {model} has no {what}", "", None, claim)


def _confounded(claim: str, rule: str, measured: str, interval: Interval | None, why: str) -> Judgement:
    return Judgement(Verdict.INCONCLUSIVE, f"confounded by position: {why}", rule, interval, claim, measured)


# ---------------------------------------------------------------------------------------------
# Negative controls (random-init twins).

@dataclass(frozen=True)
class Control:
    """A negative control's outcome: ``passed`` True (as expected), False (failed) or None (the detector cannot
    tell, so the control shows nothing either way)."""

    model: str
    expectation: str
    measured: str
    passed: bool | None

    @property
    def result(self) -> str:
        return {True: "as expected", False: "CONTROL FAILED", None: "cannot tell"}[self.passed]

    def line(self) -> str:
        return f"{self.model}: {self.measured} ({self.expectation}: {self.result})"


def control(model: str, bimodal: bool, outlier_share: float, undecided: bool = False, reason: str = "") -> Control:
    """A random-init network must have no high-norm mode: anything else means the measurement is off. A detector
    that cannot tell (``undecided``, with its ``reason``) has not shown the control clean: ``passed`` is None."""
    if bimodal or outlier_share > 0:
        passed, measured = False, f"{outlier_share:.1%} high-norm tokens"
    elif undecided:
        passed, measured = None, "the detector cannot tell" + (f" ({reason})" if reason else "")
    else:
        passed, measured = True, f"{outlier_share:.1%} high-norm tokens"
    return Control(model, "random init has no high-norm tokens", measured, passed=passed)


def controls_sentence(passed: list[bool | None]) -> str:
    """The negative controls in one clause, from each one's ``passed`` (True, False, None: cannot tell)."""
    total, failed = len(passed), sum(p is False for p in passed)
    unsure = sum(p is None or (isinstance(p, float) and math.isnan(p)) for p in passed)
    if total == 0:
        return "no negative controls in this run"
    if failed == 0 and unsure == 0:
        return f"all {total} negative controls behave as expected"
    parts = ([f"{failed} of {total} negative controls FAILED"] if failed else []) + (
        [f"the detector cannot tell for {unsure} of {total}"] if unsure else [])
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# "Has outliers" — decided from the share interval, never from a point flag.

#: "A few" high-norm tokens: at most this share of the output patch tokens (the paper's ViT-g: ~2%).
MAX_OUTLIER_SHARE = 0.10


#: The paper's outliers lie 3-11x above the median norm (DINOv2 ViT-g: median about 50, outliers above 150). The
#: share of tokens above this many times their own image's median (:func:`analysis.findings.paper_line_share`) is
#: read beside the detector: where no mode is found, tokens at the line in a share that matters keep a run from
#: saying "has none"; where a mode is found, its tokens must reach the line for "has outliers". Fixed from the
#: paper's numbers, not fitted on twins or models.
PAPER_MEDIAN_LINE = 3.0
#: A share above the line matters when its interval lies above this: the detector's "too small to matter"
#: (metrics.MIN_UPPER_SHARE, 0.1 %), fixed in advance. Above 0 alone, three stray tokens in 100 images of a heavy
#: but unimodal bulk would make "has none" unreachable, more so the more images a run has.
LINE_MIN_SHARE = 1e-3


def has_outliers(bimodal: bool, share: Interval, undecided: bool = False, line_share: Interval | None = None
                 ) -> bool | None:
    """Does the run show high-norm tokens? True: a separated high-norm mode whose share interval lies wholly above 0
    (and, given ``line_share``, tokens above the paper's line in a share that matters). False: no mode, and no such
    share above the line. None, undecided: the detector could not decide (``undecided``), a mode whose interval
    reaches 0 or could not be computed (too few images), a mode whose tokens do not reach the line, or no mode while
    tokens at the line matter (or too few images to tell whether they do)."""
    if _cannot_tell(bimodal, undecided, line_share):
        return None
    if not bimodal:
        return False
    return True if share.low > 0 else None


def _cannot_tell(bimodal: bool, undecided: bool, line_share: Interval | None) -> bool:
    """The readings that leave presence open whatever the share interval: the detector is undecided, it finds no
    mode while tokens at the paper's line matter (:func:`line_blocks_none`), or it finds one whose tokens do not
    reach the line (:func:`_line_supports_mode`)."""
    return undecided or (line_blocks_none(line_share) if not bimodal else not _line_supports_mode(line_share))


def line_blocks_none(line_share: Interval | None) -> bool:
    """Tokens above the paper's line keep "has none" from being said: their share interval lies above
    :data:`LINE_MIN_SHARE`, or there are some and too few images to bound them (nan ends)."""
    if line_share is None or line_share.estimate == 0:
        return False
    return not line_share.low <= LINE_MIN_SHARE  # nan ends: cannot tell, so no "none"


def _line_supports_mode(line_share: Interval | None) -> bool:
    """A found mode reaches the paper's line: its share above it lies above :data:`LINE_MIN_SHARE` (no reading at
    the line: the mode alone decides)."""
    return line_share is None or line_share.low > LINE_MIN_SHARE


UNDECIDED = ("cannot tell whether the model has high-norm tokens: the detector could not decide, a mode was found "
             "but its share interval reaches 0 or could not be computed (too few images) or its tokens do not reach "
             f"{PAPER_MEDIAN_LINE:g}x the image median, or no mode was found while tokens above that line are there")


def _undecided(claim: str, rule: str) -> Judgement:
    return Judgement(Verdict.INCONCLUSIVE, UNDECIDED, rule, None, claim)


def _outlier_gate(claim: str, rule: str, random_weights: bool, has_outliers: bool | None,
                  without: str) -> Judgement | None:
    """The verdict of a mechanism claim that its model cannot reach (random weights, undecided or no
    outliers, ``without`` saying why), or None when the rule goes on to read its interval."""
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if has_outliers is None:
        return _undecided(claim, rule)
    if not has_outliers:
        return _untestable(claim, without, rule)
    return None


def judge_outliers(model: str, random_weights: bool, bimodal: bool, share: Interval,
                   paper_share: Interval | None = None, undecided: bool = False,
                   line_share: Interval | None = None, detector_reason: str = "") -> Judgement:
    """Paper claim: ``model`` has (or lacks) a small high-norm mode, as the paper says it does.

    ``share``: share of output patch tokens above the adaptive cutoff; ``paper_share``: above the
    paper's own cutoff where the paper defines one for this model (:data:`PAPER_CUTOFF`), judged
    beside it — both definitions must agree for *reproduced*. ``undecided``: the detector could not decide
    (``detector_reason`` says why); ``line_share``: the share above :data:`PAPER_MEDIAN_LINE` times the median,
    read where no mode is found (:func:`has_outliers`).
    """
    rule = (f"has outliers: a separated high-norm mode whose share interval lies in (0, {MAX_OUTLIER_SHARE:.0%}], "
            f"its tokens reaching {PAPER_MEDIAN_LINE:g}x the image median (and so does the share above the paper's own cutoff, "
            f"where it gives one); has none: no separated mode, and no share above {PAPER_MEDIAN_LINE:g}x the image "
            f"median over {LINE_MIN_SHARE:.1%} (or a share interval at 0); a detector that cannot decide: inconclusive")
    claim = "outliers"
    measured = f"share {share.text('.2%')}"
    if undecided:
        measured += f"; the detector cannot decide: {detector_reason or 'too few tokens'}"
    elif not bimodal:
        measured += " (no separated high-norm mode)"
        measured += f"; above {PAPER_MEDIAN_LINE:g}x the image median: {line_share.text('.2%')}" if line_share else ""
    if paper_share is not None and model in PAPER_CUTOFF:
        measured += f"; above the paper's {PAPER_CUTOFF[model]:g}: {paper_share.text('.2%')}"
    if random_weights:
        return _untestable(claim, RANDOM, rule, measured)
    expected = paper_expectation(model)
    if expected is None:
        return _untestable(claim, NO_STATEMENT, rule, measured)
    judged = outlier_presence(expected, bimodal, share, paper_share if model in PAPER_CUTOFF else None, undecided,
                              line_share)
    return Judgement(judged.verdict, measured + judged.reason, rule, share, claim, measured, paper_statement(model))


def outlier_presence(expected: bool, bimodal: bool, share: Interval, paper_share: Interval | None = None,
                     undecided: bool = False, line_share: Interval | None = None) -> Judgement:
    """The rule of :func:`judge_outliers` without the model's name: does the run show a few high-norm tokens
    (``expected`` True) or none (False)? With ``paper_share`` (a fixed cutoff's reading, which needs no mode to
    be found) both readings must agree for *reproduced*; both must fail for *not reproduced*. The adaptive reading
    is inconclusive when the detector is ``undecided``, when it finds no mode but ``line_share`` (above
    :data:`PAPER_MEDIAN_LINE` times each image's median) matters or cannot be bounded, or when it finds a mode whose
    tokens do not reach that line (:func:`has_outliers`)."""
    unsure = _cannot_tell(bimodal, undecided, line_share)
    below_line = unsure and bimodal and not undecided
    readings = [(bimodal, share, unsure)] + ([(True, paper_share, False)] if paper_share is not None else [])
    verdicts = [Verdict.INCONCLUSIVE if cannot_tell else
                _few_outliers(found, interval) if expected else _no_outliers(found, interval)
                for found, interval, cannot_tell in readings]
    if all(v is Verdict.REPRODUCED for v in verdicts):
        verdict = Verdict.REPRODUCED
    elif all(v is Verdict.NOT_REPRODUCED for v in verdicts):
        verdict = Verdict.NOT_REPRODUCED
    else:
        verdict = Verdict.INCONCLUSIVE
    reason = (": the two definitions disagree" if len(set(verdicts)) > 1 else
              f": a separated mode, but its tokens do not reach {PAPER_MEDIAN_LINE:g}x their image's median in a share "
              f"above {LINE_MIN_SHARE:.1%} in every resample" if below_line else
              f": no separated mode, yet tokens above {PAPER_MEDIAN_LINE:g}x their image's median in a share above "
              f"{LINE_MIN_SHARE:.1%} (or too few images to bound it)" if unsure and not undecided else "")
    return Judgement(verdict, reason, "", share, "outliers")


def _few_outliers(bimodal: bool, share: Interval) -> Verdict:
    if not bimodal or share.high <= 0:
        return Verdict.NOT_REPRODUCED
    if math.isnan(share.low) or math.isnan(share.high):
        return Verdict.INCONCLUSIVE
    if share.low > 0 and share.high <= MAX_OUTLIER_SHARE:
        return Verdict.REPRODUCED
    return Verdict.NOT_REPRODUCED if share.low > MAX_OUTLIER_SHARE else Verdict.INCONCLUSIVE


def _no_outliers(bimodal: bool, share: Interval) -> Verdict:
    if not bimodal or share.high <= 0:
        return Verdict.REPRODUCED
    return Verdict.NOT_REPRODUCED if share.low > 0 else Verdict.INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# Mechanism rules.

#: High-norm patches must draw at least this many times the CLS attention of normal patches at the same
#: grid positions (position-matched), or of their area share where nothing is pinned.
MIN_ATTENTION_ENRICHMENT = 2.0


ATTENTION_RULE = (f"CLS attention on high-norm patches / their area share >= {MIN_ATTENTION_ENRICHMENT:g}x (interval), "
                  "and, against normal patches at the same positions, too; pinned outliers: confounded by position")


def judge_attention(random_weights: bool, has_outliers: bool, enrichment: Interval, pinned: bool = False,
                    matched: Interval | None = None) -> Judgement:
    """Mechanism: where a model has high-norm patches, last-layer CLS attention concentrates on them.

    ``enrichment``: CLS attention share on high-norm patches / their area share; ``matched``: the same
    against normal patches at the same grid positions; ``pinned``: the outliers never leave their positions,
    so attention to those positions cannot be told from attention to the outliers.
    """
    claim, rule = "attention", ATTENTION_RULE
    if gate := _outlier_gate(claim, rule, random_weights, has_outliers,
                             "no high-norm patches in this model: nothing to attend to"):
        return gate
    measured = f"enrichment {enrichment.text('.1f')}" + (
        f", position-matched {matched.text('.1f')}" if matched is not None else "")
    if pinned:
        return _confounded(claim, rule, measured, enrichment,
                           "the outliers sit at the same grid positions in (almost) every image, so attention to "
                           "them cannot be told from attention to those positions")
    if single := _single_valued(claim, rule, measured, enrichment):
        return single
    judged = _judge(claim, enrichment, MIN_ATTENTION_ENRICHMENT, rule, ".1f", name="enrichment")
    if matched is None or math.isnan(matched.estimate):  # too few of both kinds at the same positions
        why = _not_measurable(matched)
        reason = judged.reason + (f"; {why}, so the area share alone decides" if why else "")
        return Judgement(judged.verdict, reason, rule, enrichment, claim, measured)
    matched_verdict = interval_rule(matched, MIN_ATTENTION_ENRICHMENT)
    if matched.every_resample_equal and matched_verdict is Verdict.REPRODUCED:
        matched_verdict = Verdict.INCONCLUSIVE  # a zero-width reading (>= the minimum pairs) may fail, never pass
    verdict = both(judged.verdict, matched_verdict)
    if verdict is judged.verdict:  # the area-share reason, naming both readings
        reason = judged.reason.replace(f"enrichment {enrichment.text('.1f')}", measured, 1)
    elif verdict is Verdict.NOT_REPRODUCED:
        reason = (measured + ": the position-matched reading decides (at the same positions, normal patches draw "
                  "comparable attention)")
    else:
        reason = measured + ": the position-matched reading does not clear the margin"
    return Judgement(verdict, reason, rule, enrichment, claim, measured)


def both(first: Verdict, second: Verdict) -> Verdict:
    """The verdict of a claim that needs two readings: reproduced when both are, not reproduced when either is
    not, inconclusive otherwise."""
    if first is Verdict.REPRODUCED and second is Verdict.REPRODUCED:
        return Verdict.REPRODUCED
    if Verdict.NOT_REPRODUCED in (first, second):
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


#: The paper's onset: about layer 15 of 40 in DINOv2 ViT-g, read as relative depth …
PAPER_ONSET = 15 / 40
#: … within this band ("about": plus or minus 5 of 40 blocks), judged on that model only.
ONSET_BAND = (10 / 40, 20 / 40)
ONSET_MODELS = ("vit_giant_patch14_dinov2.lvd142m",)
#: On any other model the mechanism says only "from a middle block on, not in the early blocks": the study reads
#: that as an onset in the middle half of the depth (neither in the first quarter nor only in the last).
MIDDLE_BAND = (0.25, 0.75)


def judge_layer_onset(random_weights: bool, onset: Interval, depth: int, model: str = "",
                      exact: bool = True) -> Judgement:
    """High-norm tokens appear from a middle block on (paper: about 15 of 40 in DINOv2 ViT-g).

    ``onset``: relative depth (block index / depth) of the first block from which every block has a
    separated high-norm mode, with its interval over images; a resample in which no block has one counts
    as onset 1 (beyond the last block), so it weighs against the claim instead of being dropped. On the paper's
    model (``model`` in :data:`ONSET_MODELS`) the paper's claim: inside :data:`ONSET_BAND`; on any other, the
    mechanism: inside :data:`MIDDLE_BAND`. ``exact`` False (:func:`analysis.findings.onset_is_exact`: the block just
    before the onset cannot be read as having none) means the mode may start earlier than read: only "too early"
    still stands (earlier is earlier still); anything else is *inconclusive*.
    """
    paper = model in ONSET_MODELS
    low, high = ONSET_BAND if paper else MIDDLE_BAND
    rule = (f"relative onset (first block of a separated high-norm mode kept to the last, / depth) inside "
            f"[{low:.1%}, {high:.1%}] (interval)"
            + (f", around the paper's {PAPER_ONSET:.1%}" if paper else ", the middle half of the depth"))
    claim = "layer_onset_paper" if paper else "layer_onset"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if math.isnan(onset.estimate):
        return _untestable(claim, "no block has a separated high-norm mode", rule)
    measured = f"onset {onset.text('.0%')} of {depth} blocks"
    verdict = band_rule(onset, low, high)
    reason = f"{measured} ({onset.method}, n={onset.n})"
    if not exact and not (verdict is Verdict.NOT_REPRODUCED and onset.high < low):
        verdict = Verdict.INCONCLUSIVE
        reason += (": the block just before the onset cannot be read as having none (the detector cannot tell there, "
                   f"or tokens above {PAPER_MEDIAN_LINE:g}x their image's median matter there), so the mode may start "
                   "earlier than read")
    elif verdict is Verdict.INCONCLUSIVE:
        reason += ": too few images to decide" if _too_few(onset) else ": the interval leaves the band"
    return Judgement(verdict, reason, rule, onset, claim, measured)


def judge_size_trend(sizes: list[tuple[str, bool, bool]]) -> Judgement:
    """Paper claim (Fig. 4c): outliers only in the larger sizes of a series trained alike.

    ``sizes``: ``[(timm name, random weights, has outliers)]``. Judged only on checkpoints of the paper's
    series (:data:`PAPER_SIZE_SERIES`, not public); the released DINOv2 S/B/L are distilled from ViT-g and
    are shown, never judged.
    """
    rule = "checkpoints of the paper's size series (trained alike): the largest has outliers, smaller ones none"
    claim = "size"
    measured = ", ".join(f"{name}: {'outliers' if has else 'none'}" for name, random_weights, has in sizes
                         if not random_weights) or "no pretrained size measured"
    series = [(name, has) for name, random_weights, has in sizes if not random_weights and name in PAPER_SIZE_SERIES]
    if any(not random_weights and name in DISTILLED for name, random_weights, _ in sizes) and len(series) < 2:
        return _untestable(claim, "the released DINOv2 S/B/L are distilled from ViT-g, not trained like the "
                           "paper's size series, so they cannot speak to the claim (measured and shown)", rule,
                           measured)
    if len(series) < 2:
        return _untestable(claim, "needs checkpoints of at least two sizes of the paper's series (not public)",
                           rule, measured)
    series.sort(key=lambda item: PAPER_SIZE_SERIES.index(item[0]))
    flags = [has for _, has in series]
    if not flags[-1]:
        return Judgement(Verdict.NOT_REPRODUCED, "the largest size has no outliers", rule, None, claim, measured)
    if flags[0]:
        return Judgement(Verdict.NOT_REPRODUCED, "the smallest size has outliers too", rule, None, claim, measured)
    onset = flags.index(True)
    if not all(flags[onset:]):
        return Judgement(Verdict.NOT_REPRODUCED, "outliers come and go with size", rule, None, claim, measured)
    return Judgement(Verdict.REPRODUCED, f"outliers from {series[flags.index(True)][0]} up, none at the smallest",
                     rule, None, claim, measured)


#: "About a third of training" (Fig. 4b), read with a factor-1.5 tolerance either way.
PAPER_TRAINING_ONSET = 1 / 3
ONSET_TOLERANCE = 1.5


def judge_training_onset(steps: list[tuple[float, bool, bool]]) -> Judgement:
    """Outliers appear only after part of training, at about a third of it.

    ``steps``: ``[(training fraction, random weights, has outliers)]``; the initialisation (fraction 0)
    may be random. The onset lies between the last checkpoint without and the first with outliers:
    *reproduced* when that bracket lies inside ``[1/3 / 1.5, 1/3 · 1.5]``, *not reproduced* when it lies
    wholly outside, *inconclusive* when it is wider than the band allows.
    """
    low, high = PAPER_TRAINING_ONSET / ONSET_TOLERANCE, PAPER_TRAINING_ONSET * ONSET_TOLERANCE
    rule = f"no outliers at the first checkpoint, outliers at the last, onset bracket inside [{low:.0%}, {high:.0%}]"
    claim = "training_onset"
    trained = [(f, has) for f, random_weights, has in steps if not random_weights or f == 0]
    if any(random_weights and f > 0 for f, random_weights, _ in steps):
        return _untestable(claim, "a trained checkpoint has random weights: " + RANDOM, rule)
    if len(trained) < 3:
        return _untestable(claim, "needs at least three checkpoints of one training run (the paper's are not public)",
                           rule)
    trained.sort()
    if not trained[-1][1]:
        return Judgement(Verdict.NOT_REPRODUCED, "the final checkpoint has no outliers", rule, None, claim)
    if trained[0][1]:
        return Judgement(Verdict.NOT_REPRODUCED, "outliers already at the first checkpoint", rule, None, claim)
    # the onset: the first checkpoint from which every later one has outliers (they may come and go before)
    first = max(i for i, (_, has) in enumerate(trained) if not has) + 1
    bracket = (trained[first - 1][0], trained[first][0])
    measured = f"onset between {bracket[0]:.0%} and {bracket[1]:.0%} of training"
    if bracket[1] < low or bracket[0] > high:
        return Judgement(Verdict.NOT_REPRODUCED, measured + " (far from a third)", rule, None, claim, measured)
    if low <= bracket[0] and bracket[1] <= high:
        return Judgement(Verdict.REPRODUCED, measured, rule, None, claim, measured)
    return Judgement(Verdict.INCONCLUSIVE, measured + ": the bracket is wider than 'about a third'", rule, None,
                     claim, measured)


#: Neighbour similarity must separate high-norm from normal patches at least this well (ROC AUC).
MIN_REDUNDANCY_AUC = 0.6


def judge_redundancy(random_weights: bool, has_outliers: bool, auc: Interval, pinned: bool) -> Judgement:
    """Mechanism: high-norm tokens sit on patches similar to their 4 neighbours (after patch embedding).

    ``auc``: ROC AUC of neighbour cosine stratified by grid position (outliers against non-outliers *within*
    each position, averaged over positions weighted by their outliers); ``pinned``: most outliers sit at
    positions that hold one in (almost) every image, so no within-position comparison speaks for them.
    """
    rule = (f"ROC AUC of neighbour cosine within grid positions (outliers vs. non-outliers at the same position, "
            f"averaged) >= {MIN_REDUNDANCY_AUC} (interval)")
    claim = "redundancy"
    if gate := _outlier_gate(claim, rule, random_weights, has_outliers, "no high-norm patches in this model"):
        return gate
    measured = f"AUC {auc.text('.2f')}"
    if pinned:
        return _confounded(claim, rule, measured, auc,
                           "most outliers sit at grid positions that hold one in (almost) every image, so no "
                           "normal patch at those positions exists to compare them with")
    if math.isnan(auc.estimate):
        why = _not_measurable(auc) or ("no grid position holds an outlier in some images and a normal token in "
                                       "others, so there is nothing to compare within positions")
        return Judgement(Verdict.INCONCLUSIVE, why, rule, auc, claim, measured)
    # no _single_valued here: with at least findings.MIN_MATCHED_PAIRS pairs, an AUC equal in every resample is
    # perfect separation (1), inversion (0) or all ties (0.5): the decisive cases, not a reading from one token
    return _judge(claim, auc, MIN_REDUNDANCY_AUC, rule, ".2f", name="AUC")


def judge_local_information(random_weights: bool, has_outliers: bool, position_gap: Interval,
                            pixel_gap: Interval, pinned: bool = False) -> Judgement:
    """Mechanism: high-norm tokens hold less local information than normal ones.

    ``position_gap``: position top-1 of normal minus high-norm tokens; ``pixel_gap``: pixel error of
    high-norm minus normal tokens. Both must be positive (intervals); either clearly negative fails.
    ``pinned``: the outliers never leave their positions, so a position probe places them trivially.
    """
    rule = ("position top-1 (normal - high-norm) > 0 and pixel error (high-norm - normal) > 0, both intervals; "
            "pinned outliers: confounded by position")
    claim = "local_information"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if has_outliers is None:
        return _undecided(claim, rule)
    if not has_outliers or math.isnan(position_gap.estimate):
        return _untestable(claim, _not_measurable(position_gap) or "no high-norm tokens among the held-out images",
                           rule)
    measured = f"position gap {position_gap.text('.1%')}, pixel-error gap {pixel_gap.text('.2f')}"
    if pinned:
        return _confounded(claim, rule, measured, position_gap,
                           "the outliers always sit at the same grid positions, so a probe can place them from "
                           "their position alone")
    verdicts = [interval_rule(position_gap, 0.0, strict=True), interval_rule(pixel_gap, 0.0, strict=True)]
    reason = f"{measured} (n={position_gap.n})"
    if all(v is Verdict.REPRODUCED for v in verdicts):
        return Judgement(Verdict.REPRODUCED, reason, rule, position_gap, claim, measured)
    if Verdict.NOT_REPRODUCED in verdicts:
        return Judgement(Verdict.NOT_REPRODUCED, reason, rule, position_gap, claim, measured)
    return Judgement(Verdict.INCONCLUSIVE, reason + ": an interval straddles 0", rule, position_gap, claim, measured)


#: Images (with a high-norm token, held out) a class probe needs before its accuracy means anything.
MIN_PROBE_IMAGES = 20


def judge_global_information(random_weights: bool, n_images: int, accuracy_gap: Interval) -> Judgement:
    """Mechanism: one high-norm token predicts the image class better than a normal patch token.

    ``accuracy_gap``: accuracy of the high-norm token minus that of a normal patch, on held-out images.
    """
    rule = f"class accuracy (high-norm - normal patch) > 0 (interval, >= {MIN_PROBE_IMAGES} held-out images)"
    claim = "global_information"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if n_images < MIN_PROBE_IMAGES:
        return _untestable(claim, f"only {n_images} held-out images have a high-norm token (need {MIN_PROBE_IMAGES})",
                           rule, f"accuracy gap {accuracy_gap.text('.1%')}")
    return _judge(claim, accuracy_gap, 0.0, rule, ".1%", strict=True, name="accuracy gap")


#: With registers, the share of patch tokens above the plain model's cutoff (on the common scale: norm / median
#: patch norm) must fall by at least this much.
MIN_REGISTER_REDUCTION = 0.9


def judge_registers(plain: str, with_registers: str, random_weights: bool, plain_has_outliers: bool,
                    reduction: Interval) -> Judgement:
    """Paper claim (DINOv2 ViT-g ± registers): with registers the high-norm patch tokens vanish.

    ``reduction``: 1 - (share of the register model's patch tokens above the plain model's cutoff) /
    (the plain model's share), both on the common scale norm / median patch norm, over the same images.
    """
    rule = (f"the paper's model pair; outlier share on the plain model's scale (cutoff / median) falls by "
            f">= {MIN_REGISTER_REDUCTION:.0%} with registers (interval)")
    claim = "registers"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if PAPER_REGISTER_PAIRS.get(plain) != with_registers:
        if not _is_register_pair(plain, with_registers):
            return _untestable(claim, NO_STATEMENT + " pair", rule)
        # a released DINOv2 pair of another size: the same rule, as the mechanism, only where there are outliers
        claim, rule = "registers_released", rule.replace("the paper's model pair", "a released DINOv2 pair")
    if plain_has_outliers is None:
        return _undecided(claim, rule)
    if not plain_has_outliers:
        return _untestable(claim, "the model without registers has no outliers to remove", rule)
    return register_reduction_rule(reduction, rule, claim)


def register_reduction_rule(reduction: Interval, rule: str = "", claim: str = "registers") -> Judgement:
    """The rule of :func:`judge_registers` without the pair's names: a reduction of at least
    :data:`MIN_REGISTER_REDUCTION`."""
    return _judge(claim, reduction, MIN_REGISTER_REDUCTION, rule, ".0%", name="reduction")


def judge_norm_in_registers(plain: str, with_registers: str, random_weights: bool, registers_ratio: Interval,
                            plain_cutoff_ratio: float, plain_has_outliers: bool | None = None) -> Judgement:
    """Paper claim (DINOv2 ± registers): the high norms move into the register tokens.

    ``registers_ratio``: median register norm / median patch norm in the register model;
    ``plain_cutoff_ratio``: the plain model's outlier cutoff / its median patch norm. The registers
    carry the high norm when they would count as outliers on the plain model's scale.
    """
    rule = "register norm / median patch norm >= the plain model's outlier cutoff / median patch norm (interval)"
    claim = "norm_in_registers"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if PAPER_REGISTER_PAIRS.get(plain) != with_registers:
        if not _is_register_pair(plain, with_registers):
            return _untestable(claim, NO_STATEMENT + " pair", rule)
        claim = "norm_in_registers_released"  # the mechanism on a released DINOv2 pair of another size
        rule = "a released DINOv2 pair whose plain model has outliers; " + rule
        if plain_has_outliers is None:
            return _undecided(claim, rule)
        if not plain_has_outliers:
            return _untestable(claim, "the model without registers has no outliers whose norm could move", rule)
    return norm_in_registers_rule(registers_ratio, plain_cutoff_ratio, rule, claim)


def norm_in_registers_rule(registers_ratio: Interval, plain_cutoff_ratio: float, rule: str = "",
                           claim: str = "norm_in_registers") -> Judgement:
    """The rule of :func:`judge_norm_in_registers` without the pair's names."""
    if not math.isfinite(plain_cutoff_ratio):
        return _untestable(claim, "the model without registers has no outlier cutoff", rule)
    return _judge(claim, registers_ratio, plain_cutoff_ratio, rule, ".1f", name="register/patch norm ratio")


#: The test-time register must remove at least this share of the outliers on held-out images.
MIN_OUTLIER_REDUCTION = 0.9


def judge_test_time_registers(random_weights: bool, has_outliers: bool, n_neurons: int,
                              reduction: Interval) -> Judgement:
    """Mechanism (Jiang et al. 2025): moving a few units onto an extra token removes the outliers.

    ``reduction``: 1 - share after / share before, on images *not* used to choose the units. Unlike a comparison
    of two kinds of token (:func:`_single_valued`), an interval whose resamples are all equal may decide: it arises
    where every held-out image loses the same share of its outliers, all of them at the bound of 100 %.
    """
    rule = (f"outlier share falls by >= {MIN_OUTLIER_REDUCTION:.0%} on held-out images (interval; one whose resamples "
            "are all equal decides too: a fall is bounded by 100%, which every image alike reaches)")
    claim = "test_time_registers"
    if gate := _outlier_gate(claim, rule, random_weights, has_outliers, "the model has no outliers to remove"):
        return gate
    if n_neurons == 0:
        return Judgement(Verdict.NOT_REPRODUCED, "no unit singles out the outlier positions", rule, None, claim)
    return _judge(claim, reduction, MIN_OUTLIER_REDUCTION, rule, ".0%", name="reduction")


#: After the intervention, CLS attention on the former outlier patches / their area share must be at most this
#: (the same factor that, before, marks attention as concentrated on them).
MAX_ATTENTION_AFTER = MIN_ATTENTION_ENRICHMENT


def judge_test_time_attention(random_weights: bool, has_outliers: bool, n_neurons: int,
                              enrichment_after: Interval, enrichment_before: Interval | None = None) -> Judgement:
    """Mechanism (Jiang et al. 2025): with the test-time register, the attention maps clean up.

    ``enrichment_after`` (``enrichment_before``): CLS attention share on the patches that were outliers before the
    intervention over their area share, with (without) the register in place, on the same held-out images. The
    maps can only clean up where attention was concentrated on the outliers before: otherwise not testable.
    """
    rule = (f"before, CLS attention on the outlier patches / their area share >= {MIN_ATTENTION_ENRICHMENT:g}x; "
            f"after the intervention <= {MAX_ATTENTION_AFTER:g}x on the same held-out images (intervals)")
    claim = "test_time_attention"
    if gate := _outlier_gate(claim, rule, random_weights, has_outliers,
                             "the model has no outliers whose attention could fall"):
        return gate
    before = (Verdict.REPRODUCED if enrichment_before is None
              else interval_rule(enrichment_before, MIN_ATTENTION_ENRICHMENT))
    if before is Verdict.NOT_REPRODUCED:
        return _untestable(claim, f"CLS attention was not concentrated on the outliers before the intervention, "
                           f"enrichment {enrichment_before.text('.1f', unit='×')}: nothing to clean up", rule)
    if before is Verdict.INCONCLUSIVE:
        return Judgement(Verdict.INCONCLUSIVE, f"cannot tell whether CLS attention was concentrated on the outliers "
                         f"before the intervention: enrichment {enrichment_before.text('.1f', unit='×')}", rule,
                         enrichment_before, claim)
    if n_neurons == 0:
        return Judgement(Verdict.NOT_REPRODUCED, "no unit singles out the outlier positions", rule, None, claim)
    return _judge(claim, enrichment_after, MAX_ATTENTION_AFTER, rule, ".1f", above=False,
                  name="enrichment after")


#: Images with boxes that LOST's CorLoc needs before a difference means anything.
MIN_DISCOVERY_IMAGES = 8


DISCOVERY_RULE = (f"CorLoc gain (with - without the register) > 0 (interval, >= {MIN_DISCOVERY_IMAGES} images); "
                  "LOST at its floor (whole-image boxes): inconclusive")


def judge_discovery(random_weights: bool, has_outliers: bool, moved: bool, corloc_gain: Interval,
                    at_floor: bool = False) -> Judgement:
    """Mechanism: LOST finds objects better once the outliers are gone.

    ``moved``: the intervention removed outliers; ``corloc_gain``: CorLoc with minus without, paired
    over the same images; ``at_floor``: LOST's box is (almost) the whole image on most images both ways,
    so CorLoc is near 0 by construction and a difference says nothing.
    """
    claim, rule = "discovery", DISCOVERY_RULE
    if gate := _outlier_gate(claim, rule, random_weights, has_outliers,
                             "the model has no outliers on these images: nothing to remove"):
        return gate
    if not moved:
        return _untestable(claim, "the register moved no outlier on these images", rule)
    if corloc_gain.n < MIN_DISCOVERY_IMAGES:
        return _untestable(claim, f"only {corloc_gain.n} annotated images (need {MIN_DISCOVERY_IMAGES})", rule)
    return _discovery_gain(claim, corloc_gain, at_floor, rule)


def judge_discovery_registers(plain: str, with_registers: str, random_weights: bool, corloc_gain: Interval,
                              at_floor: bool = False) -> Judgement:
    """Paper claim (Table 3): LOST's CorLoc is higher on DINOv2 trained with registers than without.

    ``corloc_gain``: per-image hit (IoU ≥ 0.5) with registers minus without, paired over the same images.
    """
    rule = (f"the paper's model pair; CorLoc gain (with - without registers) > 0 (interval, >= "
            f"{MIN_DISCOVERY_IMAGES} images); LOST at its floor: inconclusive")
    claim = "discovery_registers"
    if random_weights:
        return _untestable(claim, RANDOM, rule)
    if not _is_register_pair(plain, with_registers):
        return _untestable(claim, NO_STATEMENT + " pair", rule)
    if corloc_gain.n < MIN_DISCOVERY_IMAGES:
        return _untestable(claim, f"only {corloc_gain.n} annotated images (need {MIN_DISCOVERY_IMAGES})", rule)
    return _discovery_gain(claim, corloc_gain, at_floor, rule)


def _is_register_pair(plain: str, with_registers: str) -> bool:
    """Table 3 compares DINOv2 with and without registers at one size."""
    return ("_patch14_dinov2.lvd142m" in plain and "_reg4_" not in plain
            and with_registers == plain.replace("_patch14_", "_patch14_reg4_"))


def _discovery_gain(claim: str, corloc_gain: Interval, at_floor: bool, rule: str) -> Judgement:
    if at_floor:
        measured = f"CorLoc gain {corloc_gain.text('.1%')}"
        return Judgement(Verdict.INCONCLUSIVE, measured + ": LOST is at its floor (whole-image boxes on most images), "
                         "so CorLoc is near 0 both ways by construction", rule, corloc_gain, claim, measured)
    return _judge(claim, corloc_gain, 0.0, rule, ".1%", strict=True, name="CorLoc gain")
