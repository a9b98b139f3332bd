"""Each verdict rule on inputs whose right verdict is known, at and around its margin."""

import math

import numpy as np
import pytest

from analysis import claims
from analysis.claims import Kind, Verdict, headline, interval_rule
from analysis.report import verdict_markdown, weights_markdown
from analysis.stats import Interval, image_bootstrap, images_to_settle

DINOV2_G = "vit_giant_patch14_dinov2.lvd142m"
DINO_B = "vit_base_patch16_224.dino"
TINY = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
DINOV2_REG = "vit_giant_patch14_reg4_dinov2.lvd142m"


def iv(low, high, estimate=None, n=8):
    return Interval((low + high) / 2 if estimate is None else estimate, low, high, n)


@pytest.mark.parametrize("low, high, expected", [
    (0.61, 0.70, Verdict.REPRODUCED), (0.60, 0.70, Verdict.REPRODUCED),  # at the margin: "at least"
    (0.55, 0.65, Verdict.INCONCLUSIVE), (0.50, 0.599, Verdict.NOT_REPRODUCED),
    (float("nan"), float("nan"), Verdict.INCONCLUSIVE),
])
def test_interval_rule_at_and_around_its_margin(low, high, expected):
    assert interval_rule(iv(low, high), 0.6) is expected


def test_interval_rule_strict_and_below():
    assert interval_rule(iv(0.0, 0.1), 0.0, strict=True) is Verdict.INCONCLUSIVE
    assert interval_rule(iv(0.001, 0.1), 0.0, strict=True) is Verdict.REPRODUCED
    assert interval_rule(iv(-0.1, 0.0), 0.0, strict=True) is Verdict.NOT_REPRODUCED
    assert interval_rule(iv(0.0, 0.0), 0.0, above=False) is Verdict.REPRODUCED  # "at most 0"
    assert interval_rule(iv(0.0, 0.01), 0.0, above=False) is Verdict.INCONCLUSIVE
    assert interval_rule(iv(0.01, 0.02), 0.0, above=False) is Verdict.NOT_REPRODUCED


def test_no_invented_expectation_for_the_offline_model():
    assert claims.paper_expectation(TINY) is None
    assert claims.judge_outliers(TINY, False, True, iv(0.018, 0.021)).verdict is Verdict.NOT_TESTABLE


def test_named_models_are_only_the_papers():
    table = claims.named_models()
    assert set(table.model) == set(claims.PAPER_WITH_OUTLIERS) | set(claims.PAPER_WITHOUT_OUTLIERS)
    assert "vit_large_patch14_dinov2.lvd142m" not in set(table.model)  # distilled release, not in the paper's figures
    assert all("Fig." in text or "Table" in text for text in table.paper)
    assert claims.paper_expectation("vit_small_patch16_224.dino") is None


def test_paper_outlier_claims_for_named_models():
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.018, 0.021)).verdict is Verdict.REPRODUCED
    assert claims.judge_outliers(DINOV2_G, False, False, iv(0, 0)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.05, 0.12, 0.08)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.0, 0.03, 0.01)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.3, 0.4)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.1, 0.1)).verdict is Verdict.REPRODUCED  # "at most"
    assert claims.judge_outliers(DINO_B, False, False, iv(0, 0)).verdict is Verdict.REPRODUCED
    assert claims.judge_outliers(DINO_B, False, True, iv(0.02, 0.03)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_outliers(DINO_B, False, True, iv(0.0, 0.03)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_outliers(DINO_B, False, True, iv(0.0, 0.0)).verdict is Verdict.REPRODUCED


def test_paper_cutoff_is_judged_beside_the_adaptive_one():
    both = claims.judge_outliers(DINOV2_G, False, True, iv(0.018, 0.021), iv(0.02, 0.025))
    assert both.verdict is Verdict.REPRODUCED and "above the paper's 150" in both.measured
    disagree = claims.judge_outliers(DINOV2_G, False, True, iv(0.018, 0.021), iv(0.0, 0.0))
    assert disagree.verdict is Verdict.INCONCLUSIVE and "disagree" in disagree.reason
    adaptive_misses = claims.judge_outliers(DINOV2_G, False, False, iv(0, 0), iv(0.02, 0.025))
    assert adaptive_misses.verdict is Verdict.INCONCLUSIVE
    neither = claims.judge_outliers(DINOV2_G, False, False, iv(0, 0), iv(0.0, 0.0))
    assert neither.verdict is Verdict.NOT_REPRODUCED
    # DINO's "below 100" is a reading too: tokens above 100 contradict "no outliers" even without a mode
    assert claims.judge_outliers(DINO_B, False, False, iv(0, 0), iv(0.3, 0.4)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_outliers(DINO_B, False, False, iv(0, 0), iv(0.0, 0.0)).verdict is Verdict.REPRODUCED
    # a model without a paper cutoff ignores the fixed reading
    reg = "vit_giant_patch14_reg4_dinov2.lvd142m"
    assert claims.judge_outliers(reg, False, False, iv(0, 0), iv(0.3, 0.4)).verdict is Verdict.REPRODUCED


def test_has_outliers_reads_the_interval():
    assert claims.has_outliers(True, iv(0.001, 0.02))
    assert not claims.has_outliers(True, iv(0.0, 0.02))
    assert not claims.has_outliers(False, iv(0.01, 0.02))


def test_random_weights_are_never_testable():
    random = [claims.judge_outliers(DINOV2_G, True, True, iv(0.02, 0.03)),
              claims.judge_attention(True, True, iv(5, 9)), claims.judge_layer_onset(True, iv(0.3, 0.4), 12),
              claims.judge_redundancy(True, True, iv(0.8, 0.9), False),
              claims.judge_local_information(True, True, iv(0.1, 0.2), iv(1, 2)),
              claims.judge_global_information(True, 50, iv(0.1, 0.2)),
              claims.judge_test_time_registers(True, True, 2, iv(1, 1)),
              claims.judge_test_time_attention(True, True, 2, iv(0.5, 1)),
              claims.judge_discovery(True, True, True, iv(0.1, 0.2, n=16)),
              claims.judge_discovery_registers("vit_small_patch14_dinov2.lvd142m",
                                               "vit_small_patch14_reg4_dinov2.lvd142m", True, iv(0.1, 0.2, n=16)),
              claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, True, iv(8, 12), 5.0),
              claims.judge_registers(DINOV2_G, DINOV2_REG, True, True, iv(0.95, 1))]
    assert all(j.verdict is Verdict.NOT_TESTABLE for j in random)
    assert all(j.reason == claims.RANDOM for j in random)


def test_attention_enrichment_margin():
    assert claims.judge_attention(False, True, iv(2.0, 5.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_attention(False, True, iv(1.5, 2.5)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_attention(False, True, iv(1.0, 1.99)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_attention(False, False, iv(1.0, 1.99)).verdict is Verdict.NOT_TESTABLE


def test_attention_asks_whether_position_explains_it():
    pinned = claims.judge_attention(False, True, iv(10, 20), pinned=True)
    assert pinned.verdict is Verdict.INCONCLUSIVE and "confounded by position" in pinned.reason
    assert claims.judge_attention(False, True, iv(3, 5), False, iv(2.5, 4)).verdict is Verdict.REPRODUCED
    by_position = claims.judge_attention(False, True, iv(3, 5), False, iv(0.8, 1.2))
    assert by_position.verdict is Verdict.NOT_REPRODUCED and "same positions" in by_position.reason
    assert claims.judge_attention(False, True, iv(1, 1.5), False, iv(0.8, 1.2)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_attention(False, True, iv(1, 1.5), False, iv(1.5, 3)).verdict is Verdict.NOT_REPRODUCED
    unsure = claims.judge_attention(False, True, iv(3, 5), False, iv(1.5, 3))
    assert unsure.verdict is Verdict.INCONCLUSIVE and "does not clear" in unsure.reason
    assert claims.judge_attention(False, True, iv(1.5, 3), False, iv(3, 5)).verdict is Verdict.INCONCLUSIVE
    nan = Interval(float("nan"), float("nan"), float("nan"), 8)
    assert claims.judge_attention(False, True, iv(3, 5), False, nan).verdict is Verdict.REPRODUCED


def test_layer_onset_band_around_the_paper():
    low, high = claims.ONSET_BAND
    assert (low, high) == (0.25, 0.5) and claims.PAPER_ONSET == 15 / 40
    assert claims.judge_layer_onset(False, iv(0.3, 0.45), 40, DINOV2_G).verdict is Verdict.REPRODUCED
    assert claims.judge_layer_onset(False, iv(0.25, 0.5), 40, DINOV2_G).verdict is Verdict.REPRODUCED  # edges inside
    assert claims.judge_layer_onset(False, iv(0.2, 0.3), 40, DINOV2_G).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.45, 0.55), 40, DINOV2_G).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.0, 0.24), 40, DINOV2_G).verdict is Verdict.NOT_REPRODUCED  # too early
    assert claims.judge_layer_onset(False, iv(0.51, 0.7), 40, DINOV2_G).verdict is Verdict.NOT_REPRODUCED  # too late
    assert claims.judge_layer_onset(False, iv(0.3, 1.0), 40, DINOV2_G).verdict is Verdict.INCONCLUSIVE  # some resamples: never
    assert claims.judge_layer_onset(False, Interval(float("nan"), 0.9, 1.0, 8), 40, DINOV2_G).verdict is Verdict.NOT_TESTABLE
    # undecided just before the onset: the mode may start earlier, so only "too early" stands
    assert claims.judge_layer_onset(False, iv(0.3, 0.45), 40, DINOV2_G, exact=False).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.51, 0.7), 40, DINOV2_G, exact=False).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.0, 0.24), 40, DINOV2_G, exact=False).verdict is Verdict.NOT_REPRODUCED
    assert "may start earlier" in claims.judge_layer_onset(False, iv(0.3, 0.45), 40, DINOV2_G, exact=False).reason
    assert claims.judge_layer_onset(False, Interval(0.3, float("nan"), float("nan"), 8), 40, DINOV2_G).verdict \
        is Verdict.INCONCLUSIVE


