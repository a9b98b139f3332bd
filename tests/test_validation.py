"""The rules against planted truth (analysis.validation): every twin of both families, through the pages' own paths.

A rule that misjudges a twin — a definite verdict other than the truth's — fails here; on the held-out family
that is the test the validation exists for (it is never tuned on). A rule that cannot decide (inconclusive, not
testable) where the truth calls for a verdict is counted on the page, not failed here.
"""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import claims, features, findings, twins, validation
from analysis.claims import Verdict
from analysis.stats import Interval



@pytest.fixture(scope="session")
def rows_of(twin_pass):
    """``rows_of(name)``: the validation rows of one twin (a register twin: its pair's register rows)."""
    cache = {}

    def run(name: str) -> pd.DataFrame:
        if name not in cache:
            if name in twins.REGISTER_PAIRS:
                rows = validation.register_checks(twin_pass(twins.REGISTER_PAIRS[name]), twin_pass(name), itself=False)
            elif name in twins.REGISTER_PAIRS.values():
                partner = next(r for r, p in twins.REGISTER_PAIRS.items() if p == name)
                rows = [r for r in validation.register_checks(twin_pass(name), twin_pass(partner)) if r["twin"] == name]
            else:
                rows = validation.patch_checks(twin_pass(name), twins.truth_of(twin_pass(name).meta))
            cache[name] = validation.validation_frame(rows)
        return cache[name]

    return run


def describe(table: pd.DataFrame) -> str:
    return "\n".join(f"{r.twin}, {r.check}: truth ({r.truth}) calls for {r.expected}, the rule gave {r.verdict} "
                     f"(interval {r.interval}; {r.measured})" for r in table.itertuples())


# ---------------------------------------------------------------------------------------------- the bookkeeping


def test_a_misjudgement_is_a_definite_verdict_against_the_truth():
    R, N, I, T = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE, Verdict.NOT_TESTABLE
    assert validation.is_misjudged(R, N) and validation.is_misjudged(N, R)
    assert validation.is_misjudged(I, R) and validation.is_misjudged(T, N)  # confounded or untestable: no verdict
    assert not validation.is_misjudged(R, I) and not validation.is_misjudged(N, T)  # undecided, not misjudged
    assert not validation.is_misjudged(R, R) and not validation.is_misjudged(I, I)


def test_the_share_row_reads_the_interval_not_only_the_estimate():
    truth = twins.truth(twins.TWINS["dev-redundant"], 12, (14, 14), counts=(5,) * 12, between=(1,) * 12)
    planted = truth.share  # 2.55 %
    assert validation.share_matches(truth, Interval(planted, 0.018, 0.031, 12))
    # the reviewer's case: the estimate on the planted share, the interval [0.00 %, 1.02 %] far below it
    assert not validation.share_matches(truth, Interval(planted, 0.0, 0.0102, 12))
    assert not validation.share_matches(truth, Interval(0.0, 0.0, 0.031, 12))  # the estimate misses
    assert not validation.share_matches(truth, Interval(planted, math.nan, math.nan, 12))  # no interval
    none = twins.truth(twins.TWINS["dev-none"], 12, (14, 14), counts=(0,) * 12, between=(0,) * 12)
    assert validation.share_matches(none, Interval(0.0, 0.0, 0.0, 12))
    assert not validation.share_matches(none, Interval(0.0, 0.0, 0.004, 12))


def test_expected_verdicts_follow_the_declared_truth():
    grid = (14, 14)
    truth = lambda name: twins.truth(twins.TWINS[name], 12, grid)  # noqa: E731
    assert validation.expected_onset(truth("dev-redundant")) is Verdict.REPRODUCED  # 4/12 in the middle half
    assert validation.expected_onset(truth("dev-early")) is Verdict.NOT_REPRODUCED  # 1/12
    assert validation.expected_onset(truth("dev-late")) is Verdict.NOT_REPRODUCED  # 10/12
    assert validation.expected_onset(truth("held-late-middle")) is Verdict.REPRODUCED  # 8/12
    assert validation.expected_onset(truth("dev-none")) is Verdict.NOT_TESTABLE
    assert validation.expected_redundancy(truth("dev-pinned")) is Verdict.INCONCLUSIVE
    assert validation.expected_redundancy(truth("held-random-high")) is Verdict.NOT_REPRODUCED
    assert validation.expected_presence(truth("dev-none"), claim_has=False) is Verdict.REPRODUCED


def test_the_verdict_block_counts_each_family_apart():
    rows = [{"family": "development", "twin": "a", "check": "c", "truth": "t", "expected": "reproduced",
             "verdict": "reproduced", "interval": "1 [0, 2]", "measured": "", "matches": True, "misjudged": False,
             "undecided": False},
            {"family": "held-out", "twin": "b", "check": "c", "truth": "t", "expected": "reproduced",
             "verdict": "inconclusive", "interval": "1 [0, 2]", "measured": "m", "matches": False,
             "misjudged": False, "undecided": True}]
    table = validation.validation_frame(rows)
    counts = validation.family_counts(table)
    assert counts.set_index("family").undecided.to_dict() == {"development": 0, "held-out": 1}
    text = validation.verdict_markdown(table)
    assert "no rule misjudges" in text and "undecided: **b** (held-out)" in text and ":class: warning" in text
    table.loc[1, ["verdict", "misjudged", "undecided"]] = ["not reproduced", True, False]
    assert ":class: error" in validation.verdict_markdown(table) and "MISJUDGE" in validation.verdict_markdown(table)


