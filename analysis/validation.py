"""Do the rules find planted truth? Every finding's measurement and rule, run on twins of declared truth.

A twin (:mod:`analysis.twins`) is a real network with high-norm tokens planted where we say: on the most
redundant patches, at random patches, pinned to fixed positions, from a chosen block on, or in the register
tokens, at 3-11x the median like the paper's, in numbers that vary from image to image. For each twin the
finding pages' own path — the same :mod:`analysis.findings` calls, the same :mod:`analysis.claims` rule with
the same gates — measures and judges, and the verdict is set against the verdict the truth calls for. One row
per twin × check, with the interval the rule read.

**The page's own path.** The rules are called as the pages call them, with ``random_weights=False`` (a twin
carries planted truth, so it is not a control):

* *has a few / has no high-norm tokens* (norm_histogram): :func:`~analysis.findings.norm_summary`, then
  :func:`~analysis.claims.judge_outliers` through :func:`~analysis.findings.outlier_judgement` — the rule is gated
  on the paper's named models, so the twin's row is judged under a stand-in name: one the paper says has
  outliers (:data:`HAS_OUTLIERS_STAND_IN`), one it says has none (:data:`NO_OUTLIERS_STAND_IN`); neither has a
  paper cutoff, so the rule reads the share interval alone;
* *layer onset* (layer_dependence): :func:`~analysis.findings.onset_interval` and
  :func:`~analysis.claims.judge_layer_onset` on the twin's own model name (the middle band), no gate;
* *redundancy* (redundancy): :func:`~analysis.findings.outliers_found`, the position-matched AUC and
  :func:`~analysis.claims.judge_redundancy` with its has-outliers gate;
* *registers* (registers): :func:`~analysis.findings.norm_summary` of the pair, the plain twin's
  ``has_outliers`` as the gate, :func:`~analysis.claims.judge_registers` and
  :func:`~analysis.claims.judge_norm_in_registers` under the paper's pair names (:data:`PAIR_STAND_IN`).

Three more rows are checks of a finding against a known answer (no rule): the share (its interval must reach
the planted share and its estimate lie on it), pinned or not, and the onset block. Where the page itself cannot
tell whether there are high-norm tokens (``has_outliers`` None), or the block before the onset it reads is
undecided, the check is undecided too: the page states no share, position or exact onset to check.

**Matches, misjudgements, undecided.** ``matches``: the verdict is the one the truth calls for.
``misjudged``: a definite verdict (reproduced / not reproduced) other than the truth's, or a definite verdict
where the truth calls for *inconclusive* (pinned outliers confound redundancy) or *not testable*. A rule that
says *inconclusive* or *not testable* where the truth calls for a definite verdict has not misjudged, it has not
decided (``undecided``): the page counts those apart. A misjudgement on a held-out twin fails the tests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import claims, findings, metrics, models, twins
from .claims import Verdict
from .features import Features
from .stats import Interval

#: The share check allows the finding to miss this relative share of the planted outliers (a cutoff in the trough
#: may fall above the lowest of them) or to count the between tokens (below the line, which a cutoff in the gap may
#: count or not) plus this relative share; fixed in advance, not fitted on twins.
SHARE_SLACK = 0.1
#: A named model the paper says has outliers and gives no cutoff for, and one it says has none: the names under
#: which a twin's outlier rows go through :func:`analysis.claims.judge_outliers` (the rule is gated on names).
HAS_OUTLIERS_STAND_IN = "deit3_base_patch16_224.fb_in22k_ft_in1k"
NO_OUTLIERS_STAND_IN = "vit_giant_patch14_reg4_dinov2.lvd142m"
#: The paper's register pair: the names under which a twin pair goes through the register rules.
PAIR_STAND_IN = next(iter(claims.PAPER_REGISTER_PAIRS.items()))

COLUMNS = ["family", "twin", "check", "truth", "expected", "verdict", "interval", "measured", "matches",
           "misjudged", "undecided"]
DECISIVE = (Verdict.REPRODUCED, Verdict.NOT_REPRODUCED)


def is_misjudged(expected: Verdict, verdict: Verdict) -> bool:
    """A definite verdict that is not the truth's (also where the truth calls for inconclusive or not testable)."""
    return verdict in DECISIVE and verdict is not expected


def _text(interval: Interval | None, fmt: str) -> str:
    """The interval as the row shows it; an unmeasured one says why where its method does."""
    if interval is None:
        return "—"
    if math.isnan(interval.estimate) and interval.method.startswith(findings.NOT_MEASURABLE):
        return interval.method
    return interval.text(fmt)


