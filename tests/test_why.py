"""'Why these verdicts': each cause is read from the reason a real rule gives, and the page's text names the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import claims, why
from analysis.claims import Claim
from analysis.stats import Interval, too_few

TINY = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
G, G_REG = "vit_giant_patch14_dinov2.lvd142m", "vit_giant_patch14_reg4_dinov2.lvd142m"


def iv(low, high, n=8):
    return Interval((low + high) / 2, low, high, n)


#: One real judgement per cause, made by the study's own rules.
JUDGED = {
    "random": claims.judge_redundancy(True, True, iv(0.7, 0.9), False),
    "no_statement": claims.judge_outliers(TINY, False, True, iv(0.01, 0.02)),
    "pinned": claims.judge_redundancy(False, True, iv(0.7, 0.9), True),
    "too_few": claims.judge_redundancy(False, True, too_few(0.8, 4), False),
    "straddles": claims.judge_redundancy(False, True, iv(0.5, 0.9), False),
    "undecided_outliers": claims.judge_redundancy(False, None, iv(0.7, 0.9), False),
    "no_outliers": claims.judge_registers(G, G_REG, False, False, iv(0.95, 1.0)),
    "floor": claims.judge_discovery(False, True, True, iv(0.0, 0.0), True),
    "not_public": claims.judge_size_trend([("vit_small_patch14_dinov2.lvd142m", False, False),
                                           ("vit_base_patch14_dinov2.lvd142m", False, True)]),
    "not_applicable": claims.not_applicable("attention", "SigLIP"),
    "attention_before": claims.judge_test_time_attention(False, True, 3, iv(1.5, 4.0), iv(0.5, 0.9)),
    "attention_before_unclear": claims.judge_test_time_attention(False, True, 3, iv(0.5, 0.9), iv(1.5, 4.0)),
    "too_few_equal": claims.judge_attention(False, True, Interval(5.0, 5.0, 5.0, 8, "every resample equal")),
    "straddles_matched": claims.judge_attention(False, True, iv(3.0, 6.0), matched=iv(1.5, 4.0)),
    "no_outliers_depth": claims.judge_layer_onset(False, Interval(float("nan"), float("nan"), float("nan"), 8), 12),
    "definitions": claims.judge_outliers("vit_base_patch16_224.dino", False, False, iv(0.0, 0.0),
                                         paper_share=iv(0.01, 0.02)),
    "bracket": claims.judge_training_onset([(0.0, False, False), (0.1, False, False), (0.9, False, True)]),
    "band": claims.judge_layer_onset(False, iv(0.1, 0.4, n=20), 12),
}


@pytest.mark.parametrize("key", list(JUDGED))
def test_each_cause_is_read_from_the_reason_its_rule_gives(key):
    judged = JUDGED[key]
    assert str(judged.verdict) in why.UNDECIDED_VERDICTS, judged
    assert why.cause_of(judged.reason).key == key.split("_unclear")[0].split("_equal")[0].split("_matched")[0] \
        .split("_depth")[0], judged.reason


def test_an_unknown_reason_is_other_and_every_cause_has_a_remedy_for_every_set():
    assert why.cause_of("something new").key == "other"
    for cause in why.CAUSES:
        for parameter_set in ("ci", "lite", "paper"):
            assert cause.remedy(parameter_set)
    assert "lite" in why.BY_KEY["no_statement"].remedy("ci") and "lite" not in why.BY_KEY["no_statement"].remedy("lite")


def _frame(judgements: dict[str, claims.Judgement]) -> pd.DataFrame:
    rows = [Claim.of(f"model {key}", "w", judged) for key, judged in judgements.items()]
    return claims.claims_frame(rows)


def test_the_section_groups_claims_by_cause_and_names_the_fix():
    decided = claims.judge_redundancy(False, True, iv(0.7, 0.9), False)
    frame = _frame({"pinned": JUDGED["pinned"], "too_few": JUDGED["too_few"], "decided": decided,
                    "random": JUDGED["random"]})
    text = why.markdown(frame, "ci")
    assert text.startswith("3 of the 4 claims of this run are undecided (2 inconclusive, 1 not testable)")
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert [b.split("**")[1] for b in bullets] == [why.BY_KEY[k].words[0].upper() + why.BY_KEY[k].words[1:]
                                                   for k in ("random", "pinned", "too_few")]  # causes' order
    assert "model pinned" in bullets[1] and "{doc}`redundancy`" in bullets[1] and "model decided" not in text
    assert "move with the content" in text and "n_images" in text


def test_a_run_whose_claims_are_all_decided_says_so():
    decided = claims.judge_redundancy(False, True, iv(0.7, 0.9), False)
    assert why.markdown(_frame({"a": decided}), "lite") == (
        "Every one of the 1 claims of this run was decided (reproduced or not reproduced).")