# ---------------------------------------------------------------------------------------------- the pages' own paths


def test_the_register_check_goes_through_the_registers_pages_gate(twin_pass, monkeypatch):
    """The registers page calls judge_registers with the plain model's has_outliers: so does the validation."""
    plain, registers = twin_pass("dev-reg-plain"), twin_pass("dev-registers")
    calls = []
    judge = claims.judge_registers
    monkeypatch.setattr(claims, "judge_registers", lambda *args: calls.append(args) or judge(*args))
    rows = validation.register_checks(plain, registers, itself=False)
    summary = findings.norm_summary({plain.meta["spec"]: plain}, 150.0, True, 0).iloc[0]
    assert len(calls) == 1 and calls[0][:4] == (*validation.PAIR_STAND_IN, False, summary.has_outliers)
    expected = judge(*calls[0])
    assert rows[0]["verdict"] == str(expected.verdict) and rows[0]["interval"] != ""


def test_the_redundancy_check_reads_the_pages_has_outliers(twin_pass, monkeypatch):
    f = twin_pass("held-pinned")
    seen = {}
    found = findings.outliers_found
    monkeypatch.setattr(findings, "outliers_found", lambda *a, **k: seen.setdefault("has", found(*a, **k)))
    judge = claims.judge_redundancy
    monkeypatch.setattr(claims, "judge_redundancy", lambda *a: seen.setdefault("args", a) and judge(*a))
    validation.patch_checks(f, twins.truth_of(f.meta))
    assert seen["args"][0] is False and seen["args"][1] == seen["has"]


#: Twins some rule still misjudges with the present detector (metrics.adaptive_threshold): none. The previous
#: (mixture-only) detector misjudged 7 (a sparse or widened mode read as "no mode", resamples losing a mode, onsets
#: read late); the present one reads a mixture mode only with a density dip, says "undecided" where it cannot tell,
#: and "has none" needs no share above the paper's 3x line either (claims.has_outliers). A twin that some rule
#: misjudges again goes here, as a strict expected failure the page shows, with the reason.
KNOWN_MISJUDGED: dict[str, str] = {}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISJUDGED[name]))
    if name in KNOWN_MISJUDGED else name
    for name in twins.FAMILIES["development"] + twins.FAMILIES["held-out"]])
def test_no_rule_misjudges_a_twin(name, rows_of):
    """Every check on one twin: no rule gives a definite verdict against the planted truth; every rule row shows the
    interval it read (or why there is none)."""
    table = rows_of(name)
    assert len(table) and (table.interval != "").all()
    misjudged = table[table.misjudged]
    assert misjudged.empty, f"{twins.family_of(name)} twin misjudged:\n" + describe(misjudged)


#: Twins whose outliers are planted at 2 % of the patches or more (3-11x the median, or the held-out family's other
#: ranges): at 12 images the detector must decide that they have outliers, where they are and their share. A cap on
#: "undecided" that fails when the detector loses power (the sparse twins, 0.2-0.5 %, and the 3-5x twin stay open).
DECIDED_TWINS = ("dev-redundant", "dev-random", "dev-pinned", "dev-early", "dev-late", "dev-no-shoulder",
                 "held-random-high", "held-pinned", "held-early", "held-late-middle")
DECIDED_CHECKS = ("has a few high-norm tokens", "has no high-norm tokens", "share matches the planted share",
                  "pinned or not")


@pytest.mark.parametrize("name", DECIDED_TWINS)
def test_outliers_planted_at_two_percent_are_decided(name, rows_of):
    table = rows_of(name)
    rows = table[table.check.isin(DECIDED_CHECKS)]
    assert len(rows) == len(DECIDED_CHECKS) and rows.matches.all(), describe(rows[~rows.matches])


def test_rule_rows_show_their_interval(rows_of):
    table = rows_of("held-pinned")
    presence = table[table.check == "has a few high-norm tokens"].iloc[0]
    assert "[" in presence.interval  # the share interval the presence rule read
    redundancy = table[table.check == "redundancy rule"].iloc[0]
    assert redundancy.verdict == "inconclusive" and redundancy.interval != "—"
    assert np.all(table.family == "held-out")


def test_the_layer_band_is_closed_an_interval_equal_to_the_band_lies_in_it():
    """The convention the onset rows rely on (claims.band_rule): the claim is only "somewhere in the band", so an
    interval inside it, edges included — the whole band too — reproduces it; one that crosses an edge is undecided."""
    low, high = claims.MIDDLE_BAND
    assert claims.band_rule(Interval(0.5, low, high, 12), low, high) is Verdict.REPRODUCED
    assert claims.band_rule(Interval(0.5, low - 1e-9, high, 12), low, high) is Verdict.INCONCLUSIVE
    assert claims.band_rule(Interval(0.75, high, 0.9, 12), low, high) is Verdict.INCONCLUSIVE  # from the edge out
    assert claims.band_rule(Interval(0.8, high + 1e-9, 1.0, 12), low, high) is Verdict.NOT_REPRODUCED
    assert claims.band_rule(Interval(0.5, math.nan, math.nan, 12), low, high) is Verdict.INCONCLUSIVE