def _row(twin: str, check: str, truth: str, expected: Verdict, judgement: claims.Judgement, fmt: str) -> dict:
    verdict = judgement.verdict
    return {"family": twins.family_of(twin), "twin": twin, "check": check, "truth": truth,
            "expected": str(expected), "verdict": str(verdict), "interval": _text(judgement.interval, fmt),
            "measured": judgement.reason or judgement.measured, "matches": verdict is expected,
            "misjudged": is_misjudged(expected, verdict),
            "undecided": verdict not in DECISIVE and expected in DECISIVE}


def _check(twin: str, check: str, truth: str, passed: bool | None, measured: str, interval: str = "—") -> dict:
    """A check of a finding against a known answer: *reproduced* when it finds the truth, else *not reproduced*;
    *inconclusive* (``passed`` None) where the page itself cannot tell whether the model has high-norm tokens, so
    it states no share, position or onset to check."""
    passed = None if passed is None else bool(passed)  # a numpy bool is not `True`
    verdict = (Verdict.INCONCLUSIVE if passed is None else Verdict.REPRODUCED if passed else Verdict.NOT_REPRODUCED)
    return {"family": twins.family_of(twin), "twin": twin, "check": check, "truth": truth,
            "expected": str(Verdict.REPRODUCED), "verdict": str(verdict), "interval": interval,
            "measured": measured, "matches": passed is True, "misjudged": passed is False,
            "undecided": passed is None}


def expected_presence(truth: twins.Truth, claim_has: bool) -> Verdict:
    """The verdict the outlier rule must give on a twin: the claim "has outliers" (``claim_has``) or "has none"
    is reproduced exactly when it matches the truth."""
    return Verdict.REPRODUCED if truth.has_outliers == claim_has else Verdict.NOT_REPRODUCED


def expected_onset(truth: twins.Truth) -> Verdict:
    """Reproduced when the planted onset lies inside the mechanism's band, not reproduced when outside (the twins
    are not the paper's ViT-g); not testable without outliers (the rule finds no onset to place)."""
    if not truth.has_outliers:
        return Verdict.NOT_TESTABLE
    low, high = claims.MIDDLE_BAND
    return Verdict.REPRODUCED if low <= truth.onset_block / truth.depth <= high else Verdict.NOT_REPRODUCED


def expected_redundancy(truth: twins.Truth) -> Verdict:
    """Redundant placement → reproduced, random → not reproduced, pinned → inconclusive (confounded)."""
    if not truth.has_outliers:
        return Verdict.NOT_TESTABLE
    if truth.pinned:
        return Verdict.INCONCLUSIVE
    return Verdict.REPRODUCED if truth.redundant else Verdict.NOT_REPRODUCED


def truth_text(truth: twins.Truth) -> str:
    """What was planted, in words: outliers per image, empty images, ratios, onset."""
    if not truth.has_outliers:
        return "nothing planted" + (f" (own outliers at {len(truth.native_replaced)} positions replaced)"
                                    if truth.native_replaced else "")
    low, high = truth.ratios
    return (f"{sum(truth.counts)} outliers in {len(truth.counts)} images ({truth.share:.2%}, {truth.empty_images} "
            f"images without), {low:g}-{high:g}x the median from block {truth.onset_block}")


def share_matches(truth: twins.Truth, share: Interval) -> bool:
    """The share finding reaches the planted share: its estimate lies in ``[share · (1 − slack), share with the
    between tokens · (1 + slack)]`` and so does part of its interval (0 exactly without outliers)."""
    if not truth.has_outliers:
        return share.estimate == 0 and share.high == 0
    low, high = truth.share * (1 - SHARE_SLACK), truth.share_with_between * (1 + SHARE_SLACK)
    finite = not (math.isnan(share.low) or math.isnan(share.high))
    return finite and low <= share.estimate <= high and share.low <= high and share.high >= low