def test_layer_onset_elsewhere_is_the_middle_half():
    assert claims.MIDDLE_BAND == (0.25, 0.75)
    judged = claims.judge_layer_onset(False, iv(0.45, 0.55), 12, "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert judged.verdict is Verdict.REPRODUCED and judged.claim == "layer_onset"
    assert claims.judge_layer_onset(False, iv(0.45, 0.55), 40, DINOV2_G).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.45, 0.55), 40, DINOV2_G).claim == "layer_onset_paper"
    assert claims.judge_layer_onset(False, iv(0.8, 0.9), 12).verdict is Verdict.NOT_REPRODUCED  # only at the end
    assert claims.judge_layer_onset(False, iv(0.05, 0.2), 12).verdict is Verdict.NOT_REPRODUCED  # from the start


def test_band_rule():
    assert claims.band_rule(iv(0.3, 0.4), 0.25, 0.5) is Verdict.REPRODUCED
    assert claims.band_rule(iv(0.6, 0.7), 0.25, 0.5) is Verdict.NOT_REPRODUCED
    assert claims.band_rule(iv(0.1, 0.2), 0.25, 0.5) is Verdict.NOT_REPRODUCED
    assert claims.band_rule(iv(0.1, 0.3), 0.25, 0.5) is Verdict.INCONCLUSIVE
    assert claims.band_rule(iv(0.4, 0.6), 0.25, 0.5) is Verdict.INCONCLUSIVE
    assert claims.band_rule(iv(0.1, 0.9), 0.25, 0.5) is Verdict.INCONCLUSIVE


def test_size_is_never_judged_on_distilled_releases():
    s, b, l, g = (f"vit_{x}_patch14_dinov2.lvd142m" for x in ("small", "base", "large", "giant"))
    judged = claims.judge_size_trend([(s, False, False), (b, False, False), (l, False, True), (g, False, True)])
    assert judged.verdict is Verdict.NOT_TESTABLE and "distilled" in judged.reason
    assert "small_patch14_dinov2.lvd142m: none" in judged.measured  # measured and shown
    assert claims.judge_size_trend([(s, True, False), (g, True, True)]).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_size_trend([("deit3_small_patch16_224.fb_in1k", False, False),
                                    ("deit3_base_patch16_224.fb_in1k", False, True)]).verdict is Verdict.NOT_TESTABLE


def test_size_rule_on_a_series_trained_alike(monkeypatch):
    monkeypatch.setattr(claims, "PAPER_SIZE_SERIES", ["t", "s", "b", "l", "g"])
    monkeypatch.setattr(claims, "DISTILLED", set())
    judge = claims.judge_size_trend
    assert judge([("s", False, False), ("b", False, False), ("l", False, True)]).verdict is Verdict.REPRODUCED
    assert judge([("l", False, True), ("s", False, False)]).verdict is Verdict.REPRODUCED  # any order
    assert judge([("s", False, True), ("g", False, True)]).verdict is Verdict.NOT_REPRODUCED
    assert judge([("s", False, False), ("g", False, False)]).verdict is Verdict.NOT_REPRODUCED
    assert judge([("g", False, True)]).verdict is Verdict.NOT_TESTABLE


def test_training_onset_about_a_third():
    judge = claims.judge_training_onset
    assert judge([(0, True, False), (0.25, False, False), (0.45, False, True), (1, False, True)]).verdict \
        is Verdict.REPRODUCED
    assert judge([(0, True, False), (0.8, False, False), (0.9, False, True), (1, False, True)]).verdict \
        is Verdict.NOT_REPRODUCED  # far later than a third
    assert judge([(0, True, False), (0.05, False, False), (0.1, False, True), (1, False, True)]).verdict \
        is Verdict.NOT_REPRODUCED  # far earlier
    assert judge([(0, True, False), (0.2, False, False), (0.4, False, True), (1, False, True)]).verdict \
        is Verdict.INCONCLUSIVE  # the bracket starts below the band: not "about a third" for sure
    assert judge([(0, True, False), (1, False, True)]).verdict is Verdict.NOT_TESTABLE
    assert judge([(0, True, False), (0.5, True, False), (1, True, False)]).verdict is Verdict.NOT_TESTABLE
    assert judge([(0, True, False), (0.5, False, False), (1, False, False)]).verdict is Verdict.NOT_REPRODUCED
    assert judge([(0, False, True), (0.5, False, True), (1, False, True)]).verdict is Verdict.NOT_REPRODUCED


def test_redundancy_pinned_outliers_are_confounded():
    assert claims.judge_redundancy(False, True, iv(0.9, 1.0), True).verdict is Verdict.INCONCLUSIVE
    assert "confounded by position" in claims.judge_redundancy(False, True, iv(0.9, 1.0), True).reason
    nan = Interval(float("nan"), float("nan"), float("nan"), 8)
    assert claims.judge_redundancy(False, True, nan, False).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_redundancy(False, True, iv(0.6, 0.8), False).verdict is Verdict.REPRODUCED
    assert claims.judge_redundancy(False, True, iv(0.55, 0.8), False).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_redundancy(False, True, iv(0.4, 0.59), False).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_redundancy(False, False, iv(0.6, 0.8), False).verdict is Verdict.NOT_TESTABLE


