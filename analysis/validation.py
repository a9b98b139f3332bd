"""Do the rules find planted truth? Every finding's measurement and rule, run on twins of declared truth.

A twin (:mod:`analysis.twins`) is a real network with high-norm tokens planted where we say: on the most
redundant patches, at random patches, pinned to fixed positions, from a chosen block on, or in the register
tokens. For each twin the pages' own building blocks (:mod:`analysis.findings`) measure what a finding page
measures, the pages' own rules (:mod:`analysis.claims`) judge it, and the verdict is set against the verdict
the truth calls for. One row per twin × check; a row whose verdict differs from its truth is a failure of the
rule (the tests fail on it), never a footnote.

The rules are called as the pages call them, with ``random_weights=False``: a twin of a random-init network
carries planted truth, so it is not a control. Rules gated on the paper's model names (the outlier and register
claims) are called through their name-free cores (:func:`~analysis.claims.outlier_presence`,
:func:`~analysis.claims.register_reduction_rule`, :func:`~analysis.claims.norm_in_registers_rule`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import claims, findings, metrics, twins
from .claims import Verdict
from .features import Features

#: The measured share must lie between the planted outliers' share and that share with the between tokens (3–8×
#: the median, which a cutoff placed in the gap may count or not), widened by this much either way.
SHARE_TOLERANCE = 0.002

COLUMNS = ["twin", "check", "truth", "expected", "verdict", "measured", "matches"]


def _row(twin: str, check: str, truth: str, expected: Verdict, judgement: claims.Judgement) -> dict:
    return {"twin": twin, "check": check, "truth": truth, "expected": str(expected),
            "verdict": str(judgement.verdict), "measured": judgement.measured or judgement.reason,
            "matches": judgement.verdict is expected}


def _check(twin: str, check: str, truth: str, passed: bool, measured: str) -> dict:
    """A yes/no check with a known answer (e.g. the onset block found is the planted one)."""
    verdict = Verdict.REPRODUCED if passed else Verdict.NOT_REPRODUCED
    return {"twin": twin, "check": check, "truth": truth, "expected": str(Verdict.REPRODUCED),
            "verdict": str(verdict), "measured": measured, "matches": passed}


def expected_presence(truth: twins.Truth, claim_has: bool) -> Verdict:
    """The verdict the outlier rule must give on a twin: the claim "has outliers" (``claim_has``) or "has none"
    is reproduced exactly when it matches the truth."""
    return Verdict.REPRODUCED if truth.has_outliers == claim_has else Verdict.NOT_REPRODUCED


def expected_onset(truth: twins.Truth) -> Verdict:
    """Reproduced when the planted onset lies inside the paper's band, not reproduced when outside."""
    if not truth.has_outliers:
        return Verdict.NOT_TESTABLE
    low, high = claims.MIDDLE_BAND  # the twins are not the paper's ViT-g: the mechanism's band
    return Verdict.REPRODUCED if low <= truth.onset_block / truth.depth <= high else Verdict.NOT_REPRODUCED


def expected_redundancy(truth: twins.Truth) -> Verdict:
    """Redundant placement → reproduced, random → not reproduced, pinned → inconclusive (confounded)."""
    if not truth.has_outliers:
        return Verdict.NOT_TESTABLE
    if truth.pinned:
        return Verdict.INCONCLUSIVE
    return Verdict.REPRODUCED if truth.redundant else Verdict.NOT_REPRODUCED


