"""Each verdict rule on inputs whose right verdict is known."""

import math

from analysis.claims import (
    Verdict,
    judge_attention,
    judge_layer_onset,
    judge_outliers,
    judge_redundancy,
    judge_registers,
    judge_size_trend,
    judge_training_onset,
)
from analysis.report import overall_verdict, verdict_markdown, weights_markdown
from analysis.claims import Claim
from analysis.models import Provenance

DINOV2_G = "vit_giant_patch14_dinov2.lvd142m"
DINO_B = "vit_base_patch16_224.dino"


def test_outliers_planted_is_reproduced_clean_is_not():
    assert judge_outliers(DINOV2_G, False, True, 0.02)[0] is Verdict.REPRODUCED
    assert judge_outliers(DINOV2_G, False, False, 0.0)[0] is Verdict.NOT_REPRODUCED


def test_outliers_absence_claim_for_dino():
    assert judge_outliers(DINO_B, False, False, 0.0)[0] is Verdict.REPRODUCED
    assert judge_outliers(DINO_B, False, True, 0.03)[0] is Verdict.NOT_REPRODUCED


def test_random_weights_are_never_testable():
    assert judge_outliers(DINOV2_G, True, True, 0.02)[0] is Verdict.NOT_TESTABLE
    assert judge_attention(True, 0.02, 0.5)[0] is Verdict.NOT_TESTABLE
    assert judge_layer_onset(True, 7, 12)[0] is Verdict.NOT_TESTABLE
    assert judge_redundancy(True, 10, 0.8, 0.4, 0.9)[0] is Verdict.NOT_TESTABLE
    assert judge_registers(True, True, False, 5.0)[0] is Verdict.NOT_TESTABLE
    assert judge_size_trend([("s", True, False), ("g", True, True)])[0] is Verdict.NOT_TESTABLE


def test_unknown_model_is_not_testable():
    assert judge_outliers("vit_small_patch16_224.augreg_in1k", False, True, 0.02)[0] is Verdict.NOT_TESTABLE


def test_a_majority_mode_is_not_a_few_outliers():
    assert judge_outliers(DINOV2_G, False, True, 0.4)[0] is Verdict.NOT_REPRODUCED


def test_attention_enrichment_rule():
    assert judge_attention(False, 0.02, 0.30)[0] is Verdict.REPRODUCED  # 15x area share
    assert judge_attention(False, 0.02, 0.03)[0] is Verdict.NOT_REPRODUCED  # 1.5x
    assert judge_attention(False, 0.0, 0.0)[0] is Verdict.NOT_TESTABLE


def test_layer_onset_rule():
    assert judge_layer_onset(False, 15, 40)[0] is Verdict.REPRODUCED
    assert judge_layer_onset(False, 1, 40)[0] is Verdict.NOT_REPRODUCED
    assert judge_layer_onset(False, None, 40)[0] is Verdict.NOT_TESTABLE


def test_size_trend_rule():
    trend = [("S", False, False), ("B", False, False), ("L", False, True), ("g", False, True)]
    assert judge_size_trend(trend)[0] is Verdict.REPRODUCED
    assert judge_size_trend([("S", False, True), ("g", False, True)])[0] is Verdict.NOT_REPRODUCED
    assert judge_size_trend([("S", False, False), ("g", False, False)])[0] is Verdict.NOT_REPRODUCED
    assert judge_size_trend([("S", False, False), ("B", False, True), ("g", False, False)])[0] is Verdict.NOT_REPRODUCED
    assert judge_size_trend([("S", False, True)])[0] is Verdict.NOT_TESTABLE


def test_training_onset_rule():
    assert judge_training_onset([(0.0, False), (0.1, False), (0.4, True), (1.0, True)])[0] is Verdict.REPRODUCED
    assert judge_training_onset([(0.0, True), (0.5, True), (1.0, True)])[0] is Verdict.NOT_REPRODUCED
    assert judge_training_onset([(0.0, False), (1.0, True)])[0] is Verdict.NOT_TESTABLE


def test_redundancy_rule():
    assert judge_redundancy(False, 30, 0.8, 0.4, 0.9)[0] is Verdict.REPRODUCED
    assert judge_redundancy(False, 30, 0.4, 0.4, 0.5)[0] is Verdict.NOT_REPRODUCED
    assert judge_redundancy(False, 0, math.nan, 0.4, math.nan)[0] is Verdict.NOT_TESTABLE


def test_registers_rule():
    assert judge_registers(False, True, False, 8.0)[0] is Verdict.REPRODUCED
    assert judge_registers(False, True, True, 8.0)[0] is Verdict.NOT_REPRODUCED
    assert judge_registers(False, False, False, 1.0)[0] is Verdict.NOT_TESTABLE


def claim(verdict):
    return Claim("p", "c.", "paper", "measured", verdict, "w", "r")


def test_overall_verdict_and_markdown():
    assert overall_verdict([claim(Verdict.REPRODUCED), claim(Verdict.NOT_TESTABLE)]) is Verdict.REPRODUCED
    assert overall_verdict([claim(Verdict.REPRODUCED), claim(Verdict.NOT_REPRODUCED)]) is Verdict.NOT_REPRODUCED
    assert overall_verdict([claim(Verdict.NOT_TESTABLE)]) is Verdict.NOT_TESTABLE
    text = verdict_markdown([claim(Verdict.NOT_REPRODUCED)])
    assert "Verdict of this run: not reproduced" in text and ":class: error" in text


def test_random_weights_get_a_danger_box():
    random = Provenance("m", "random", "", "", 0)
    real = Provenance("m", "folder", "/w/m.safetensors", "ab" * 32)
    assert "{danger}" in weights_markdown([real, random]) and "not testable" in weights_markdown([random])
    assert "{danger}" not in weights_markdown([real])


def test_discovery_rule():
    from analysis.claims import judge_discovery

    assert judge_discovery(False, 0.55, 0.35, 20)[0] is Verdict.REPRODUCED
    assert judge_discovery(False, 0.30, 0.35, 20)[0] is Verdict.NOT_REPRODUCED
    assert judge_discovery(False, 0.55, 0.35, 3)[0] is Verdict.NOT_TESTABLE
    assert judge_discovery(True, 0.55, 0.35, 20)[0] is Verdict.NOT_TESTABLE


def test_information_rules():
    from analysis.claims import judge_global_information, judge_local_information

    assert judge_local_information(False, 40, 0.42, 0.23, 18.4, 25.2)[0] is Verdict.REPRODUCED
    assert judge_local_information(False, 40, 0.42, 0.50, 18.4, 25.2)[0] is Verdict.NOT_REPRODUCED
    assert judge_local_information(False, 0, 0.42, float("nan"), 18.4, float("nan"))[0] is Verdict.NOT_TESTABLE
    assert judge_global_information(False, 100, 0.658, 0.690)[0] is Verdict.REPRODUCED
    assert judge_global_information(False, 100, 0.70, 0.69)[0] is Verdict.NOT_REPRODUCED
    assert judge_global_information(False, 5, 0.658, 0.690)[0] is Verdict.NOT_TESTABLE