def test_local_and_global_information():
    assert claims.judge_local_information(False, True, iv(0.05, 0.2), iv(1, 3)).verdict is Verdict.REPRODUCED
    assert claims.judge_local_information(False, True, iv(-0.2, -0.1), iv(1, 3)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_local_information(False, True, iv(0.05, 0.2), iv(-3, -1)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_local_information(False, True, iv(-0.01, 0.2), iv(1, 3)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_local_information(False, True, iv(0.05, 0.2), iv(0.0, 3)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_local_information(False, False, iv(0.05, 0.2), iv(1, 3)).verdict is Verdict.NOT_TESTABLE
    pinned = claims.judge_local_information(False, True, iv(-0.2, -0.1), iv(1, 3), pinned=True)
    assert pinned.verdict is Verdict.INCONCLUSIVE and "confounded by position" in pinned.reason
    assert claims.judge_global_information(False, 19, iv(0.1, 0.3)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_global_information(False, 20, iv(0.1, 0.3)).verdict is Verdict.REPRODUCED
    assert claims.judge_global_information(False, 20, iv(0.0, 0.3)).verdict is Verdict.INCONCLUSIVE  # strict
    assert claims.judge_global_information(False, 20, iv(-0.05, 0.3)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_global_information(False, 20, iv(-0.2, 0.0)).verdict is Verdict.NOT_REPRODUCED


def test_a_released_dinov2_pair_of_another_size_is_judged_as_the_mechanism():
    base, base_reg = "vit_base_patch14_dinov2.lvd142m", "vit_base_patch14_reg4_dinov2.lvd142m"
    vanish = claims.judge_registers(base, base_reg, False, True, iv(0.95, 1.0))
    assert vanish.verdict is Verdict.REPRODUCED and vanish.claim == "registers_released"
    assert claims.CLAIMS[vanish.claim].kind is Kind.MECHANISM and "released DINOv2 pair" in vanish.rule
    assert claims.judge_registers(base, base_reg, False, True, iv(0.8, 0.95)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_registers(base, base_reg, False, True, iv(0.2, 0.5)).verdict is Verdict.NOT_REPRODUCED
    no_outliers = claims.judge_registers(base, base_reg, False, False, iv(0.95, 1))  # nothing to remove
    assert no_outliers.verdict is Verdict.NOT_TESTABLE and no_outliers.claim == "registers_released"
    assert claims.judge_registers(base, base_reg, False, None, iv(0.95, 1)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_registers(base, base_reg, True, True, iv(0.95, 1)).claim == "registers"  # random: control
    assert claims.judge_registers(base, DINOV2_REG, False, True, iv(0.95, 1)).verdict is Verdict.NOT_TESTABLE  # sizes
    carry = claims.judge_norm_in_registers(base, base_reg, False, iv(8, 12), 5.0, True)
    assert carry.verdict is Verdict.REPRODUCED and carry.claim == "norm_in_registers_released"
    assert claims.judge_norm_in_registers(base, base_reg, False, iv(1, 2), 5.0, True).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_norm_in_registers(base, base_reg, False, iv(8, 12), math.inf, True).claim == "norm_in_registers_released"
    # gated like the reduction: no outliers on the plain model, or undecided, and there is no norm to move
    assert claims.judge_norm_in_registers(base, base_reg, False, iv(8, 12), 5.0, False).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_norm_in_registers(base, base_reg, False, iv(8, 12), 5.0, None).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(8, 12), 5.0).verdict is Verdict.REPRODUCED
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, True, iv(0.95, 1.0)).claim == "registers"  # the paper's


def test_registers_only_on_the_papers_pairs():
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, True, iv(0.95, 1.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, True, iv(0.9, 1.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, True, iv(0.8, 0.95)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, True, iv(0.2, 0.5)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_registers(DINOV2_G, DINOV2_REG, False, False, iv(0.95, 1)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_registers(TINY, DINOV2_REG, False, True, iv(0.95, 1)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(8, 12), 5.0).verdict is Verdict.REPRODUCED
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(5, 12), 5.0).verdict is Verdict.REPRODUCED
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(4, 6), 5.0).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(1, 2), 5.0).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_norm_in_registers(DINOV2_G, DINOV2_REG, False, iv(8, 12), math.inf).verdict \
        is Verdict.NOT_TESTABLE
    assert claims.judge_norm_in_registers(TINY, DINOV2_REG, False, iv(8, 12), 5.0).verdict is Verdict.NOT_TESTABLE


def test_test_time_registers_and_their_attention():
    assert claims.judge_test_time_registers(False, True, 1, iv(0.9, 1.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_test_time_registers(False, True, 1, iv(0.85, 1.0)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_test_time_registers(False, True, 1, iv(0.5, 0.89)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_test_time_registers(False, True, 0, iv(0.9, 1.0)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_test_time_registers(False, False, 1, iv(0.9, 1.0)).verdict is Verdict.NOT_TESTABLE
    attention = claims.judge_test_time_attention
    assert attention(False, True, 2, iv(0.8, 1.5)).verdict is Verdict.REPRODUCED
    assert attention(False, True, 2, iv(1.5, 2.0)).verdict is Verdict.REPRODUCED  # "at most"
    assert attention(False, True, 2, iv(1.5, 3.0)).verdict is Verdict.INCONCLUSIVE
    assert attention(False, True, 2, iv(10.0, 18.0)).verdict is Verdict.NOT_REPRODUCED
    assert attention(False, True, 0, iv(0.8, 1.5)).verdict is Verdict.NOT_REPRODUCED
    assert attention(False, False, 2, iv(0.8, 1.5)).verdict is Verdict.NOT_TESTABLE


def test_discovery_is_never_judged_from_a_floor():
    n16 = dict(n=16)
    assert claims.judge_discovery(False, False, False, iv(0, 0, **n16)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_discovery(False, True, False, iv(0, 0, **n16)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_discovery(False, True, True, iv(0.1, 0.3, **n16)).verdict is Verdict.REPRODUCED
    assert claims.judge_discovery(False, True, True, iv(-0.1, 0.0, **n16)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_discovery(False, True, True, iv(0.1, 0.3, n=7)).verdict is Verdict.NOT_TESTABLE
    floor = claims.judge_discovery(False, True, True, iv(0.0, 0.0, **n16), at_floor=True)
    assert floor.verdict is Verdict.INCONCLUSIVE and "floor" in floor.reason
    small, small_reg = "vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m"
    table3 = claims.judge_discovery_registers
    assert table3(small, small_reg, False, iv(0.1, 0.3, **n16)).verdict is Verdict.REPRODUCED
    assert table3(small, small_reg, False, iv(-0.3, -0.1, **n16)).verdict is Verdict.NOT_REPRODUCED
    assert table3(small, small_reg, False, iv(0.0, 0.0, **n16), at_floor=True).verdict is Verdict.INCONCLUSIVE
    assert table3(small, small_reg, False, iv(0.1, 0.3, n=4)).verdict is Verdict.NOT_TESTABLE
    assert table3(TINY, small_reg, False, iv(0.1, 0.3, **n16)).verdict is Verdict.NOT_TESTABLE
    assert table3(small, DINOV2_REG, False, iv(0.1, 0.3, **n16)).verdict is Verdict.NOT_TESTABLE


def test_headline_needs_every_testable_claim():
    r, n, i, t = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE, Verdict.NOT_TESTABLE
    assert headline([r, r]) == "reproduced"
    assert headline([r, t]) == "reproduced (1 not testable)"
    assert headline([r, r, i, t, t, t]) == "2 reproduced, 1 inconclusive, 3 not testable"
    assert headline([t]) == "1 not testable"  # a page green only from a stand-in is gone
    assert headline([r, n]) == "1 reproduced, 1 not reproduced"


def test_controls():
    assert claims.control("x (random init)", False, 0.0).passed
    assert not claims.control("x (random init)", True, 0.02).passed


def test_bootstrap_resamples_images_and_is_seeded():
    per_image = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]] * 2, dtype=bool)  # 8 images
    share = image_bootstrap({"h": per_image}, lambda c: float(np.mean(c["h"])), seed=0, method="percentile")
    assert share.estimate == pytest.approx(3 / 16)
    assert 0 <= share.low < share.estimate < share.high <= 0.5  # an image holds at most 2 of 4 outliers
    assert image_bootstrap({"h": per_image}, lambda c: float(np.mean(c["h"])), seed=0, method="percentile") == share
    constant = image_bootstrap({"v": np.ones(8)}, lambda c: float(np.mean(c["v"])), seed=0)
    assert (constant.low, constant.high) == (1.0, 1.0)
    few = image_bootstrap({"h": per_image[:4]}, lambda c: float(np.mean(c["h"])), seed=0)  # below MIN_IMAGES
    assert few.too_few and math.isnan(few.low) and math.isnan(few.high)
    assert interval_rule(few, 0.0) is Verdict.INCONCLUSIVE


def test_images_to_settle_shrinks_with_distance():
    near = images_to_settle(Interval(0.62, 0.55, 0.69, 8), 0.6)
    far = images_to_settle(Interval(0.66, 0.59, 0.73, 8), 0.6)
    assert near > far > 8 and images_to_settle(Interval(0.6, 0.5, 0.7, 8), 0.6) is None


def test_verdict_block_shows_kind_interval_rule_and_controls():
    claim = claims.Claim.of("AugReg ViT-Ti/16", "w", claims.judge_attention(False, True, iv(13.1, 24.1, 18.3)))
    assert (claim.page, claim.kind) == ("attention_maps", Kind.MECHANISM)
    assert claim.claim == claims.CLAIMS["attention"].sentence and claim.weights == "w"
    text = verdict_markdown([claim], [claims.control("ctl (random init)", False, 0.0)])
    assert "Verdict of this run: reproduced" in text and ":class: tip" in text
    assert "mechanism, conditional on outliers" in text and "18.3 [13.1, 24.1]" in text and "Rule:" in text
    assert "Negative controls" in text and "as expected" in text


def test_random_weights_block_is_a_titled_admonition():
    from analysis.models import Provenance

    text = weights_markdown([Provenance("m", "random", "", "", 0)], ["x: L image converted to RGB"])
    assert text.startswith("```{admonition} Weights of this run (includes random initialisation)\n:class: danger\n")
    assert "negative controls" in text and "Images: L image converted to RGB (1): x" in text


# =============================================================================================
# Every field of a judgement, rule by rule: the verdict, the reason a page prints, the rule with its
# margin, the interval the rule read, the claim it belongs to and the measurement it shows.

J = claims.Judgement
BOOT = "bootstrap over images"
NAN = float("nan")
RANDOM = "random initialisation: an untrained network cannot show what training does"
NO_PAIR = "the paper makes no statement about this model pair"


def too_few(estimate, n=4):
    """What the bootstrap returns below its minimum number of images: an estimate, no interval."""
    from analysis.stats import too_few as make

    return make(estimate, n)


# --- the paper's statements about named models ---------------------------------------------

def test_paper_statements_of_named_and_unnamed_models():
    assert claims.paper_statement(DINOV2_G) == "about 2% of DINOv2 ViT-g output tokens above norm 150 (Fig. 3)"
    assert claims.paper_statement(DINO_B) == "DINO ViT-B/16 output norms stay below 100, no outliers (Fig. 3)"
    assert claims.paper_statement(TINY) == "the paper does not test this model"
    assert claims.paper_expectation(DINOV2_G) is True and claims.paper_expectation(DINO_B) is False


def test_named_models_say_which_has_outliers():
    table = claims.named_models()
    assert list(table.columns) == ["model", "has_outliers", "paper"]
    assert table.set_index("model").has_outliers.to_dict() == {
        DINOV2_G: True, "deit3_base_patch16_224.fb_in22k_ft_in1k": True, "vit_base_patch16_clip_224.laion2b": True,
        DINO_B: False, DINOV2_REG: False}
    assert table.set_index("model").paper[DINOV2_REG] == claims.PAPER_WITHOUT_OUTLIERS[DINOV2_REG]


# --- table rows ------------------------------------------------------------------------------

def test_claim_of_fills_the_row_from_the_judgement_and_the_claims_text():
    judged = J(Verdict.INCONCLUSIVE, "why", "the rule", iv(0.5, 0.7), "redundancy", "AUC 0.60 [0.50, 0.70]")
    assert claims.Claim.of("ViT-Ti/16", "hub weights", judged) == claims.Claim(
        "redundancy", Kind.MECHANISM, "ViT-Ti/16", "high-norm tokens sit on patches similar to their 4 neighbours",
        "cosine to the neighbours right after patch embedding is high at outliers (Fig. 5a)",
        "AUC 0.60 [0.50, 0.70]", Verdict.INCONCLUSIVE, "why", "the rule", "hub weights")


def test_claim_of_prefers_the_judgements_paper_and_falls_back_to_the_reason():
    judged = J(Verdict.NOT_TESTABLE, "no pair", "", None, "registers", "", "Fig. 7, this model")
    row = claims.Claim.of("m", "w", judged)
    assert (row.page, row.kind, row.paper, row.measured, row.reason) == (
        "registers", Kind.PAPER, "Fig. 7, this model", "no pair", "no pair")


def test_a_row_is_plain_text():
    row = claims.Claim.of("m", "w", J(Verdict.REPRODUCED, "r", "rule", None, "size", "m"))
    assert row.as_row() == {"page": "model_size", "kind": "the paper's claim about named models", "model": "m",
                            "claim": "high-norm tokens appear only in the largest sizes",
                            "paper": "only ViT-L, H and g of a series trained alike have them (Fig. 4c)",
                            "measured": "m", "verdict": "reproduced", "reason": "r", "rule": "rule", "weights": "w"}
    assert type(row.as_row()["verdict"]) is str and type(row.as_row()["kind"]) is str
    frame = claims.claims_frame([row, row])
    assert list(frame.columns) == claims.CLAIM_COLUMNS and len(frame) == 2
    assert frame.to_dict("records")[1] == row.as_row()
    assert list(claims.claims_frame([]).columns) == claims.CLAIM_COLUMNS  # an empty page keeps its columns


def test_headline_of_nothing_and_of_plain_words():
    assert headline([]) == "no claim evaluated"
    assert headline(["reproduced", "not testable", "not testable"]) == "reproduced (2 not testable)"
    assert headline(["inconclusive", "not reproduced"]) == "1 not reproduced, 1 inconclusive"


def test_not_applicable_names_what_the_model_lacks():
    assert claims.not_applicable("attention", "SigLIP") == J(
        Verdict.NOT_TESTABLE, "not applicable: SigLIP has no a CLS token", "", None, "attention")
    assert claims.not_applicable("registers", "m", "register tokens") == J(
        Verdict.NOT_TESTABLE, "not applicable: m has no register tokens", "", None, "registers")


# --- the interval rules ----------------------------------------------------------------------

def test_interval_rule_is_inconclusive_when_either_end_is_missing():
    assert interval_rule(Interval(0.5, NAN, 0.4, 8), 0.6) is Verdict.INCONCLUSIVE  # high alone would fail
    assert interval_rule(Interval(0.8, 0.7, NAN, 8), 0.6) is Verdict.INCONCLUSIVE  # low alone would pass
    assert interval_rule(Interval(0.5, NAN, 0.4, 8), 0.6, above=False) is Verdict.INCONCLUSIVE


def test_interval_rule_mirrored_margins_both_sides():
    assert interval_rule(iv(1.0, 2.0), 2.0, above=False) is Verdict.REPRODUCED  # "at most 2"
    assert interval_rule(iv(1.0, 2.0), 2.0, above=False, strict=True) is Verdict.INCONCLUSIVE  # "below 2"
    assert interval_rule(iv(1.0, 1.9), 2.0, above=False, strict=True) is Verdict.REPRODUCED
    assert interval_rule(iv(2.0, 3.0), 2.0, above=False) is Verdict.INCONCLUSIVE
    assert interval_rule(iv(2.0, 3.0), 2.0, above=False, strict=True) is Verdict.NOT_REPRODUCED
    assert interval_rule(iv(2.1, 3.0), 2.0, above=False) is Verdict.NOT_REPRODUCED
    assert interval_rule(iv(0.5, 0.6), 0.6) is Verdict.INCONCLUSIVE  # touching from below: not "clearly below"
    assert interval_rule(iv(0.5, 0.6), 0.6, strict=True) is Verdict.NOT_REPRODUCED


def test_band_rule_edges_and_missing_ends():
    assert claims.band_rule(iv(0.1, 0.25), 0.25, 0.5) is Verdict.INCONCLUSIVE  # touches the band
    assert claims.band_rule(iv(0.5, 0.7), 0.25, 0.5) is Verdict.INCONCLUSIVE
    assert claims.band_rule(iv(0.1, 0.2499), 0.25, 0.5) is Verdict.NOT_REPRODUCED
    assert claims.band_rule(iv(0.5001, 0.7), 0.25, 0.5) is Verdict.NOT_REPRODUCED
    assert claims.band_rule(Interval(0.1, NAN, 0.2, 8), 0.25, 0.5) is Verdict.INCONCLUSIVE
    assert claims.band_rule(Interval(0.7, 0.6, NAN, 8), 0.25, 0.5) is Verdict.INCONCLUSIVE
    assert claims.band_rule(Interval(0.3, 0.3, NAN, 8), 0.25, 0.5) is Verdict.INCONCLUSIVE


def test_both_readings():
    r, n, i = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
    assert [claims.both(a, b) for a, b in [(r, r), (r, i), (i, r), (r, n), (n, r), (i, n), (n, i), (i, i)]] == \
        [r, i, i, n, n, n, n, i]


# --- controls --------------------------------------------------------------------------------

def test_control_needs_no_mode_and_no_share():
    ok = claims.control("ViT-Ti (random init)", False, 0.0)
    assert ok == claims.Control("ViT-Ti (random init)", "random init has no high-norm tokens", "0.0% high-norm tokens",
                                True)
    assert ok.line() == "ViT-Ti (random init): 0.0% high-norm tokens (random init has no high-norm tokens: as expected)"
    assert not claims.control("m", True, 0.0).passed  # a separated mode, however small
    assert not claims.control("m", False, 0.012).passed
    failed = claims.control("m", False, 0.012)
    assert failed.line() == "m: 1.2% high-norm tokens (random init has no high-norm tokens: CONTROL FAILED)"


def test_a_control_the_detector_cannot_read_is_not_passed():
    """An undecided random-init model has not been shown clean: neither passed nor failed, with the reason."""
    unsure = claims.control("m", False, 0.0, undecided=True, reason="3 tokens stand apart")
    assert unsure.passed is None and unsure.result == "cannot tell"
    assert unsure.line() == ("m: the detector cannot tell (3 tokens stand apart) (random init has no high-norm "
                             "tokens: cannot tell)")
    assert claims.control("m", True, 0.02, undecided=True).passed is False  # a mode found is a failure regardless
    assert claims.control("m", False, 0.0, undecided=False).passed is True


@pytest.mark.parametrize("passed, sentence", [
    ([True, True], "all 2 negative controls behave as expected"),
    ([True, False, True], "1 of 3 negative controls FAILED"),
    ([True, None], "the detector cannot tell for 1 of 2"),
    ([False, float("nan"), True], "1 of 3 negative controls FAILED; the detector cannot tell for 1 of 3"),
    ([], "no negative controls in this run"),
])
def test_the_controls_sentence_in_each_state(passed, sentence):
    assert claims.controls_sentence(passed) == sentence


def test_a_summary_row_that_cannot_show_its_model_clean_makes_an_unsure_control():
    import pandas as pd

    from analysis.report import Page

    page = Page("test_controls_from")
    summary = pd.DataFrame({"model": ["a", "b", "c", "d"], "random_weights": [True, True, True, False],
                            "bimodal": [False, False, False, True], "outlier_share": [0.0, 0.0, 0.0, 0.02],
                            "undecided": [False, True, False, False], "detector_reason": ["", "3 apart", "", ""],
                            "has_outliers": [False, None, None, True]})
    judged = page.controls_from(summary)
    assert judged.model.tolist() == ["d"]
    assert [c.passed for c in page.controls] == [True, None, None]
    assert "3 apart" in page.controls[1].measured and "3x their image's median" in page.controls[2].measured


def test_the_controls_block_marks_each_state():
    from analysis.report import controls_markdown

    ok, bad = claims.control("a", False, 0.0), claims.control("b", True, 0.1)
    unsure = claims.control("c", False, 0.0, undecided=True)
    assert ":class: tip" in controls_markdown([ok]) and "all as expected" in controls_markdown([ok])
    text = controls_markdown([ok, unsure])
    assert ":class: warning" in text and "cannot tell for 1" in text and "- **?** c:" in text
    text = controls_markdown([ok, unsure, bad])
    assert ":class: error" in text and "1 FAILED" in text and "**✗ FAILED** b:" in text


# --- outliers (paper claim) ------------------------------------------------------------------

OUTLIERS_RULE = ("has outliers: a separated high-norm mode whose share interval lies in (0, 10%], its tokens reaching "
                 "3x the image median (and so does the share above the paper's own cutoff, where it gives one); has "
                 "none: no separated mode, and no share above 3x the image median over 0.1% (or a share interval at "
                 "0); a detector that cannot decide: inconclusive")


def test_outliers_judgement_reads_in_full():
    share = iv(0.018, 0.022, 0.02)
    judged = claims.judge_outliers(DINOV2_G, False, True, share)
    measured = "share 2.00% [1.80%, 2.20%]"
    assert judged == J(Verdict.REPRODUCED, measured, OUTLIERS_RULE, share, "outliers", measured,
                       claims.PAPER_WITH_OUTLIERS[DINOV2_G])
    none = claims.judge_outliers(DINO_B, False, False, iv(0, 0))
    measured = "share 0.00% [0.00%, 0.00%] (no separated high-norm mode)"
    assert (none.verdict, none.reason, none.measured, none.paper) == (
        Verdict.REPRODUCED, measured, measured, claims.PAPER_WITHOUT_OUTLIERS[DINO_B])


def test_outliers_measured_shows_the_papers_cutoff_reading():
    share, paper = iv(0.018, 0.022, 0.02), iv(0.0, 0.0)
    judged = claims.judge_outliers(DINOV2_G, False, True, share, paper)
    measured = "share 2.00% [1.80%, 2.20%]; above the paper's 150: 0.00% [0.00%, 0.00%]"
    assert judged == J(Verdict.INCONCLUSIVE, measured + ": the two definitions disagree", OUTLIERS_RULE, share,
                       "outliers", measured, claims.PAPER_WITH_OUTLIERS[DINOV2_G])
    # a model without a paper cutoff does not mention one
    reg = "vit_giant_patch14_reg4_dinov2.lvd142m"
    assert claims.judge_outliers(reg, False, True, share, paper).measured == "share 2.00% [1.80%, 2.20%]"
    assert claims.judge_outliers(DINO_B, False, True, share, paper).measured.endswith("above the paper's 100: "
                                                                                      "0.00% [0.00%, 0.00%]")


def test_outliers_untestable_still_show_the_measurement():
    share = iv(0.018, 0.022, 0.02)
    assert claims.judge_outliers(DINOV2_G, True, False, share) == J(
        Verdict.NOT_TESTABLE, RANDOM, OUTLIERS_RULE, None, "outliers", "share 2.00% [1.80%, 2.20%] "
        "(no separated high-norm mode)")
    assert claims.judge_outliers(TINY, False, True, share) == J(
        Verdict.NOT_TESTABLE, "the paper makes no statement about this model", OUTLIERS_RULE, None, "outliers",
        "share 2.00% [1.80%, 2.20%]")


def test_outlier_presence_without_a_paper_reading():
    share = iv(0.01, 0.03)
    assert claims.outlier_presence(True, True, share) == J(Verdict.REPRODUCED, "", "", share, "outliers")
    assert claims.outlier_presence(False, True, share) == J(Verdict.NOT_REPRODUCED, "", "", share, "outliers")
    assert claims.outlier_presence(True, False, share).verdict is Verdict.NOT_REPRODUCED  # no mode: none
    assert claims.outlier_presence(False, False, share).verdict is Verdict.REPRODUCED
    assert claims.outlier_presence(True, True, iv(0.0, 0.03)).verdict is Verdict.INCONCLUSIVE
    assert claims.outlier_presence(False, True, iv(0.0, 0.03)).verdict is Verdict.INCONCLUSIVE


def test_outlier_presence_with_a_paper_reading():
    share = iv(0.01, 0.03)
    agree = claims.outlier_presence(True, True, share, iv(0.02, 0.04))
    assert agree == J(Verdict.REPRODUCED, "", "", share, "outliers")
    disagree = claims.outlier_presence(True, True, share, iv(0.2, 0.3))
    assert disagree == J(Verdict.INCONCLUSIVE, ": the two definitions disagree", "", share, "outliers")
    both_fail = claims.outlier_presence(True, True, iv(0.2, 0.3), iv(0.0, 0.0))
    assert both_fail == J(Verdict.NOT_REPRODUCED, "", "", iv(0.2, 0.3), "outliers")  # too many, and none
    # the fixed cutoff needs no mode: with a mode missing, it alone can still show outliers
    assert claims.outlier_presence(False, False, iv(0, 0), iv(0.01, 0.02)).verdict is Verdict.INCONCLUSIVE
    assert claims.outlier_presence(False, False, iv(0, 0), iv(0.0, 0.0)).verdict is Verdict.REPRODUCED
    assert claims.outlier_presence(False, True, iv(0.01, 0.02), iv(0.01, 0.02)).verdict is Verdict.NOT_REPRODUCED


def test_few_outliers_around_the_ten_percent_ceiling():
    few = lambda low, high: claims.outlier_presence(True, True, iv(low, high)).verdict  # noqa: E731
    assert few(0.05, 0.1) is Verdict.REPRODUCED  # at most 10%
    assert few(0.05, 0.11) is Verdict.INCONCLUSIVE
    assert few(0.1, 0.2) is Verdict.INCONCLUSIVE  # the low end at the ceiling still allows "a few"
    assert few(0.1001, 0.2) is Verdict.NOT_REPRODUCED
    assert few(-0.01, 0.0) is Verdict.NOT_REPRODUCED  # nothing above 0
    assert claims.outlier_presence(True, True, Interval(0.02, NAN, NAN, 4)).verdict is Verdict.INCONCLUSIVE
    assert claims.outlier_presence(True, True, Interval(0.02, 0.01, NAN, 8)).verdict is Verdict.INCONCLUSIVE
    assert claims.outlier_presence(False, True, Interval(0.02, NAN, NAN, 4)).verdict is Verdict.INCONCLUSIVE
    assert claims.outlier_presence(True, True, Interval(0.3, 0.2, NAN, 8)).verdict is Verdict.INCONCLUSIVE  # not measured


# --- attention -------------------------------------------------------------------------------

ATTENTION_RULE = ("CLS attention on high-norm patches / their area share >= 2x (interval), and, against normal "
                  "patches at the same positions, too; pinned outliers: confounded by position")


def test_attention_untestable_and_pinned_read_in_full():
    judge = claims.judge_attention
    assert judge(True, True, iv(3, 5)) == J(Verdict.NOT_TESTABLE, RANDOM, ATTENTION_RULE, None, "attention")
    assert judge(False, False, iv(3, 5)) == J(Verdict.NOT_TESTABLE, "no high-norm patches in this model: nothing to "
                                              "attend to", ATTENTION_RULE, None, "attention")
    enrichment = iv(10, 20)
    assert judge(False, True, enrichment, True, iv(0.8, 1.2)) == J(
        Verdict.INCONCLUSIVE, "confounded by position: the outliers sit at the same grid positions in (almost) every "
        "image, so attention to them cannot be told from attention to those positions", ATTENTION_RULE, enrichment,
        "attention", "enrichment 15.0 [10.0, 20.0], position-matched 1.0 [0.8, 1.2]")


def test_attention_on_the_area_share_alone():
    enrichment = iv(2.0, 5.0)
    assert claims.judge_attention(False, True, enrichment) == J(
        Verdict.REPRODUCED, "enrichment 3.5 [2.0, 5.0] (bootstrap over images, n=8)", ATTENTION_RULE, enrichment,
        "attention", "enrichment 3.5 [2.0, 5.0]")
    nan = Interval(NAN, NAN, NAN, 8)
    judged = claims.judge_attention(False, True, enrichment, False, nan)  # no position holds both kinds
    assert judged == J(Verdict.REPRODUCED, "enrichment 3.5 [2.0, 5.0] (bootstrap over images, n=8)", ATTENTION_RULE,
                       enrichment, "attention", "enrichment 3.5 [2.0, 5.0], position-matched not measured")


def test_attention_with_the_position_matched_reading():
    enrichment = iv(3.0, 5.0)

    def judged(matched):
        return claims.judge_attention(False, True, enrichment, False, matched)

    def expected(verdict, matched_text, why=""):
        measured = "enrichment 4.0 [3.0, 5.0], position-matched " + matched_text
        return J(verdict, measured + why, ATTENTION_RULE, enrichment, "attention", measured)

    assert judged(iv(2.5, 4.5)) == expected(Verdict.REPRODUCED, "3.5 [2.5, 4.5]", " (bootstrap over images, n=8)")
    assert judged(iv(0.8, 1.2)) == expected(Verdict.NOT_REPRODUCED, "1.0 [0.8, 1.2]", ": the position-matched reading "
                                            "decides (at the same positions, normal patches draw comparable attention)")
    assert judged(iv(1.5, 2.5)) == expected(Verdict.INCONCLUSIVE, "2.0 [1.5, 2.5]", ": the position-matched reading "
                                            "does not clear the margin")
    assert judged(iv(2.0, 4.0)).verdict is Verdict.REPRODUCED  # at the margin: "at least"
    both_fail = claims.judge_attention(False, True, iv(1.0, 1.5), False, iv(0.8, 1.2))
    assert both_fail.reason == "enrichment 1.2 [1.0, 1.5], position-matched 1.0 [0.8, 1.2] (bootstrap over images, n=8)"


def test_attention_interval_with_an_open_end():
    """Resamples counted as "above every value" can leave an interval end infinite; it shows as inf."""
    enrichment = Interval(4.0, 3.0, math.inf, 8)
    judged = claims.judge_attention(False, True, enrichment)
    assert judged.verdict is Verdict.REPRODUCED and judged.measured == "enrichment 4.0 [3.0, inf]"
    assert judged.reason == "enrichment 4.0 [3.0, inf] (bootstrap over images, n=8)"
    matched = claims.judge_attention(False, True, enrichment, False, Interval(3.0, 2.5, math.inf, 8))
    assert matched.verdict is Verdict.REPRODUCED
    assert matched.measured == "enrichment 4.0 [3.0, inf], position-matched 3.0 [2.5, inf]"


# --- layer onset -----------------------------------------------------------------------------

ONSET_RULE = ("relative onset (first block of a separated high-norm mode kept to the last, / depth) inside "
              "[25.0%, 75.0%] (interval), the middle half of the depth")


def test_layer_onset_reads_in_full():
    judge = claims.judge_layer_onset
    assert judge(True, iv(0.3, 0.45), 40) == J(Verdict.NOT_TESTABLE, RANDOM, ONSET_RULE, None, "layer_onset")
    nan = Interval(NAN, 0.9, 1.0, 8)
    assert judge(False, nan, 40) == J(Verdict.NOT_TESTABLE, "no block has a separated high-norm mode", ONSET_RULE,
                                      None, "layer_onset")
    inside = iv(0.3, 0.45, 0.4)
    assert judge(False, inside, 40) == J(Verdict.REPRODUCED, "onset 40% [30%, 45%] of 40 blocks (bootstrap over "
                                         "images, n=8)", ONSET_RULE, inside, "layer_onset",
                                         "onset 40% [30%, 45%] of 40 blocks")
    leaves = iv(0.2, 0.3, 0.25)
    assert judge(False, leaves, 12) == J(Verdict.INCONCLUSIVE, "onset 25% [20%, 30%] of 12 blocks (bootstrap over "
                                         "images, n=8): the interval leaves the band", ONSET_RULE, leaves,
                                         "layer_onset", "onset 25% [20%, 30%] of 12 blocks")
    late = iv(0.8, 0.9, 0.85)
    assert judge(False, late, 12).reason == "onset 85% [80%, 90%] of 12 blocks (bootstrap over images, n=8)"


def test_layer_onset_from_too_few_images():
    onset = too_few(0.4)
    judged = claims.judge_layer_onset(False, onset, 40)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert judged.reason == f"onset {onset.text('.0%')} of 40 blocks ({onset.method}, n=4): too few images to decide"
    no_interval = Interval(0.4, NAN, NAN, 8)  # enough images, but no interval (e.g. undefined resamples)
    assert claims.judge_layer_onset(False, no_interval, 40).reason.endswith(": the interval leaves the band")


# --- model size (paper claim) ----------------------------------------------------------------

SIZE_RULE = "checkpoints of the paper's size series (trained alike): the largest has outliers, smaller ones none"
SMALL, GIANT = "vit_small_patch14_dinov2.lvd142m", "vit_giant_patch14_dinov2.lvd142m"


def test_size_untestable_reads_in_full():
    distilled = claims.judge_size_trend([(SMALL, False, False), (GIANT, False, True)])
    assert distilled == J(Verdict.NOT_TESTABLE, "the released DINOv2 S/B/L are distilled from ViT-g, not trained like "
                          "the paper's size series, so they cannot speak to the claim (measured and shown)", SIZE_RULE,
                          None, "size", f"{SMALL}: none, {GIANT}: outliers")
    other = claims.judge_size_trend([("deit3_small_patch16_224.fb_in1k", False, False)])
    assert other == J(Verdict.NOT_TESTABLE, "needs checkpoints of at least two sizes of the paper's series (not "
                      "public)", SIZE_RULE, None, "size", "deit3_small_patch16_224.fb_in1k: none")
    random = claims.judge_size_trend([(SMALL, True, False), (GIANT, True, True)])  # random twins are not releases
    assert random.reason.startswith("needs checkpoints") and random.measured == "no pretrained size measured"


def test_size_series_reads_in_full(monkeypatch):
    monkeypatch.setattr(claims, "PAPER_SIZE_SERIES", ["s", "b", "l", "g"])
    judge = claims.judge_size_trend
    measured = "s: none, b: none, l: outliers, g: outliers"
    assert judge([("s", False, False), ("b", False, False), ("l", False, True), ("g", False, True)]) == J(
        Verdict.REPRODUCED, "outliers from l up, none at the smallest", SIZE_RULE, None, "size", measured)
    assert judge([("g", False, False), ("s", False, False)]) == J(
        Verdict.NOT_REPRODUCED, "the largest size has no outliers", SIZE_RULE, None, "size", "g: none, s: none")
    assert judge([("s", False, True), ("g", False, True)]) == J(
        Verdict.NOT_REPRODUCED, "the smallest size has outliers too", SIZE_RULE, None, "size",
        "s: outliers, g: outliers")
    # random twins are neither shown nor judged
    assert judge([("s", True, True), ("b", False, False), ("g", False, True)]).reason == \
        "outliers from g up, none at the smallest"
    assert judge([("s", True, False), ("g", False, True)]).verdict is Verdict.NOT_TESTABLE


def test_size_series_beside_a_distilled_release(monkeypatch):
    """Two sizes of the paper's series are judged even when a distilled release is shown beside them."""
    monkeypatch.setattr(claims, "PAPER_SIZE_SERIES", ["t", "g"])
    judged = claims.judge_size_trend([("t", False, False), (SMALL, False, False), ("g", False, True)])
    assert judged == J(Verdict.REPRODUCED, "outliers from g up, none at the smallest", SIZE_RULE, None, "size",
                       f"t: none, {SMALL}: none, g: outliers")
    one = claims.judge_size_trend([("t", False, False), (SMALL, False, False)])
    assert one.verdict is Verdict.NOT_TESTABLE and "distilled" in one.reason


# --- training onset --------------------------------------------------------------------------

TRAINING_RULE = "no outliers at the first checkpoint, outliers at the last, onset bracket inside [22%, 50%]"


def onset_run(before, after):
    """A run whose last checkpoint without outliers is at ``before`` and first with them at ``after``."""
    return [(0, True, False), (before, False, False), (after, False, True), (1, False, True)]


def test_training_onset_reads_in_full():
    judge = claims.judge_training_onset

    def judged(verdict, measured, suffix=""):
        return J(verdict, measured + suffix, TRAINING_RULE, None, "training_onset", measured)

    assert judge(onset_run(0.25, 0.45)) == judged(Verdict.REPRODUCED, "onset between 25% and 45% of training")
    assert judge(onset_run(0.8, 0.9)) == judged(Verdict.NOT_REPRODUCED, "onset between 80% and 90% of training",
                                                " (far from a third)")
    assert judge(onset_run(0.2, 0.4)) == judged(Verdict.INCONCLUSIVE, "onset between 20% and 40% of training",
                                                ": the bracket is wider than 'about a third'")
    assert judge([(0, True, False), (0.5, False, False), (1, False, False)]) == J(
        Verdict.NOT_REPRODUCED, "the final checkpoint has no outliers", TRAINING_RULE, None, "training_onset")
    assert judge([(0, True, True), (0.5, False, True), (1, False, True)]) == J(
        Verdict.NOT_REPRODUCED, "outliers already at the first checkpoint", TRAINING_RULE, None, "training_onset")


def test_training_onset_untestable_reads_in_full():
    judge = claims.judge_training_onset
    assert judge([(0, True, False), (0.5, True, False), (1, False, True)]) == J(
        Verdict.NOT_TESTABLE, "a trained checkpoint has random weights: " + RANDOM, TRAINING_RULE, None,
        "training_onset")
    assert judge([(0, True, False), (1, False, True)]) == J(
        Verdict.NOT_TESTABLE, "needs at least three checkpoints of one training run (the paper's are not public)",
        TRAINING_RULE, None, "training_onset")
    # a random initialisation counts as the first checkpoint; three checkpoints suffice
    assert judge([(0, True, False), (0.3, False, False), (0.4, False, True)]).verdict is Verdict.REPRODUCED
    assert judge([(0.3, False, False), (0.4, False, True), (1, False, True)]).verdict is Verdict.REPRODUCED


def test_training_onset_bracket_edges():
    judge = claims.judge_training_onset
    assert (claims.PAPER_TRAINING_ONSET, claims.ONSET_TOLERANCE) == (1 / 3, 1.5)
    low, high = (1 / 3) / 1.5, (1 / 3) * 1.5
    assert judge(onset_run(low, high)).verdict is Verdict.REPRODUCED  # both edges inside
    assert judge(onset_run(low - 0.01, high)).verdict is Verdict.INCONCLUSIVE
    assert judge(onset_run(low, high + 0.01)).verdict is Verdict.INCONCLUSIVE
    assert judge(onset_run(0.1, low)).verdict is Verdict.INCONCLUSIVE  # touches the band from below
    assert judge(onset_run(0.1, low - 0.01)).verdict is Verdict.NOT_REPRODUCED
    assert judge(onset_run(high, 0.9)).verdict is Verdict.INCONCLUSIVE  # touches the band from above
    assert judge(onset_run(high + 0.01, 0.9)).verdict is Verdict.NOT_REPRODUCED


def test_training_onset_reads_checkpoints_in_order():
    steps = [(1, False, True), (0.45, False, True), (0, True, False), (0.25, False, False)]
    assert claims.judge_training_onset(steps).measured == "onset between 25% and 45% of training"
    # the onset is the first checkpoint from which every later one has outliers (they may come and go before)
    steps = [(0, True, False), (0.3, False, False), (0.4, False, True), (0.6, False, False), (1, False, True)]
    assert claims.judge_training_onset(steps).measured == "onset between 60% and 100% of training"
    assert claims.judge_training_onset(steps).verdict is Verdict.NOT_REPRODUCED


# --- redundancy, and the straddle messages every interval claim shares -----------------------

REDUNDANCY_RULE = ("ROC AUC of neighbour cosine within grid positions (outliers vs. non-outliers at the same position, "
                   "averaged) >= 0.6 (interval)")


def redundancy(auc, pinned=False):
    return claims.judge_redundancy(False, True, auc, pinned)


def test_redundancy_reads_in_full():
    assert claims.judge_redundancy(True, True, iv(0.6, 0.8), False) == J(
        Verdict.NOT_TESTABLE, RANDOM, REDUNDANCY_RULE, None, "redundancy")
    assert claims.judge_redundancy(False, False, iv(0.6, 0.8), False) == J(
        Verdict.NOT_TESTABLE, "no high-norm patches in this model", REDUNDANCY_RULE, None, "redundancy")
    auc = iv(0.6, 0.8)
    assert redundancy(auc) == J(Verdict.REPRODUCED, "AUC 0.70 [0.60, 0.80] (bootstrap over images, n=8)",
                                REDUNDANCY_RULE, auc, "redundancy", "AUC 0.70 [0.60, 0.80]")
    below = iv(0.4, 0.5)
    assert redundancy(below) == J(Verdict.NOT_REPRODUCED, "AUC 0.45 [0.40, 0.50] (bootstrap over images, n=8)",
                                  REDUNDANCY_RULE, below, "redundancy", "AUC 0.45 [0.40, 0.50]")


def test_redundancy_confounded_by_position():
    why = ("confounded by position: most outliers sit at grid positions that hold one in (almost) every image, so no "
           "normal patch at those positions exists to compare them with")
    auc = iv(0.9, 1.0)
    assert redundancy(auc, pinned=True) == J(Verdict.INCONCLUSIVE, why, REDUNDANCY_RULE, auc, "redundancy",
                                             "AUC 0.95 [0.90, 1.00]")
    nan = Interval(NAN, NAN, NAN, 8)
    nothing = ("no grid position holds an outlier in some images and a normal token in others, so there is nothing "
               "to compare within positions")
    assert redundancy(nan) == J(Verdict.INCONCLUSIVE, nothing, REDUNDANCY_RULE, nan, "redundancy", "AUC not measured")


def test_redundancy_interval_with_an_open_end():
    auc = Interval(0.3, -math.inf, 0.5, 8)  # resamples without a comparison counted as "below every value"
    assert redundancy(auc) == J(Verdict.NOT_REPRODUCED, "AUC 0.30 [-inf, 0.50] (bootstrap over images, n=8)",
                                REDUNDANCY_RULE, auc, "redundancy", "AUC 0.30 [-inf, 0.50]")
    assert redundancy(auc, pinned=True).measured == "AUC 0.30 [-inf, 0.50]"


def test_a_straddling_interval_says_how_many_images_would_settle_it():
    straddle = iv(0.55, 0.85, 0.7)  # distance 0.1 from the margin, half-width 0.15, 8 images: 8 * 1.5**2 = 18
    assert redundancy(straddle) == J(
        Verdict.INCONCLUSIVE, "AUC 0.70 [0.55, 0.85] (bootstrap over images, n=8): the interval straddles the margin; "
        "about 18 images would likely settle it", REDUNDANCY_RULE, straddle, "redundancy", "AUC 0.70 [0.55, 0.85]")
    on_margin = iv(0.5, 0.7, 0.6)  # no sample size settles an estimate on the margin
    assert redundancy(on_margin).reason == ("AUC 0.60 [0.50, 0.70] (bootstrap over images, n=8): the interval "
                                            "straddles the margin")
    few = too_few(0.7)
    assert redundancy(few).verdict is Verdict.INCONCLUSIVE
    assert redundancy(few).reason == "AUC 0.70 on 4 images: too few images to decide"


# --- local and global information ------------------------------------------------------------

LOCAL_RULE = ("position top-1 (normal - high-norm) > 0 and pixel error (high-norm - normal) > 0, both intervals; "
              "pinned outliers: confounded by position")


def test_local_information_reads_in_full():
    judge = claims.judge_local_information
    assert judge(True, True, iv(0.05, 0.15), iv(1, 3)) == J(Verdict.NOT_TESTABLE, RANDOM, LOCAL_RULE, None,
                                                           "local_information")
    none = J(Verdict.NOT_TESTABLE, "no high-norm tokens among the held-out images", LOCAL_RULE, None,
             "local_information")
    assert judge(False, False, iv(0.05, 0.15), iv(1, 3)) == none
    assert judge(False, True, Interval(NAN, NAN, NAN, 8), iv(1, 3)) == none
    position, measured = iv(0.05, 0.15), "position gap 10.0% [5.0%, 15.0%], pixel-error gap 2.00 [1.00, 3.00]"
    assert judge(False, True, position, iv(1, 3)) == J(Verdict.REPRODUCED, measured + " (n=8)", LOCAL_RULE, position,
                                                       "local_information", measured)
    failing = "position gap 10.0% [5.0%, 15.0%], pixel-error gap -2.00 [-3.00, -1.00]"
    assert judge(False, True, position, iv(-3, -1)) == J(Verdict.NOT_REPRODUCED, failing + " (n=8)", LOCAL_RULE,
                                                         position, "local_information", failing)
    unsure = "position gap 10.0% [5.0%, 15.0%], pixel-error gap 1.00 [-1.00, 3.00]"
    assert judge(False, True, position, iv(-1, 3)) == J(Verdict.INCONCLUSIVE, unsure + " (n=8): an interval straddles 0",
                                                        LOCAL_RULE, position, "local_information", unsure)
    assert judge(False, True, position, iv(1, 3), pinned=True) == J(
        Verdict.INCONCLUSIVE, "confounded by position: the outliers always sit at the same grid positions, so a probe "
        "can place them from their position alone", LOCAL_RULE, position, "local_information", measured)


def test_local_information_gaps_must_be_above_zero():
    judge = claims.judge_local_information
    assert judge(False, True, iv(0.0, 0.2), iv(1, 3)).verdict is Verdict.INCONCLUSIVE  # strict, position
    assert judge(False, True, iv(0.05, 0.2), iv(0.0, 3)).verdict is Verdict.INCONCLUSIVE  # strict, pixel
    assert judge(False, True, iv(-0.2, 0.0), iv(1, 3)).verdict is Verdict.NOT_REPRODUCED
    assert judge(False, True, iv(-0.2, 0.1), iv(-3, 0.0)).verdict is Verdict.NOT_REPRODUCED  # either one fails
    assert judge(False, True, iv(0.05, 0.2), Interval(NAN, NAN, NAN, 8)).verdict is Verdict.INCONCLUSIVE
    open_end = judge(False, True, iv(0.05, 0.15), Interval(2.0, 1.0, math.inf, 8))
    assert open_end.verdict is Verdict.REPRODUCED
    assert open_end.measured == "position gap 10.0% [5.0%, 15.0%], pixel-error gap 2.00 [1.00, inf]"


GLOBAL_RULE = "class accuracy (high-norm - normal patch) > 0 (interval, >= 20 held-out images)"


def test_global_information_reads_in_full():
    judge, gap = claims.judge_global_information, iv(0.1, 0.3, n=20)
    assert judge(True, 50, gap) == J(Verdict.NOT_TESTABLE, RANDOM, GLOBAL_RULE, None, "global_information")
    assert judge(False, 19, gap) == J(Verdict.NOT_TESTABLE, "only 19 held-out images have a high-norm token (need 20)",
                                      GLOBAL_RULE, None, "global_information", "accuracy gap 20.0% [10.0%, 30.0%]")
    assert judge(False, 20, gap) == J(Verdict.REPRODUCED, "accuracy gap 20.0% [10.0%, 30.0%] (bootstrap over images, "
                                      "n=20)", GLOBAL_RULE, gap, "global_information",
                                      "accuracy gap 20.0% [10.0%, 30.0%]")


# --- registers (paper claims) ----------------------------------------------------------------

REGISTERS_RULE = ("the paper's model pair; outlier share on the plain model's scale (cutoff / median) falls by >= 90% "
                  "with registers (interval)")
NORM_RULE = "register norm / median patch norm >= the plain model's outlier cutoff / median patch norm (interval)"


def test_registers_reads_in_full():
    judge, reduction = claims.judge_registers, iv(0.95, 0.99, 0.97)
    assert judge(DINOV2_G, DINOV2_REG, True, True, reduction) == J(Verdict.NOT_TESTABLE, RANDOM, REGISTERS_RULE, None,
                                                                   "registers")
    assert judge(DINOV2_G, TINY, False, True, reduction) == J(Verdict.NOT_TESTABLE, NO_PAIR, REGISTERS_RULE, None,
                                                              "registers")
    assert judge(DINOV2_G, DINOV2_REG, False, False, reduction) == J(
        Verdict.NOT_TESTABLE, "the model without registers has no outliers to remove", REGISTERS_RULE, None,
        "registers")
    assert judge(DINOV2_G, DINOV2_REG, False, True, reduction) == J(
        Verdict.REPRODUCED, "reduction 97% [95%, 99%] (bootstrap over images, n=8)", REGISTERS_RULE, reduction,
        "registers", "reduction 97% [95%, 99%]")
    assert judge(DINOV2_G, DINOV2_REG, False, True, iv(0.85, 0.89)).verdict is Verdict.NOT_REPRODUCED


def test_register_reduction_rule_without_names():
    reduction = iv(0.9, 1.0)
    assert claims.register_reduction_rule(reduction) == J(
        Verdict.REPRODUCED, "reduction 95% [90%, 100%] (bootstrap over images, n=8)", "", reduction, "registers",
        "reduction 95% [90%, 100%]")
    assert claims.register_reduction_rule(iv(0.8, 0.9), "r").verdict is Verdict.INCONCLUSIVE
    assert claims.register_reduction_rule(iv(0.8, 0.9), "r").rule == "r"


def test_norm_in_registers_reads_in_full():
    judge, ratio = claims.judge_norm_in_registers, iv(8, 12)
    assert judge(DINOV2_G, DINOV2_REG, True, ratio, 5.0) == J(Verdict.NOT_TESTABLE, RANDOM, NORM_RULE, None,
                                                              "norm_in_registers")
    assert judge(TINY, DINOV2_REG, False, ratio, 5.0) == J(Verdict.NOT_TESTABLE, NO_PAIR, NORM_RULE, None,
                                                           "norm_in_registers")
    no_cutoff = J(Verdict.NOT_TESTABLE, "the model without registers has no outlier cutoff", NORM_RULE, None,
                  "norm_in_registers")
    assert judge(DINOV2_G, DINOV2_REG, False, ratio, math.inf) == no_cutoff
    assert judge(DINOV2_G, DINOV2_REG, False, ratio, NAN) == no_cutoff
    assert judge(DINOV2_G, DINOV2_REG, False, ratio, 5.0) == J(
        Verdict.REPRODUCED, "register/patch norm ratio 10.0 [8.0, 12.0] (bootstrap over images, n=8)", NORM_RULE,
        ratio, "norm_in_registers", "register/patch norm ratio 10.0 [8.0, 12.0]")
    assert judge(DINOV2_G, DINOV2_REG, False, iv(8, 12), 12.0).verdict is Verdict.INCONCLUSIVE
    assert judge(DINOV2_G, DINOV2_REG, False, iv(8, 12), 12.1).verdict is Verdict.NOT_REPRODUCED


def test_norm_in_registers_rule_without_names():
    ratio = Interval(10.0, 8.0, math.inf, 8)  # an open end: every resample without registers above the cutoff
    judged = claims.norm_in_registers_rule(ratio, 5.0)
    assert judged == J(Verdict.REPRODUCED, "register/patch norm ratio 10.0 [8.0, inf] (bootstrap over images, n=8)",
                       "", ratio, "norm_in_registers", "register/patch norm ratio 10.0 [8.0, inf]")
    assert claims.norm_in_registers_rule(ratio, -math.inf) == J(
        Verdict.NOT_TESTABLE, "the model without registers has no outlier cutoff", "", None, "norm_in_registers")


# --- test-time registers ---------------------------------------------------------------------

TTR_RULE = ("outlier share falls by >= 90% on held-out images (interval; one whose resamples are all equal decides "
            "too: a fall is bounded by 100%, which every image alike reaches)")
TTA_RULE = ("before, CLS attention on the outlier patches / their area share >= 2x; after the intervention <= 2x on "
            "the same held-out images (intervals)")


def test_test_time_registers_reads_in_full():
    judge, reduction = claims.judge_test_time_registers, iv(0.9, 1.0)
    assert judge(True, True, 2, reduction) == J(Verdict.NOT_TESTABLE, RANDOM, TTR_RULE, None, "test_time_registers")
    assert judge(False, False, 2, reduction) == J(Verdict.NOT_TESTABLE, "the model has no outliers to remove",
                                                  TTR_RULE, None, "test_time_registers")
    assert judge(False, True, 0, reduction) == J(Verdict.NOT_REPRODUCED, "no unit singles out the outlier positions",
                                                 TTR_RULE, None, "test_time_registers")
    assert judge(False, True, 2, reduction) == J(Verdict.REPRODUCED, "reduction 95% [90%, 100%] (bootstrap over "
                                                 "images, n=8)", TTR_RULE, reduction, "test_time_registers",
                                                 "reduction 95% [90%, 100%]")
    # every held-out image loses all its outliers: the interval is all-equal at the bound, and it decides
    every = Interval(1.0, 1.0, 1.0, 8, "every resample equal (zero width, bootstrap over images)")
    assert every.every_resample_equal and judge(False, True, 2, every).verdict is Verdict.REPRODUCED


def test_test_time_attention_reads_in_full():
    judge, after = claims.judge_test_time_attention, iv(0.8, 1.5, 1.2)
    assert judge(True, True, 2, after) == J(Verdict.NOT_TESTABLE, RANDOM, TTA_RULE, None, "test_time_attention")
    assert judge(False, False, 2, after) == J(Verdict.NOT_TESTABLE, "the model has no outliers whose attention could "
                                              "fall", TTA_RULE, None, "test_time_attention")
    assert judge(False, True, 0, after) == J(Verdict.NOT_REPRODUCED, "no unit singles out the outlier positions",
                                             TTA_RULE, None, "test_time_attention")
    assert judge(False, True, 2, after) == J(Verdict.REPRODUCED, "enrichment after 1.2 [0.8, 1.5] (bootstrap over "
                                             "images, n=8)", TTA_RULE, after, "test_time_attention",
                                             "enrichment after 1.2 [0.8, 1.5]")
    straddle = iv(1.5, 3.0, 2.5)  # distance 0.5 from the margin, half-width 0.75: 8 * 1.5**2 = 18
    assert judge(False, True, 2, straddle).reason == ("enrichment after 2.5 [1.5, 3.0] (bootstrap over images, n=8): "
                                                      "the interval straddles the margin; about 18 images would likely "
                                                      "settle it")
    still = Interval(5.0, 3.0, math.inf, 8)
    assert judge(False, True, 2, still).verdict is Verdict.NOT_REPRODUCED
    assert judge(False, True, 2, still).measured == "enrichment after 5.0 [3.0, inf]"
    # the maps can only clean up where attention was concentrated before
    assert judge(False, True, 2, after, iv(10, 20)).verdict is Verdict.REPRODUCED
    never = judge(False, True, 2, after, iv(0.8, 1.2))
    assert never.verdict is Verdict.NOT_TESTABLE and "nothing to clean up" in never.reason
    assert judge(False, True, 2, after, iv(1.5, 3)).verdict is Verdict.INCONCLUSIVE  # concentrated before? unclear
    assert judge(False, None, 2, after, iv(10, 20)).verdict is Verdict.INCONCLUSIVE  # outliers undecided


# --- object discovery ------------------------------------------------------------------------

DISCOVERY_RULE = ("CorLoc gain (with - without the register) > 0 (interval, >= 8 images); LOST at its floor "
                  "(whole-image boxes): inconclusive")
TABLE3_RULE = ("the paper's model pair; CorLoc gain (with - without registers) > 0 (interval, >= 8 images); LOST at "
               "its floor: inconclusive")
FLOOR = ": LOST is at its floor (whole-image boxes on most images), so CorLoc is near 0 both ways by construction"
SMALL_REG = "vit_small_patch14_reg4_dinov2.lvd142m"


def test_discovery_reads_in_full():
    judge, gain = claims.judge_discovery, iv(0.1, 0.3, n=8)
    assert judge(True, True, True, gain) == J(Verdict.NOT_TESTABLE, RANDOM, DISCOVERY_RULE, None, "discovery")
    assert judge(False, False, True, gain) == J(Verdict.NOT_TESTABLE, "the model has no outliers on these images: "
                                                "nothing to remove", DISCOVERY_RULE, None, "discovery")
    assert judge(False, True, False, gain) == J(Verdict.NOT_TESTABLE, "the register moved no outlier on these images",
                                                DISCOVERY_RULE, None, "discovery")
    assert judge(False, True, True, iv(0.1, 0.3, n=7)) == J(Verdict.NOT_TESTABLE, "only 7 annotated images (need 8)",
                                                            DISCOVERY_RULE, None, "discovery")
    assert judge(False, True, True, gain) == J(Verdict.REPRODUCED, "CorLoc gain 20.0% [10.0%, 30.0%] (bootstrap over "
                                               "images, n=8)", DISCOVERY_RULE, gain, "discovery",
                                               "CorLoc gain 20.0% [10.0%, 30.0%]")
    floor = iv(0.0, 0.0, n=8)
    assert judge(False, True, True, floor, at_floor=True) == J(
        Verdict.INCONCLUSIVE, "CorLoc gain 0.0% [0.0%, 0.0%]" + FLOOR, DISCOVERY_RULE, floor, "discovery",
        "CorLoc gain 0.0% [0.0%, 0.0%]")
    assert judge(False, True, True, iv(0.0, 0.3, n=8)).verdict is Verdict.INCONCLUSIVE  # strict


def test_discovery_registers_reads_in_full():
    judge, gain = claims.judge_discovery_registers, iv(0.1, 0.3, n=8)
    assert judge(SMALL, SMALL_REG, True, gain) == J(Verdict.NOT_TESTABLE, RANDOM, TABLE3_RULE, None,
                                                    "discovery_registers")
    assert judge(SMALL, DINOV2_REG, False, gain) == J(Verdict.NOT_TESTABLE, NO_PAIR, TABLE3_RULE, None,
                                                      "discovery_registers")
    assert judge(SMALL, SMALL_REG, False, iv(0.1, 0.3, n=7)) == J(
        Verdict.NOT_TESTABLE, "only 7 annotated images (need 8)", TABLE3_RULE, None, "discovery_registers")
    assert judge(SMALL, SMALL_REG, False, gain) == J(
        Verdict.REPRODUCED, "CorLoc gain 20.0% [10.0%, 30.0%] (bootstrap over images, n=8)", TABLE3_RULE, gain,
        "discovery_registers", "CorLoc gain 20.0% [10.0%, 30.0%]")
    floor = iv(0.0, 0.0, n=8)
    assert judge(SMALL, SMALL_REG, False, floor, at_floor=True) == J(
        Verdict.INCONCLUSIVE, "CorLoc gain 0.0% [0.0%, 0.0%]" + FLOOR, TABLE3_RULE, floor, "discovery_registers",
        "CorLoc gain 0.0% [0.0%, 0.0%]")
    assert judge(SMALL, SMALL_REG, False, iv(-0.3, 0.0, n=8)).verdict is Verdict.NOT_REPRODUCED


def test_register_pairs_are_dinov2_with_and_without_registers_at_one_size():
    pair = claims._is_register_pair
    assert pair(SMALL, SMALL_REG) and pair(DINOV2_G, DINOV2_REG)
    assert not pair(SMALL, DINOV2_REG)  # two sizes
    assert not pair(SMALL, SMALL) and not pair(SMALL_REG, SMALL_REG)
    assert not pair(SMALL_REG, SMALL)  # the wrong way round
    assert not pair("vit_large_patch14_clip_224.openai", "vit_large_patch14_reg4_clip_224.openai")  # not DINOv2


def test_size_outliers_that_come_and_go_are_not_a_trend(monkeypatch):
    monkeypatch.setattr(claims, "PAPER_SIZE_SERIES", ["s", "b", "l", "g"])
    judged = claims.judge_size_trend([("s", False, False), ("b", False, True), ("l", False, False), ("g", False, True)])
    assert judged.verdict is Verdict.NOT_REPRODUCED and judged.reason == "outliers come and go with size"


def test_register_pair_needs_a_patch14_dinov2_and_its_reg4_twin():
    assert claims._is_register_pair("vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m")
    assert not claims._is_register_pair("vit_small_dinov2.lvd142m", "vit_small_dinov2.lvd142m")
    assert not claims._is_register_pair("vit_small_patch14_reg4_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m")


def test_an_interval_that_could_not_be_computed_says_so():
    no_interval = Interval(0.7, float("nan"), float("nan"), 8, "bootstrap over images", 0.6)
    judged = claims.judge_redundancy(False, True, no_interval, False)
    assert judged.verdict is Verdict.INCONCLUSIVE and judged.reason.endswith(": no interval could be computed")


def test_undecided_outliers_are_inconclusive_not_untestable():
    assert claims.has_outliers(True, iv(0.0, 0.03)) is None
    assert claims.has_outliers(True, Interval(0.02, NAN, NAN, 4)) is None
    for judged in (claims.judge_attention(False, None, iv(3, 5)), claims.judge_redundancy(False, None, iv(0.7, 0.9), False),
                   claims.judge_local_information(False, None, iv(0.1, 0.2), iv(1, 2)),
                   claims.judge_test_time_registers(False, None, 1, iv(0.95, 1)),
                   claims.judge_discovery(False, None, True, iv(0.1, 0.2, n=16)),
                   claims.judge_registers(DINOV2_G, DINOV2_REG, False, None, iv(0.95, 1))):
        assert judged.verdict is Verdict.INCONCLUSIVE and judged.reason == claims.UNDECIDED


def _equal(value, n=8):
    return Interval(value, value, value, n, "every resample equal; bootstrap over images")


def test_a_comparison_whose_resamples_are_all_equal():
    # redundancy: with the minimum matched pairs, an all-equal AUC is perfect separation or inversion: it decides
    assert claims.judge_redundancy(False, True, _equal(1.0), pinned=False).verdict is Verdict.REPRODUCED
    assert claims.judge_redundancy(False, True, _equal(0.0), pinned=False).verdict is Verdict.NOT_REPRODUCED
    enrichment = claims.judge_attention(False, True, _equal(5.0))
    assert enrichment.verdict is Verdict.INCONCLUSIVE and "every resample" in enrichment.reason
    # an all-equal position-matched reading may fail the claim (attention that follows position alone: 1.0 at the
    # same positions), never pass it
    position_only = claims.judge_attention(False, True, iv(3.2, 4.2), matched=_equal(1.0))
    assert position_only.verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_attention(False, True, iv(3.0, 6.0), matched=_equal(4.9)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_attention(False, True, iv(3.0, 6.0), matched=iv(0.5, 1.0)).verdict is Verdict.NOT_REPRODUCED


def test_a_statistic_that_was_not_measurable_gives_its_own_reason():
    why = "not measurable: 1 matched pair (need 10)"
    unmeasured = Interval(math.nan, math.nan, math.nan, 8, why)
    redundancy = claims.judge_redundancy(False, True, unmeasured, pinned=False)
    assert redundancy.verdict is Verdict.INCONCLUSIVE and redundancy.reason == why
    attention = claims.judge_attention(False, True, iv(3.0, 6.0), matched=unmeasured)
    assert attention.verdict is Verdict.REPRODUCED and why in attention.reason
    local = claims.judge_local_information(False, True, unmeasured, iv(1, 2))
    assert local.verdict is Verdict.NOT_TESTABLE and local.reason == why
    plain = Interval(math.nan, math.nan, math.nan, 8)
    assert claims.judge_redundancy(False, True, plain, pinned=False).reason.startswith("no grid position holds")


def test_a_detector_that_cannot_decide_or_tokens_at_the_papers_line_keep_has_none_from_passing():
    """has_outliers and the presence rule in every state of the detector and of the share above the paper's line
    (3x the image median): a mode that reaches the line, a mode below it, an undecided detector, no mode with tokens
    at the line that matter, that cannot be bounded (too few images), or that do not matter."""
    line, stray, no_line = iv(0.002, 0.01), iv(0.0, 0.004, estimate=0.001), iv(0.0, 0.0)
    unbounded = Interval(0.02, NAN, NAN, 6)  # tokens at the line, too few images for an interval
    assert claims.has_outliers(True, iv(0.01, 0.03), line_share=line) is True
    assert claims.has_outliers(True, iv(0.01, 0.03), line_share=stray) is None  # the mode does not reach the line
    assert claims.has_outliers(True, iv(0.01, 0.03)) is True  # no reading at the line: the mode decides
    assert claims.has_outliers(False, iv(0.0, 0.0), undecided=True) is None
    assert claims.has_outliers(False, iv(0.0, 0.0), line_share=line) is None
    assert claims.has_outliers(False, iv(0.0, 0.0), line_share=unbounded) is None
    assert claims.has_outliers(False, iv(0.0, 0.0), line_share=stray) is False  # 0.1 % or less does not matter
    assert claims.has_outliers(False, iv(0.0, 0.0), line_share=no_line) is False
    assert claims.has_outliers(False, iv(0.0, 0.0), line_share=Interval(0.0, NAN, NAN, 6)) is False  # none there
    assert claims.has_outliers(False, iv(0.0, 0.0)) is False
    R, N, I = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE
    zero = iv(0.0, 0.0)
    for expected, state, verdict in [(True, {}, N), (False, {}, R),
                                     (True, {"undecided": True}, I), (False, {"undecided": True}, I),
                                     (True, {"line_share": line}, I), (False, {"line_share": line}, I),
                                     (False, {"line_share": unbounded}, I), (True, {"line_share": unbounded}, I),
                                     (True, {"line_share": stray}, N), (False, {"line_share": stray}, R)]:
        assert claims.outlier_presence(expected, False, zero, **state).verdict is verdict, (expected, state)
    # a found mode is judged by its interval when its tokens reach the line, else it cannot tell
    assert claims.outlier_presence(True, True, iv(0.01, 0.03), line_share=line).verdict is R
    assert claims.outlier_presence(False, True, iv(0.01, 0.03), line_share=line).verdict is N
    below = claims.outlier_presence(True, True, iv(0.01, 0.03), line_share=stray)
    assert below.verdict is I and "do not reach 3x their image's median" in below.reason
    assert claims.outlier_presence(False, True, iv(0.01, 0.03), line_share=stray).verdict is I
    judged = claims.judge_outliers(DINOV2_G, False, False, zero, line_share=line)
    assert judged.verdict is I and "mode); above 3x the image median: 0.60% [0.20%, 1.00%]" in judged.reason
    judged = claims.judge_outliers(DINOV2_G, False, False, zero, undecided=True, detector_reason="too few tokens")
    assert judged.verdict is I and "; the detector cannot decide: too few tokens" in judged.reason


def test_an_all_equal_interval_is_called_so_once_in_a_reason():
    """The interval's text already says "every resample equal": the reason's method part drops those words."""
    equal = Interval(1.0, 1.0, 1.0, 8, "every resample equal (zero width, bootstrap over images)")
    judged = claims.judge_test_time_registers(False, True, 1, equal)
    assert judged.reason.count("every resample equal") == 1, judged.reason
    assert "(zero width, bootstrap over images, n=8)" in judged.reason