def patch_checks(feats: Features, truth: twins.Truth, seed: int = 0) -> list[dict]:
    """Every patch-level finding on one twin: outliers (both claims), share, positions, onset, redundancy."""
    name = truth.plant
    norms = findings.patch_grid(feats, "norm")  # (B, Np) last block
    cutoff = findings.cutoff_from_norms(norms, metrics.PAPER_THRESHOLD)
    share = findings.outlier_share_interval(norms, cutoff.value, seed, refit=True)
    bimodal = cutoff.adaptive.bimodal
    planted = f"{truth.per_image} of {truth.num_patches} patches per image ({truth.share:.1%})"
    rows = [
        _row(name, "has a few high-norm tokens", planted, expected_presence(truth, True),
             claims.outlier_presence(True, bimodal, share)),
        _row(name, "has no high-norm tokens", planted, expected_presence(truth, False),
             claims.outlier_presence(False, bimodal, share)),
    ]
    if truth.has_outliers:  # a cutoff in the gap counts the between tokens or not: either share is right
        low, high = truth.share - SHARE_TOLERANCE, truth.share_with_between + SHARE_TOLERANCE
        rows.append(_check(name, "share matches the planted share",
                           f"{truth.share:.2%} ({truth.share_with_between:.2%} with the between tokens)",
                           bimodal and low <= share.estimate <= high, f"share {share.text('.2%')}"))
    mask = norms > cutoff.value
    has = findings.has_outliers(cutoff, share)
    pinned = findings.position_stability(mask)["pinned"]
    rows.append(_check(name, "pinned or not", "pinned" if truth.pinned else "moves with the image",
                       pinned == truth.pinned, "pinned" if pinned else "not pinned"))
    block_norms = findings.patch_norms(feats)  # (B, L, Np)
    table = findings.block_table(block_norms)
    onset = findings.onset_block(table.separated_mode.to_numpy())
    rows.append(_check(name, "onset block", f"block {truth.onset_block}" if truth.has_outliers else "none",
                       onset == (truth.onset_block if truth.has_outliers else None),
                       "none" if onset is None else f"block {onset}"))
    onset_judgement = (claims.judge_layer_onset(False, findings.onset_interval(block_norms, seed), feats.depth)
                       if has else claims.Judgement(Verdict.NOT_TESTABLE, "no outliers found", claim="layer_onset"))
    rows.append(_row(name, "layer onset rule", f"{truth.onset_block}/{truth.depth} blocks" if truth.has_outliers
                     else "none", expected_onset(truth), onset_judgement))
    cosine = findings.patch_grid(feats, "neighbour_cosine")
    auc = findings.redundancy_intervals(cosine, mask, seed)["matched"]
    truth_text = ("pinned (confounded)" if truth.pinned else "redundant" if truth.redundant else
                  "random" if truth.has_outliers else "none")
    rows.append(_row(name, "redundancy rule", truth_text, expected_redundancy(truth),
                     claims.judge_redundancy(False, has, auc, pinned)))
    return rows


def register_checks(plain: Features, registers: Features, seed: int = 0) -> list[dict]:
    """The register claims on a pair of twins of one network: patch outliers (``plain``) against the same
    norm planted into the register tokens (``registers``), and the plain twin against itself (nothing moved)."""
    plain_norms, register_norms = findings.patch_grid(plain, "norm"), findings.patch_grid(registers, "norm")
    cutoff = findings.cutoff_from_norms(plain_norms, metrics.PAPER_THRESHOLD)
    cutoff_ratio = cutoff.value / float(np.median(plain_norms))
    moved = findings.register_reduction_interval(plain_norms, register_norms, cutoff_ratio, seed)
    unmoved = findings.register_reduction_interval(plain_norms, plain_norms, cutoff_ratio, seed)
    ratio = findings.register_ratio_interval(registers, seed)
    name = twins.truth_of(registers.meta).plant
    return [
        _row(name, "registers remove the patch outliers", "norm planted into the registers", Verdict.REPRODUCED,
             claims.register_reduction_rule(moved)),
        _row(twins.truth_of(plain.meta).plant, "registers remove the patch outliers (same twin twice)",
             "nothing moved", Verdict.NOT_REPRODUCED, claims.register_reduction_rule(unmoved)),
        _row(name, "the registers carry the high norm", "norm planted into the registers", Verdict.REPRODUCED,
             claims.norm_in_registers_rule(ratio, cutoff_ratio)),
    ]


def validation_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict_markdown(table: pd.DataFrame) -> str:
    """A MyST admonition: whether every rule found its planted truth, and each row that did not."""
    misses = table[~table.matches]
    title = (f"every rule found its planted truth ({len(table)} of {len(table)} checks)" if misses.empty
             else f"{len(misses)} of {len(table)} checks MISJUDGE their planted truth")
    lines = [f"```{{admonition}} Rules against planted truth: {title}", f":class: {'tip' if misses.empty else 'error'}",
             ""]
    lines += [f"- **{row.twin}**, {row.check}: the truth ({row.truth}) calls for *{row.expected}*, the rule gave "
              f"*{row.verdict}* ({row.measured})." for row in misses.itertuples()]
    if misses.empty:
        lines.append("- A twin's truth is declared, not estimated; these rules are the ones every finding page uses.")
    return "\n".join(lines + ["```"])
