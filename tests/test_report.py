"""How a page shows what it measured (analysis/report.py): a claim's figure and its reason said once in the verdict
block, and a table's cells as a reader reads them (an infinite cutoff in a word, the stored table unchanged)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from analysis import claims, prose, report

# --- a claim's figure and reason, said once -------------------------------------------------------------------------


@pytest.mark.parametrize("measured, reason, line", [
    # a reason that is the figure: said once, as the reason
    ("needs two checkpoints", "needs two checkpoints", "Why: needs two checkpoints."),
    # a reason that opens with the figure and goes on: said once, as this run's
    ("onset 50% [50%, 58%] of 12 blocks", "onset 50% [50%, 58%] of 12 blocks (expanded BCa bootstrap over images, n=8)",
     "This run: onset 50% [50%, 58%] of 12 blocks (expanded BCa bootstrap over images, n=8)."),
    # a reason of its own: both
    ("enrichment 18.3 [13.1, 24.1]", "the whole interval lies at or above 2.0x",
     "This run: enrichment 18.3 [13.1, 24.1]. Why: the whole interval lies at or above 2.0x."),
])
def test_a_claims_figure_is_said_once(measured, reason, line):
    assert report.measured_and_why(measured, reason) == line
    assert prose.find_problems(f"Paper: a figure. {line}") == []


def test_the_verdict_block_says_a_restated_figure_once():
    claim = claims.Claim.of("AugReg ViT-Ti/16", "w",
                            claims.judge_attention(False, True, claims.Interval(18.3, 13.1, 24.1, 8)))
    # the judged claim's reason opens with its figure (the interval, then how it was computed): said once
    judged = report.verdict_markdown([claim])
    assert claim.reason.startswith(claim.measured) and f"This run: {claim.reason}." in judged and "Why:" not in judged
    both = report.verdict_markdown([dataclasses.replace(claim, reason="a reason of its own")])
    assert f"This run: {claim.measured}. Why: a reason of its own." in both
    restated = report.verdict_markdown([dataclasses.replace(claim, reason=claim.measured)])
    assert f"Why: {claim.measured}." in restated and "This run:" not in restated
    opened = report.verdict_markdown([dataclasses.replace(claim, reason=f"{claim.measured} (and why)")])
    assert f"This run: {claim.measured} (and why)." in opened and "Why:" not in opened
    for text in (judged, both, restated, opened):
        assert prose.find_problems(report.markdown_text(text)) == []


# --- a table as the page shows it -----------------------------------------------------------------------------------


def test_an_infinite_cutoff_is_shown_as_none_and_stored_as_inf():
    frame = pd.DataFrame({"model": ["a", "b", "c"], "cutoff": [math.inf, 61.4, math.nan],
                          "block_cutoff": [math.inf, 12.0, 3.0], "share_above_block_cutoff": [0.0, 0.25, 0.5]})
    html = report.table(frame).to_html()
    assert ">none<" in html and ">inf<" not in html
    assert ">61<" in html and ">12<" in html and ">–<" in html  # a number as before; nan as "–"
    assert ">25.00%<" in html and ">0.00%<" in html  # a share of a cutoff column is a share, not a cutoff
    assert frame.cutoff.iloc[0] == math.inf and frame.block_cutoff.iloc[0] == math.inf  # the data are untouched


@pytest.mark.parametrize("value, shown", [(math.inf, "none"), (61.4, "61"), (0.0, "0")])
def test_a_cutoff_cell(value, shown):
    assert report.cutoff_cell("{:.0f}")(value) == shown
    assert report.column_format("adaptive_cutoff", float)(value) == shown
    assert report.column_format("median_norm", float) == "{:.1f}"  # other columns keep their format strings


def test_image_notes_are_grouped_by_what_was_done():
    notes = ["builtin:grass: L image converted to RGB", "builtin:camera: L image converted to RGB",
             "photo.png: RGBA image with transparency composited on white", "builtin:camera: L image converted to RGB",
             "a note without an image"]
    assert report.grouped_notes(notes) == ["a note without an image", "L image converted to RGB (2): camera, grass",
                                           "RGBA image with transparency composited on white (1): photo.png"]
