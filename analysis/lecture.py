"""The lecturer's layer: the answers to a page's exercises, as sentences filled from this run's numbers.

A finding page ends in exercises (``{exercise}`` / ``{solution}`` blocks of sphinx-exercise). Their solutions must
stay true when the page reruns with other parameters, so they never type a number: each function here takes what
the page has measured (plain numbers, :class:`~analysis.stats.Interval` s, its tables) and returns one Markdown
sentence; the page hands it to ``page.publish(answer_…=lecture.….(...))``, which glues it, and the solution shows
it with ``{glue:md}`answer_…```. Every function says what it can in each state a run can leave it in: a value,
not measured, too few images for an interval, no high-norm tokens, a random-init control. Intervals are read
against a rule's margin the way the rules read them (:func:`analysis.claims.interval_rule`).

Nothing here measures anything except :func:`strict_threshold_answer`, which recounts the redundancy page's AUC
for the stricter threshold its exercise asks about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import claims
from .claims import Verdict
from .stats import Interval

#: The paper's order of the finding pages, then the census and the claims table: each page's "Next" link.
READING_ORDER = ("attention_maps", "norm_histogram", "layer_dependence", "model_size", "training_time", "redundancy",
                 "information_probes", "registers", "test_time_registers", "object_discovery", "census", "claims")

#: The fixed thresholds of the norm histogram's exercise (its text names them).
HISTOGRAM_THRESHOLDS = (50.0, 400.0)
#: The stricter fixed threshold of the redundancy page's exercise (its text names it).
STRICT_THRESHOLD = 300.0
#: The hypothetical run of the training-time exercise: (share of training, random weights, has outliers) per
#: checkpoint, and the checkpoint its second question adds (its text names them).
TRAINING_STEPS = ((0.0, True, False), (0.1, False, False), (0.5, False, True), (1.0, False, True))
TRAINING_ADDED = 0.25
#: The released DINOv2 sizes of the model-size exercise, small to large (its text names them).
DISTILLED_SIZES = ("vit_small_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m",
                   "vit_large_patch14_dinov2.lvd142m")


def next_page(page: str) -> str | None:
    """The page after ``page`` in :data:`READING_ORDER` (None for the last)."""
    index = READING_ORDER.index(page)
    return READING_ORDER[index + 1] if index + 1 < len(READING_ORDER) else None


def _missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _name(spec: str) -> str:
    from .plots import short_name  # plots imports matplotlib styles; only a page's answers need it

    return short_name(spec)


def _unknown(flag) -> bool:
    """A ``has_outliers`` that says "cannot tell" (None, or nan once it has been through a table)."""
    return flag is None or (isinstance(flag, float) and math.isnan(flag))


# --- reading an interval against a rule's margin --------------------------------------------------------------------


def side(interval: Interval, margin: float, fmt: str = ".2f", above: bool = True, strict: bool = False,
         unit: str = "") -> str:
    """Where ``interval`` lies against ``margin``, in words: ``"lies wholly at or above 2.0×"``, ``"straddles
    2.0×"``, ``"has no interval to read against 2.0×"``, ``"is not measured"``. ``above``/``strict`` as in
    :func:`analysis.claims.interval_rule`."""
    shown = f"{margin:{fmt}}{unit}"
    if math.isnan(interval.estimate):
        return "is not measured"
    if math.isnan(interval.low) or math.isnan(interval.high):
        return f"has no interval to read against {shown}"
    verdict = claims.interval_rule(interval, margin, above, strict)
    if verdict is Verdict.INCONCLUSIVE:
        return f"straddles {shown}"
    claim_side = verdict is Verdict.REPRODUCED
    if above:
        where = ("wholly above" if strict else "wholly at or above") if claim_side else \
            ("wholly at or below" if strict else "wholly below")
    else:
        where = ("wholly below" if strict else "wholly at or below") if claim_side else \
            ("wholly at or above" if strict else "wholly above")
    return f"lies {where} {shown}"


def against(interval: Interval, margin: float, fmt: str = ".2f", above: bool = True, strict: bool = False,
            unit: str = "") -> str:
    """A clause that reads ``interval`` against ``margin``: ``"the whole interval lies at or above 2.0×"``, ``"the
    interval straddles 2.0×"``, ``"there is no interval to read against 2.0×"``, ``"nothing was measured"``."""
    where = side(interval, margin, fmt, above, strict, unit)
    if where.startswith("lies "):
        return f"the whole interval {where.replace('wholly ', '')}"
    if where.startswith("straddles"):
        return f"the interval {where}"
    if where == "is not measured":
        return "nothing was measured"
    return f"there is no interval to read against {margin:{fmt}}{unit}"