def patch_checks(feats: Features, truth: twins.Truth, seed: int = 0) -> list[dict]:
    """Every patch-level finding on one twin, through its page's own path (module docstring)."""
    name = truth.plant
    threshold, adaptive = metrics.PAPER_THRESHOLD, True
    # norm_histogram: the summary row, the outlier rule under stand-in names
    summary = findings.norm_summary({feats.meta["spec"]: feats}, threshold, adaptive, seed)
    row = summary.iloc[0]
    share = findings.share_interval(row)
    planted = truth_text(truth)
    rows = []
    for claim_has, stand_in in ((True, HAS_OUTLIERS_STAND_IN), (False, NO_OUTLIERS_STAND_IN)):
        judged = findings.outlier_judgement(_with(row, timm_name=stand_in))
        rows.append(_row(name, "has a few high-norm tokens" if claim_has else "has no high-norm tokens", planted,
                         expected_presence(truth, claim_has), judged, ".2%"))
    share_truth = (f"{truth.share:.2%} ({truth.share_with_between:.2%} with the between tokens)" if truth.has_outliers
                   else "0")
    # where the page cannot tell whether there are outliers it states no share, position or onset of them
    told = lambda passed: None if _unknown(row.has_outliers) else passed  # noqa: E731
    rows.append(_check(name, "share matches the planted share", share_truth, told(share_matches(truth, share)),
                       f"share {share.text('.2%')}", share.text(".2%")))
    # the pages' high-norm mask: above the page's cutoff
    norms = findings.patch_grid(feats, "norm")
    cutoff = findings.cutoff_from_norms(norms, threshold, adaptive)
    high = norms > cutoff.value
    positions = findings.position_stability(high)
    rows.append(_check(name, "pinned or not", "pinned" if truth.pinned else "moves with the image",
                       told(positions["pinned"] == truth.pinned),
                       f"{'pinned' if positions['pinned'] else 'not pinned'} (most frequent position in "
                       f"{positions['max_position_share']:.0%} of the images)"))
    # layer_dependence
    block_norms = findings.patch_norms(feats)
    table = findings.block_table(block_norms)
    onset = findings.onset_block(table.separated_mode.to_numpy())
    rows.append(_check(name, "onset block", f"block {truth.onset_block}" if truth.has_outliers else "none",
                       told(onset == (truth.onset_block if truth.has_outliers else None))
                       if findings.onset_is_exact(table, onset) else None,
                       "none" if onset is None else f"block {onset}"))
    onset_relative = findings.onset_interval(block_norms, seed)
    onset_judgement = claims.judge_layer_onset(False, onset_relative, feats.depth, feats.provenance.model,
                                               exact=findings.onset_is_exact(table, onset))
    rows.append(_row(name, "layer onset rule", f"block {truth.onset_block} of {truth.depth}" if truth.has_outliers
                     else "none", expected_onset(truth), onset_judgement, ".0%"))
    if rows[-1]["interval"] == "—":
        rows[-1]["interval"] = _text(onset_relative, ".0%")
    # redundancy
    cosine = findings.patch_grid(feats, "neighbour_cosine")
    auc = findings.redundancy_intervals(cosine, high, seed)
    has_outliers = findings.outliers_found(norms, cutoff, seed)
    redundancy = claims.judge_redundancy(False, has_outliers, auc["matched"], positions["pinned"])
    truth_words = ("pinned (confounded)" if truth.pinned else "redundant" if truth.redundant else
                   "random" if truth.has_outliers else "none")
    rows.append(_row(name, "redundancy rule", truth_words, expected_redundancy(truth), redundancy, ".2f"))
    if rows[-1]["interval"] == "—":
        rows[-1]["interval"] = _text(auc["matched"], ".2f")
    return rows


def _unknown(has_outliers) -> bool:
    """A table's ``has_outliers`` that says "cannot tell" (None, or nan once it has been through a frame)."""
    return has_outliers is None or (isinstance(has_outliers, float) and math.isnan(has_outliers))


def _with(row: pd.Series, **values) -> pd.Series:
    """A copy of a table row with some values replaced."""
    row = row.copy()
    for key, value in values.items():
        row[key] = value
    return row


def realised_reduction(plain: twins.Truth, registers: twins.Truth) -> float:
    """1 − the register twin's planted patch-outlier share / the plain twin's, over the same images."""
    return 1 - registers.share / plain.share if plain.share > 0 else float("nan")


