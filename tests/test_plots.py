"""Figures drawn from known tables: what they show, and no failure when a run judged nothing."""

import pandas as pd

from analysis import plots


def test_verdict_chart_counts_claims_per_page_and_says_when_there_are_none():
    claims = pd.DataFrame({"page": ["norm_histogram", "norm_histogram", "layer_dependence"],
                           "verdict": ["reproduced", "not testable", "reproduced"]})
    axes = plots.verdict_chart(claims).axes[0]
    widths = sorted(round(bar.get_width()) for bar in axes.patches if bar.get_width() > 0)
    assert widths == [1, 1, 1]  # one claim per (page, verdict)
    assert [t.get_text() for t in axes.get_yticklabels()] == ["layer_dependence", "norm_histogram"]
    empty = plots.verdict_chart(claims.iloc[:0]).axes[0]
    assert [t.get_text() for t in empty.texts] == ["no claims judged in this run"]