def reading(interval: Interval, margin: float, fmt: str = ".2f", above: bool = True, strict: bool = False,
            unit: str = "") -> str:
    """``interval`` with where it lies against ``margin`` (:func:`side`): ``"21.4 [14.8, 28.8], which lies wholly at
    or above 2.0"``; ``"not measured"`` without a value."""
    if math.isnan(interval.estimate):
        return "not measured"
    return f"{interval.text(fmt)}, which {side(interval, margin, fmt, above, strict, unit)}"


def times(interval: Interval, what: str, fmt: str = ".1f") -> str:
    """``interval`` as a multiple of ``what``: ``"19.7× [14.8×, 28.8×] their area share"``, ``"19.7× (too few images
    for an interval: 4 of 8 needed) their area share"`` (the unit on the number, never after the parenthetical:
    :meth:`~analysis.stats.Interval.text`), ``"an unmeasured multiple of their area share"`` without a value."""
    if math.isnan(interval.estimate):
        return f"an unmeasured multiple of {what}"
    return f"{interval.text(fmt, unit='×')} {what}"


def _verdict(interval: Interval, margin: float, above: bool = True, strict: bool = False) -> Verdict:
    """The rule's reading, with too few images counted as inconclusive (as the rules do)."""
    if interval.too_few or math.isnan(interval.estimate):
        return Verdict.INCONCLUSIVE
    return claims.interval_rule(interval, margin, above, strict)


# --- attention maps -------------------------------------------------------------------------------------------------


def attention_answer(model: str, enrichment: Interval, outlier_share: float,
                     margin: float = claims.MIN_ATTENTION_ENRICHMENT) -> str:
    """Is last-layer CLS attention concentrated on the high-norm patches of ``model`` (``enrichment``: attention
    share on them over their area share ``outlier_share``)?"""
    if _missing(outlier_share) or outlier_share <= 0 or math.isnan(enrichment.estimate):
        return (f"In this run {_name(model)} has no high-norm patches, so no attention falls on any and the "
                "enrichment is not measured: there is nothing to compare. Only a model with outliers can answer.")
    total = min(1.0, outlier_share * enrichment.estimate)
    text = (f"In {_name(model)} the high-norm patches, {outlier_share:.2%} of all patches, receive "
            f"{times(enrichment, 'their area share')} of the CLS token's attention, about {total:.0%} of "
            f"it in all; against the rule's margin, {against(enrichment, margin, '.1f', unit='×')}. ")
    verdict = _verdict(enrichment, margin)
    if verdict is Verdict.REPRODUCED:
        return text + "The CLS token attends to them far more than their area would give them."
    if verdict is Verdict.NOT_REPRODUCED:
        return text + "The CLS token does not single them out: the bright spots are elsewhere."
    return text + ("This run cannot say whether the attention is concentrated on them: more images narrow the "
                   "interval (`-p n_images 12`).")


def attention_position_answer(matched: Interval, pinned: bool, has_outliers: bool,
                              margin: float = claims.MIN_ATTENTION_ENRICHMENT) -> str:
    """Does the attention follow the outliers or their grid positions (``matched``: attention of high-norm over
    normal patches at the same positions; ``pinned``: outliers at fixed positions)?"""
    if not has_outliers:
        return "With no high-norm patches in this run there is nothing to compare, at any position."
    if pinned:
        rest = ("" if math.isnan(matched.estimate) else
                f" The within-position ratio, {matched.text('.1f')}, rests only on the few outliers at other "
                "positions.")
        return ("The position-matched ratio is the number that separates the two, and here it cannot: most "
                "high-norm patches sit at grid positions that hold one in almost every image, so at those positions "
                "there is (almost) no normal patch to compare them with. This run cannot tell attention to the "
                "outliers from attention to their positions, which is why the mechanism is *inconclusive*, "
                "confounded by position; a model whose outliers move between images can separate them." + rest)
    if math.isnan(matched.estimate):
        return ("No grid position holds a high-norm patch in some images and a normal one in others, so the "
                "position-matched ratio is not measured and the area-share enrichment alone decides.")
    text = (f"At the same grid positions, high-norm patches draw {times(matched, 'the attention')} of "
            f"normal patches; against the rule's margin, {against(matched, margin, '.1f', unit='×')}: ")
    verdict = _verdict(matched, margin)
    if verdict is Verdict.REPRODUCED:
        return text + "the attention follows the outliers, not their positions."
    if verdict is Verdict.NOT_REPRODUCED:
        return text + "at the same positions normal patches draw comparable attention, so position explains the spots."
    return text + "this run cannot separate the outliers from their positions."