def register_checks(plain: Features, registers: Features, seed: int = 0, itself: bool = True) -> list[dict]:
    """The register claims on a pair of twins, through the registers page's own path (its has-outliers gate
    included): patch outliers in ``plain`` against the norm planted into the registers of ``registers`` (which
    may leave a few patch outliers), and (``itself``) the plain twin against itself (nothing moved)."""
    plain_truth, registers_truth = twins.truth_of(plain.meta), twins.truth_of(registers.meta)
    plain_name, registers_name = PAIR_STAND_IN
    threshold, adaptive = metrics.PAPER_THRESHOLD, True
    rows = []
    pairs = [(registers, registers_truth, "registers remove the patch outliers")]
    pairs += [(plain, plain_truth, "registers remove the patch outliers (same twin twice)")] if itself else []
    # the registers page: norm_summary's row of the plain model gives the gate and the scale
    plain_row = findings.norm_summary({plain.meta["spec"]: plain}, threshold, adaptive, seed).iloc[0]
    plain_scale = plain_row.cutoff / plain_row.median_norm  # the plain model's cutoff in medians (inf: none)
    for partner, partner_truth, check in pairs:
        reduction = findings.register_reduction_interval(findings.patch_grid(plain, "norm"),
                                                         findings.patch_grid(partner, "norm"), plain_scale, seed)
        vanish = claims.judge_registers(plain_name, registers_name, False, plain_row.has_outliers, reduction)
        realised = 0.0 if partner is plain else realised_reduction(plain_truth, registers_truth)
        expected = Verdict.REPRODUCED if realised >= claims.MIN_REGISTER_REDUCTION else Verdict.NOT_REPRODUCED
        truth = ("nothing moved" if partner is plain else
                 f"norm planted into the registers; {registers_truth.share:.2%} of the patches left as outliers "
                 f"against {plain_truth.share:.2%} without registers (a {realised:.0%} reduction)")
        row = _row(registers_truth.plant if partner is registers else plain_truth.plant, check, truth, expected,
                   vanish, ".0%")
        if row["interval"] == "—":
            row["interval"] = _text(reduction, ".0%")
        rows.append(row)
        if partner is registers:
            ratio = findings.register_ratio_interval(registers, seed)
            carry = claims.judge_norm_in_registers(plain_name, registers_name, False, ratio, plain_scale)
            rows.append(_row(registers_truth.plant, "the registers carry the high norm",
                             f"registers at {registers_truth.ratios[0]:g}-{registers_truth.ratios[1]:g}x the median "
                             f"patch norm", Verdict.REPRODUCED, carry, ".1f"))
    return rows


def validate(passes: dict[str, Features], seed: int = 0) -> pd.DataFrame:
    """Every check on every twin pass (``{twin name: Features}``): the patch checks on the twins of the real
    ViT-Ti, the register checks on each register twin whose plain partner is among the passes."""
    rows = []
    for name, feats in passes.items():
        if twins.TWIN_BASES.get(name) == models.OFFLINE_MODEL:
            rows += patch_checks(feats, twins.truth_of(feats.meta), seed)
    checked = set()
    for name, plain_name in twins.REGISTER_PAIRS.items():
        if name in passes and plain_name in passes:
            rows += register_checks(passes[plain_name], passes[name], seed, itself=plain_name not in checked)
            checked.add(plain_name)
    return validation_frame(rows)


def validation_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def family_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per family: checks, matching, misjudged, undecided."""
    return (table.groupby("family", sort=False)
            .agg(checks=("matches", "size"), matching=("matches", "sum"), misjudged=("misjudged", "sum"),
                 undecided=("undecided", "sum"), twins=("twin", "nunique")).reset_index())


def verdict_markdown(table: pd.DataFrame) -> str:
    """A MyST admonition: per family, whether every rule found its planted truth; each misjudgement, then each
    row left undecided."""
    misjudged, undecided = table[table.misjudged], table[table.undecided]
    counts = family_counts(table)
    parts = [f"{row.family}: {row.matching} of {row.checks} match, {row.misjudged} misjudged, {row.undecided} "
             f"undecided" for row in counts.itertuples()]
    title = (f"every rule found its planted truth ({len(table)} of {len(table)} checks)"
             if misjudged.empty and undecided.empty else
             f"no rule misjudges its planted truth ({len(undecided)} of {len(table)} checks undecided)"
             if misjudged.empty else f"{len(misjudged)} of {len(table)} checks MISJUDGE their planted truth")
    lines = [f"```{{admonition}} Rules against planted truth: {title}",
             f":class: {'tip' if misjudged.empty and undecided.empty else 'warning' if misjudged.empty else 'error'}",
             "", "- " + "; ".join(parts) + "."]
    # the interval and the measurement follow a semicolon, not a parenthesis: their own texts hold brackets
    lines += [f"- **{row.twin}** ({row.family}), {row.check}: the truth ({row.truth}) calls for *{row.expected}*, "
              f"the rule gave *{row.verdict}*; interval {row.interval}; {row.measured}." for row in misjudged.itertuples()]
    lines += [f"- undecided: **{row.twin}** ({row.family}), {row.check}: *{row.verdict}* where the truth calls for "
              f"*{row.expected}*; interval {row.interval}; {row.measured}." for row in undecided.itertuples()]
    lines.append("- A twin's truth is declared, not estimated; these are the rules and gates every finding page uses. "
                 "The development family is where constants may be chosen; the held-out family is not tuned on.")
    return "\n".join(lines + ["```"])
