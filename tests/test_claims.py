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
    # a model without a paper cutoff ignores the fixed reading
    assert claims.judge_outliers(DINO_B, False, False, iv(0, 0), iv(0.3, 0.4)).verdict is Verdict.REPRODUCED


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
    assert claims.judge_layer_onset(False, iv(0.3, 0.45), 40).verdict is Verdict.REPRODUCED
    assert claims.judge_layer_onset(False, iv(0.25, 0.5), 40).verdict is Verdict.REPRODUCED  # edges inside
    assert claims.judge_layer_onset(False, iv(0.2, 0.3), 40).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.45, 0.55), 40).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.0, 0.24), 40).verdict is Verdict.NOT_REPRODUCED  # too early
    assert claims.judge_layer_onset(False, iv(0.51, 0.7), 40).verdict is Verdict.NOT_REPRODUCED  # too late
    assert claims.judge_layer_onset(False, iv(0.3, 1.0), 40).verdict is Verdict.INCONCLUSIVE  # some resamples: never
    assert claims.judge_layer_onset(False, Interval(float("nan"), 0.9, 1.0, 8), 40).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_layer_onset(False, Interval(0.3, float("nan"), float("nan"), 8), 40).verdict \
        is Verdict.INCONCLUSIVE


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
    per_image = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)  # 4 images
    share = image_bootstrap({"h": per_image}, lambda c: float(np.mean(c["h"])), seed=0)
    assert share.estimate == pytest.approx(3 / 16)
    assert 0 <= share.low < share.estimate < share.high <= 0.5  # an image holds at most 2 of 4 outliers
    assert image_bootstrap({"h": per_image}, lambda c: float(np.mean(c["h"])), seed=0) == share
    constant = image_bootstrap({"v": np.ones(5)}, lambda c: float(np.mean(c["v"])), seed=0)
    assert (constant.low, constant.high) == (1.0, 1.0)


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
    assert "negative controls" in text and "Images: x: L image converted to RGB" in text