# --- norm histogram -------------------------------------------------------------------------------------------------


def threshold_answer(model: str, norms: np.ndarray, adaptive_cutoff: float,
                     thresholds: Sequence[float] = HISTOGRAM_THRESHOLDS) -> str:
    """How the share of high-norm tokens depends on a fixed threshold, on this run's output patch ``norms`` of
    ``model``, and what the model-adaptive cutoff (``inf``: no separated mode) does instead."""
    values = np.asarray(norms, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return f"This run measured no output patch token of {_name(model)}: there is no share to compare."
    low, high = sorted(thresholds)[0], sorted(thresholds)[-1]
    between = int(((values > low) & (values <= high)).sum())
    parts = [f"Of the {values.size} output patch tokens of {_name(model)} in this run, {(values > low).mean():.2%} "
             f"lie above {low:.0f} and {(values > high).mean():.2%} above {high:.0f}."]
    if between:
        parts.append(f"{between} of them ({between / values.size:.2%}) lie between the two, so the histogram has no "
                     "empty gap there: where a fixed threshold falls inside that range changes the share.")
    else:
        parts.append("None lies between the two, so the histogram has an empty gap there: any fixed threshold "
                     "inside it gives the same share.")
    if math.isfinite(adaptive_cutoff):
        parts.append(f"The adaptive cutoff needs no such choice: fitted to this model's own norms, it sits at "
                     f"{adaptive_cutoff:.0f} and puts {(values > adaptive_cutoff).mean():.2%} of the tokens above it.")
    else:
        parts.append("The adaptive cutoff needs no such choice: fitted to this model's own norms, it finds no "
                     "separated high-norm mode, so it flags no token whatever a fixed threshold would count.")
    return " ".join(parts)


def positions_answer(model: str, positions: Mapping, n_images: int) -> str:
    """Do the high-norm tokens stay at fixed grid positions (``positions``: :func:`analysis.findings.position_stability`
    of this run's mask over ``n_images`` images)?"""
    tokens = int(positions["outlier_tokens"])
    if not tokens:
        return (f"In this run {_name(model)} has no high-norm tokens, so there are no positions to compare: on your "
                "photos, look first at whether any appear.")
    text = (f"In this run the {tokens} high-norm tokens of {_name(model)} occupy {positions['distinct_positions']} "
            f"grid position(s), and the most frequent one holds a high-norm token in "
            f"{positions['max_position_share']:.0%} of the {n_images} images. ")
    if positions["pinned"]:
        return text + ("They are pinned: they mark fixed grid positions, whatever the photo shows. If they stay there "
                       "on your photos too, they belong to the positions, not to the content.")
    return text + ("They move between images, following the content. On your photos, check whether the lower panel's "
                   "map stays spread out.")


# --- layer dependence -----------------------------------------------------------------------------------------------


def onset_answer(model: str, onset: int | None, depth: int, relative: Interval,
                 band: tuple[float, float] = claims.MIDDLE_BAND, paper_onset: float = claims.PAPER_ONSET) -> str:
    """Where the onset lies as a share of the depth, and where the paper's onset would fall in this model."""
    same = paper_onset * depth
    text = (f"The paper's block 15 of 40 is {paper_onset:.1%} of the depth; in the {depth} blocks of {_name(model)} "
            f"the same relative depth falls at block {same:.3g}. ")
    if onset is None or math.isnan(relative.estimate):
        text += "This run has no onset to compare with: no block keeps a separated high-norm mode up to the output."
    else:
        verdict = claims.band_rule(relative, *band) if not relative.too_few else Verdict.INCONCLUSIVE
        where = {Verdict.REPRODUCED: "the whole interval lies inside", Verdict.NOT_REPRODUCED:
                 "the whole interval lies outside"}.get(verdict, "the interval is not wholly inside")
        text += (f"This run's onset is block {onset}, {relative.text('.0%')} of the depth; {where} the middle half of "
                 f"the depth ({band[0]:.0%} to {band[1]:.0%}).")
    return text + (" A model of another depth puts the same share at another block: compare onsets as shares of the "
                   "depth, never as block numbers.")


def growth_answer(norms: np.ndarray, separated: Sequence[bool]) -> str:
    """Why one fixed cutoff for all blocks would mislead: ``norms`` ``(images, blocks, patches)``, ``separated``
    per block (``block_table(...).separated_mode``)."""
    from .findings import depth_sentence

    norms = np.asarray(norms, dtype=float)
    first, last = norms[:, 0].ravel(), norms[:, -1].ravel()
    first_median, last_median = float(np.median(first)), float(np.median(last))
    growth = (f"grows {last_median / first_median:.1f}-fold" if first_median > 0 else "grows") + \
        f" from block 0 to block {norms.shape[1] - 1} ({first_median:.1f} to {last_median:.1f})"
    return (f"In this run the median patch norm {growth}. One fixed cutoff at the largest norm of block 0 "
            f"({first.max():.1f}) would call {(last > first.max()).mean():.0%} of the last block's patch tokens "
            f"high-norm: plain growth, not a separated group. The per-block test instead finds that "
            f"{depth_sentence(np.asarray(separated, dtype=bool))}.")


# --- model size -----------------------------------------------------------------------------------------------------


def _share_text(row) -> str:
    return Interval(row.outlier_share, row.outlier_share_low, row.outlier_share_high, int(row.images)).text(".2%")


def size_answer(summary: pd.DataFrame) -> str:
    """Which of this run's models (a :func:`analysis.findings.norm_summary`) have high-norm tokens, and which can
    count as evidence for the size claim."""
    if summary.empty:
        return "This run measured no model."
    rows = []
    for row in summary.itertuples():
        if row.random_weights:
            state = "a random-init negative control"
        elif _unknown(row.has_outliers):
            state = "cannot tell whether it has high-norm tokens"
        else:
            state = "high-norm tokens" if row.has_outliers else "no high-norm tokens"
        rows.append(f"{_name(row.model)}: {state} ({_share_text(row)})")
    pretrained = summary[~summary.random_weights.astype(bool)]
    series = [name for name in pretrained.timm_name if name in claims.PAPER_SIZE_SERIES]
    distilled = [name for name in pretrained.timm_name if name in claims.DISTILLED]
    if len(series) >= 2:
        why = f"{len(series)} of them are checkpoints of the paper's size series, and the verdict reads them."
    else:
        reasons = ["random-init models are controls, never evidence"] if len(pretrained) < len(summary) else []
        if distilled:
            reasons.append("the released DINOv2 ViT-S/B/L are distilled from ViT-g, so their outliers say nothing "
                           "about what training at their size grows")
        reasons.append("the claim is about one series trained alike at every size, which is not public")
        why = "None of them can count for or against the size claim: " + "; ".join(reasons) + "."
    return "In this run — " + "; ".join(rows) + ". " + why


def distilled_answer(models: Sequence[str] = DISTILLED_SIZES) -> str:
    """What the size rule says of the released DINOv2 sizes even if only the larger ones had outliers."""
    judgement = claims.judge_size_trend([(name, False, index > 0) for index, name in enumerate(models)])
    return (f"Even if only the larger ones had high-norm tokens, the rule would say *{judgement.verdict}*: "
            f"{judgement.reason}.")


# --- training time --------------------------------------------------------------------------------------------------


def training_answer(table: pd.DataFrame) -> str:
    """This run's checkpoints (a :func:`analysis.findings.training_table`), and what the onset rule makes of them."""
    if table.empty:
        return "This run measured no checkpoint."
    rows = []
    for row in table.sort_values("training_fraction").itertuples():
        state = ("cannot tell" if _unknown(row.has_outliers) else
                 "high-norm tokens" if row.has_outliers else "no high-norm tokens")
        kind = ", random weights" if row.random_weights else ""
        rows.append(f"{row.label} ({row.training_fraction:.0%} of training{kind}): {state} ({_share_text(row)})")
    steps = [(float(f), bool(r), bool(h) if not _unknown(h) else False)
             for f, r, h in zip(table.training_fraction, table.random_weights, table.has_outliers)]
    judgement = claims.judge_training_onset(steps)
    text = (f"This run measured {len(table)} checkpoint(s) — " + "; ".join(rows)
            + f". The rule says *{judgement.verdict}*: {judgement.reason}.")
    if len(table) < 3:
        text += (" With so few checkpoints the onset could lie anywhere between the first and the last; checkpoints "
                 "of one run spread over its first half would place it.")
    return text


def training_rule_answer(steps: Sequence[tuple[float, bool, bool]] = TRAINING_STEPS,
                         added: float = TRAINING_ADDED) -> str:
    """The onset rule on the exercise's hypothetical checkpoints, and on them with one more at ``added``
    (without, then with outliers there)."""
    onset, tolerance = claims.PAPER_TRAINING_ONSET, claims.ONSET_TOLERANCE
    low, high = onset / tolerance, onset * tolerance
    judgement = claims.judge_training_onset(list(steps))
    text = (f"The rule says *{judgement.verdict}*: {judgement.reason}; 'about a third' is read as {low:.0%} to "
            f"{high:.0%}.")
    answers = []
    for has in (False, True):
        extra = claims.judge_training_onset(sorted([*steps, (added, False, has)]))
        answers.append(f"{'with' if has else 'without'} outliers there, *{extra.verdict}* ({extra.reason})")
    return text + f" With one more checkpoint at {added:.0%}: " + "; ".join(answers) + "."


# --- redundancy -----------------------------------------------------------------------------------------------------


def auc_answer(raw: Interval, matched: Interval, pinned: bool, has_outliers: bool,
               margin: float = claims.MIN_REDUNDANCY_AUC) -> str:
    """What the unmatched and the position-matched ROC AUC of neighbour cosine say, and which one the rule reads."""
    if not has_outliers or math.isnan(raw.estimate):
        return "In this run the model has no high-norm patches, so neither AUC is measured: there is nothing to rank."
    if pinned:
        return (f"The unmatched AUC is {raw.text()}, but it pools all positions: border and corner patches have fewer "
                "neighbours and often plain background, so position alone can push it away from 0.5. The "
                "position-matched AUC, which ranks outliers only against normal tokens at the same position, is not "
                "measurable here: the outliers are pinned, so at their positions there are no normal tokens to rank "
                "them against. The verdict is therefore *inconclusive*, confounded by position.")
    if math.isnan(matched.estimate):
        return (f"The unmatched AUC is {raw.text()}; no position holds an outlier in some images and a normal token "
                "in others, so the position-matched AUC is not measured and the rule cannot decide.")
    verdict = _verdict(matched, margin)
    word = {Verdict.REPRODUCED: "outliers sit on more redundant patches than normal tokens at the same positions",
            Verdict.NOT_REPRODUCED: "at the same positions outliers are not on more redundant patches"}.get(
        verdict, "this run cannot tell")
    return (f"The unmatched AUC is {raw.text()}; the position-matched one, which the rule reads, is "
            f"{reading(matched, margin)}: {word}.")


def strict_threshold_answer(cosine: np.ndarray, norms: np.ndarray, cutoff: float, raw: Interval, seed: int = 0,
                            threshold: float = STRICT_THRESHOLD) -> str:
    """The unmatched AUC with tokens above ``threshold`` as outliers, beside this run's (``raw``, above ``cutoff``).
    ``cosine``, ``norms``: ``(images, patches)``."""
    from .findings import redundancy_intervals

    norms = np.asarray(norms, dtype=float)
    now, strict = int((norms > cutoff).sum()), norms > threshold
    base = (f"this run's cutoff ({cutoff:.0f}) marks {now} token(s), unmatched AUC {raw.text()}"
            if math.isfinite(cutoff) else
            "this run's adaptive cutoff finds no separated mode, so it marks no token and there is no AUC")
    if not strict.any():
        return (f"No output patch token of this run lies above {threshold:.0f}: with that threshold nothing counts as "
                f"an outlier and there is no AUC to compare ({base}).")
    if strict.all():
        return f"Every token lies above {threshold:.0f}: there are no normal tokens to rank against ({base})."
    stricter = redundancy_intervals(cosine, strict, seed)["raw"]
    ends = [stricter.low, stricter.high, raw.low, raw.high]
    if not math.isfinite(cutoff) or any(math.isnan(end) for end in ends):
        change = "One of the two has no interval, so this run cannot tell whether the separation changes."
    elif stricter.high < raw.low or raw.high < stricter.low:
        change = ("The two intervals do not overlap: in this run the separation depends on how strictly an outlier "
                  "is defined.")
    else:
        change = ("The two intervals overlap: this run shows no change of the separation with a stricter definition "
                  "of an outlier.")
    return (f"Above {threshold:.0f}, {int(strict.sum())} token(s) count as outliers and the unmatched AUC is "
            f"{stricter.text()}; {base}. {change}")


# --- information probes ---------------------------------------------------------------------------------------------


def class_probe_answer(accuracy_gap: Interval, n_held_out: int, accuracies: Mapping[str, float],
                       min_images: int = claims.MIN_PROBE_IMAGES) -> str:
    """Does one high-norm token predict the image class better than a normal patch (``accuracy_gap``: high-norm −
    normal on ``n_held_out`` held-out images with an outlier; ``accuracies``: by token kind)?"""
    if n_held_out == 0 or math.isnan(accuracy_gap.estimate):
        return ("No held-out image has a high-norm token in this run, so there is no outlier token to classify from: "
                "nothing to compare.")
    shown = ", ".join(f"{kind} {'not measured' if _missing(value) else f'{value:.1%}'}"
                      for kind, value in accuracies.items())
    text = (f"On the {n_held_out} held-out images with a high-norm token the class probes score {shown}; the gap "
            f"(high-norm − normal) is {reading(accuracy_gap, 0.0, '.1%', strict=True)}. ")
    if n_held_out < min_images:
        return text + (f"That is fewer than the {min_images} images the rule needs, so this run cannot order the two "
                       "(`-p per_class 40` gives more).")
    verdict = _verdict(accuracy_gap, 0.0, strict=True)
    if verdict is Verdict.REPRODUCED:
        return text + "The outlier token carries more image-level information than a normal patch, as the paper says."
    if verdict is Verdict.NOT_REPRODUCED:
        return text + "The outlier token carries no more image-level information than a normal patch here."
    return text + "This run cannot order the two token kinds."


def local_probe_answer(position_gap: Interval, pixel_gap: Interval, pinned: bool) -> str:
    """Have the high-norm tokens lost local information (``position_gap``: position top-1 of normal − high-norm
    tokens; ``pixel_gap``: pixel error of high-norm − normal; ``pinned``: outliers at fixed positions)?"""
    if math.isnan(position_gap.estimate):
        return "No held-out image has a high-norm token in this run, so there is nothing to compare."
    text = (f"The position probe's top-1 gap (normal − high-norm tokens) is "
            f"{reading(position_gap, 0.0, '.1%', strict=True)}; the pixel probe's error gap (high-norm − normal) is "
            f"{reading(pixel_gap, 0.0, '.2f', strict=True)}. Positive gaps mean the high-norm tokens hold less local "
            "information. ")
    if pinned:
        return text + ("But the outliers are pinned to fixed positions: a probe can place them from their position "
                       "alone, so the position gap cannot show lost local information, and the verdict is "
                       "*inconclusive*, confounded by position.")
    verdicts = {_verdict(position_gap, 0.0, strict=True), _verdict(pixel_gap, 0.0, strict=True)}
    if verdicts == {Verdict.REPRODUCED}:
        return text + "Both gaps clear 0: the high-norm tokens have lost local information, as the paper says."
    if Verdict.NOT_REPRODUCED in verdicts:
        return text + "At least one gap is wholly on the wrong side of 0: they keep their local information here."
    return text + "At least one interval straddles 0: this run cannot tell."


# --- registers ------------------------------------------------------------------------------------------------------


def scale_answer(plain_model: str, registers_model: str, plain_median: float, registers_median: float,
                 plain_scale: float) -> str:
    """Why outliers are counted on the plain model's scale (norm / median patch norm, ``plain_scale``: its cutoff
    over its median; ``inf``: no cutoff)."""
    if _missing(plain_median) or _missing(registers_median):
        return "This run did not measure the median patch norm of both models."
    text = (f"The median output patch norm is {plain_median:.1f} in {_name(plain_model)} and {registers_median:.1f} in "
            f"{_name(registers_model)}: two models need not share a scale, so a token's norm is counted in medians of "
            "its own model. ")
    if not math.isfinite(plain_scale):
        return text + (f"In this run {_name(plain_model)} has no separated high-norm mode, so there is no cutoff to "
                       "carry over to the other model and the reduction is not measured.")
    return text + (f"A token is an outlier when its norm exceeds {plain_scale:.1f} times its model's median, the plain "
                   "model's cutoff over its median; a model whose norms are all larger is then not mistaken for one "
                   "with more outliers.")


def register_norm_answer(register_ratio: Interval, plain_scale: float, random_weights: bool) -> str:
    """Do the registers carry the high norm (``register_ratio``: median register / median patch norm in the
    register model; ``plain_scale``: the plain model's cutoff over its median)?"""
    if random_weights:
        return (f"This run's pair has random weights: its registers have learnt nothing, so their median norm, "
                f"{times(register_ratio, 'the median patch norm')}, says nothing about training, and the "
                "verdict is *not testable*. The released pair (`-p models '[\"vit_small_patch14_dinov2.lvd142m\", "
                "\"vit_small_patch14_reg4_dinov2.lvd142m\"]'`, with their weights) can answer.")
    if math.isnan(register_ratio.estimate):
        return "No register token was measured in this run: the second model has none."
    if not math.isfinite(plain_scale):
        return (f"The registers' median norm is {times(register_ratio, 'the median patch norm')}, but the "
                "plain model has no outlier cutoff to compare it with: not testable.")
    verdict = _verdict(register_ratio, plain_scale)
    word = {Verdict.REPRODUCED: "on the plain model's scale the registers would count as outliers: they carry the "
                                "high norm",
            Verdict.NOT_REPRODUCED: "on the plain model's scale they would not count as outliers"}.get(
        verdict, "this run cannot tell")
    return (f"The registers' median norm is {times(register_ratio, 'the median patch norm')}, and the "
            f"plain model's cutoff {plain_scale:.1f} times its own; against that, "
            f"{against(register_ratio, plain_scale, '.1f', unit='×')}: {word}.")


# --- test-time registers --------------------------------------------------------------------------------------------


def units_answer(units: pd.DataFrame, top_k: int, share_before: float, share_after: float) -> str:
    """The units moved onto the extra token (``units``: ``MovedPass.unit_table()``) and what moving them did to the
    high-norm share of the held-out images."""
    if units.empty:
        return ("No unit singles out the high-norm patches in this run (there are none to single out, or no unit fires "
                "harder there), so nothing was moved and the outliers stay.")
    listed = "; ".join(f"block {r.block} unit {r.neuron}: mean {r.mean_at_outliers:.2f} at the outliers, "
                       f"{r.mean_elsewhere:.2f} elsewhere" for r in units.itertuples())
    text = (f"This run moved {len(units)} unit(s) (at most `top_k` = {top_k}), chosen on the other half of the "
            f"images — {listed}. With them moved the held-out high-norm share goes from {share_before:.2%} to "
            f"{share_after:.2%}. ")
    if share_before <= 0:
        return text + "There were no outliers on the held-out images to remove."
    if share_after <= 0:
        return text + (f"{len(units)} unit(s) suffice to remove every outlier here; `-p top_k 1` tests the first alone."
                       if len(units) > 1 else "A single unit makes every outlier on these images.")
    return text + "Some outliers are left: `-p top_k 8` tries more units."


def cleanup_answer(before: Interval, after: Interval, margin: float = claims.MAX_ATTENTION_AFTER) -> str:
    """Does the CLS attention map clean up once the units move (``before``/``after``: attention on the former outlier
    patches over their area share, without and with the extra token)?"""
    if math.isnan(before.estimate):
        return "No held-out patch was high-norm before the move in this run: there is nothing to clean up."
    area = "their area share"
    text = (f"Before the move the CLS token gives the outlier patches {times(before, area)}; against the margin, "
            f"{against(before, margin, '.1f', unit='×')}. With the register in place it gives them "
            f"{times(after, area)}; against the margin, {against(after, margin, '.1f', above=False, unit='×')}. ")
    first = _verdict(before, margin)
    if first is Verdict.NOT_REPRODUCED:
        return text + "Attention was not concentrated on them before, so there was nothing to clean up."
    if first is Verdict.INCONCLUSIVE:
        return text + ("This run cannot tell whether attention was concentrated on them before, so it cannot say the "
                       "map cleaned up (`-p n_images 20`, every shipped photo, or an image folder gives more held-out images).")
    then = _verdict(after, margin, above=False)
    if then is Verdict.REPRODUCED:
        return text + "The map cleans up: the former outliers get about their area share."
    if then is Verdict.NOT_REPRODUCED:
        return text + "The attention stays on them: the map does not clean up."
    return text + "This run cannot tell whether the map cleans up."


# --- object discovery -----------------------------------------------------------------------------------------------


def floor_answer(table: pd.DataFrame, floor_share: float) -> str:
    """Which rows of the discovery table (``model``, ``condition``, ``images``, ``corloc``, ``whole_image_boxes``) sit
    at LOST's floor, and what that does to a comparison."""
    if table.empty:
        return "This run evaluated no model."
    rows, at_floor = [], 0
    for row in table.itertuples():
        whole = row.whole_image_boxes
        at_floor += bool(_missing(whole) or whole >= floor_share)
        boxes = "not measured" if _missing(whole) else f"{whole:.0%}"
        corloc = "not measured" if _missing(row.corloc) else f"{row.corloc:.0%}"
        rows.append(f"{_name(row.model)}, {row.condition}: whole-image boxes on {boxes} of {row.images} images, "
                    f"CorLoc {corloc}")
    text = "In this run — " + "; ".join(rows) + ". "
    why = ("where every pair of keys correlates positively, LOST's mask is the whole image, and a whole-image box "
           "rarely overlaps a true box enough to count, whatever the features hold")
    if at_floor == len(table):
        return text + (f"Every row is at the floor (whole-image boxes on at least {floor_share:.0%} of the images): "
                       f"{why}. A comparison between two such rows is *inconclusive*, never *not reproduced*.")
    if at_floor:
        return text + (f"{at_floor} of {len(table)} rows are at the floor (at least {floor_share:.0%} whole-image "
                       f"boxes): {why}. Only a comparison with a row off the floor can speak.")
    return text + "No row is at the floor, so CorLoc differences between rows can speak to the claim."


def gain_answer(compared: Mapping[str, object]) -> str:
    """What moving the register units did to LOST, per pretrained model (``compared``: spec →
    :class:`~analysis.discovery.MovedComparison`)."""
    if not compared:
        return ("This run has no pretrained model, so no test-time register was tried: random-init models are "
                "controls only.")
    parts = []
    for spec, comparison in compared.items():
        gain = comparison.gain
        if not comparison.moved_any:
            parts.append(f"{_name(spec)}: nothing was moved (no unit removed a high-norm patch, or the model has none, "
                         "or `test_time_register` is off), so there is no gain to read")
        elif comparison.at_floor:
            parts.append(f"{_name(spec)}: CorLoc gain {gain.text('.0%')}, but LOST is at its floor with and without "
                         "the register, so the comparison says nothing (*inconclusive*)")
        else:
            verdict = _verdict(gain, 0.0, strict=True)
            word = {Verdict.REPRODUCED: "removing the outliers helps LOST",
                    Verdict.NOT_REPRODUCED: "removing the outliers does not help LOST"}.get(verdict,
                                                                                           "this run cannot tell")
            parts.append(f"{_name(spec)}: CorLoc gain {reading(gain, 0.0, '.0%', strict=True)}, so {word}")
    return "; ".join(parts) + "."
