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


def test_paper_outlier_claims_for_named_models():
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.018, 0.021)).verdict is Verdict.REPRODUCED
    assert claims.judge_outliers(DINOV2_G, False, False, iv(0, 0)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.05, 0.12, 0.08)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_outliers(DINOV2_G, False, True, iv(0.3, 0.4)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_outliers(DINO_B, False, False, iv(0, 0)).verdict is Verdict.REPRODUCED
    assert claims.judge_outliers(DINO_B, False, True, iv(0.02, 0.03)).verdict is Verdict.NOT_REPRODUCED


def test_random_weights_are_never_testable():
    random = [claims.judge_outliers(DINOV2_G, True, True, iv(0.02, 0.03)),
              claims.judge_attention(True, True, iv(5, 9)), claims.judge_layer_onset(True, iv(0.4, 0.5), 12),
              claims.judge_redundancy(True, True, iv(0.8, 0.9), False),
              claims.judge_test_time_registers(True, True, 2, iv(1, 1)),
              claims.judge_registers(DINOV2_G, DINOV2_G.replace("patch14_", "patch14_reg4_"), True, True, iv(0, 0))]
    assert all(j.verdict is Verdict.NOT_TESTABLE for j in random)


def test_attention_enrichment_margin():
    assert claims.judge_attention(False, True, iv(2.0, 5.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_attention(False, True, iv(1.5, 2.5)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_attention(False, True, iv(1.0, 1.99)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_attention(False, False, iv(1.0, 1.99)).verdict is Verdict.NOT_TESTABLE


def test_layer_onset_margin():
    assert claims.judge_layer_onset(False, iv(0.25, 0.4), 40).verdict is Verdict.REPRODUCED
    assert claims.judge_layer_onset(False, iv(0.2, 0.3), 40).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_layer_onset(False, iv(0.0, 0.24), 40).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_layer_onset(False, Interval(float("nan"), float("nan"), float("nan"), 8), 40).verdict \
        is Verdict.NOT_TESTABLE


def test_size_trend_only_on_pretrained_dinov2():
    s, b, l, g = claims.PAPER_SIZE_FAMILY
    assert claims.judge_size_trend([(s, False, False), (b, False, False), (l, False, True), (g, False, True)]).verdict \
        is Verdict.REPRODUCED
    assert claims.judge_size_trend([(s, False, True), (g, False, True)]).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_size_trend([(s, False, False), (g, False, False)]).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_size_trend([(s, True, False), (g, True, True)]).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_size_trend([("deit3_small_patch16_224.fb_in1k", False, False),
                                    ("deit3_base_patch16_224.fb_in1k", False, True)]).verdict is Verdict.NOT_TESTABLE


def test_training_onset_about_a_third():
    assert claims.judge_training_onset([(0, True, False), (0.2, False, False), (0.4, False, True), (1, False, True)]).verdict \
        is Verdict.REPRODUCED
    assert claims.judge_training_onset([(0, True, False), (0.8, False, False), (0.9, False, True), (1, False, True)]).verdict \
        is Verdict.NOT_REPRODUCED  # far later than a third
    assert claims.judge_training_onset([(0, True, False), (1, False, True)]).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_training_onset([(0, True, False), (0.5, True, False), (1, True, False)]).verdict \
        is Verdict.NOT_TESTABLE  # random "trained" checkpoints


def test_redundancy_pinned_outliers_are_confounded():
    assert claims.judge_redundancy(False, True, iv(0.9, 1.0), True).verdict is Verdict.INCONCLUSIVE
    assert "confounded by position" in claims.judge_redundancy(False, True, iv(0.9, 1.0), True).reason
    assert claims.judge_redundancy(False, True, iv(0.6, 0.8), False).verdict is Verdict.REPRODUCED
    assert claims.judge_redundancy(False, True, iv(0.4, 0.59), False).verdict is Verdict.NOT_REPRODUCED


def test_local_and_global_information():
    assert claims.judge_local_information(False, True, iv(0.05, 0.2), iv(1, 3)).verdict is Verdict.REPRODUCED
    assert claims.judge_local_information(False, True, iv(-0.2, -0.1), iv(1, 3)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_local_information(False, True, iv(-0.01, 0.2), iv(1, 3)).verdict is Verdict.INCONCLUSIVE
    assert claims.judge_global_information(False, 19, iv(0.1, 0.3)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_global_information(False, 20, iv(0.1, 0.3)).verdict is Verdict.REPRODUCED
    assert claims.judge_global_information(False, 20, iv(-0.05, 0.3)).verdict is Verdict.INCONCLUSIVE


def test_registers_only_on_the_papers_pairs():
    reg = "vit_giant_patch14_reg4_dinov2.lvd142m"
    assert claims.judge_registers(DINOV2_G, reg, False, True, iv(0, 0)).verdict is Verdict.REPRODUCED
    assert claims.judge_registers(DINOV2_G, reg, False, True, iv(0.01, 0.02)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_registers(TINY, reg, False, True, iv(0, 0)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_norm_in_registers(DINOV2_G, reg, False, iv(8, 12), 5.0).verdict is Verdict.REPRODUCED
    assert claims.judge_norm_in_registers(DINOV2_G, reg, False, iv(1, 2), 5.0).verdict is Verdict.NOT_REPRODUCED


def test_test_time_registers_and_discovery_margins():
    assert claims.judge_test_time_registers(False, True, 1, iv(0.9, 1.0)).verdict is Verdict.REPRODUCED
    assert claims.judge_test_time_registers(False, True, 1, iv(0.5, 0.89)).verdict is Verdict.NOT_REPRODUCED
    assert claims.judge_test_time_registers(False, False, 1, iv(0.9, 1.0)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_discovery(False, False, False, iv(0, 0)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_discovery(False, True, False, iv(0, 0)).verdict is Verdict.NOT_TESTABLE
    assert claims.judge_discovery(False, True, True, iv(0.1, 0.3)).verdict is Verdict.REPRODUCED
    assert claims.judge_discovery(False, True, True, iv(-0.1, 0.0)).verdict is Verdict.NOT_REPRODUCED


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
    claim = claims.Claim.of("attention_maps", Kind.MECHANISM, "AugReg ViT-Ti/16", "c", "p", "m",
                            claims.judge_attention(False, True, iv(13.1, 24.1, 18.3)), "w")
    text = verdict_markdown([claim], [claims.control("ctl (random init)", False, 0.0)])
    assert "Verdict of this run: reproduced" in text and ":class: tip" in text
    assert "mechanism, conditional on outliers" in text and "18.3 [13.1, 24.1]" in text and "Rule:" in text
    assert "Negative controls" in text and "as expected" in text


def test_random_weights_block_is_a_titled_admonition():
    from analysis.models import Provenance

    text = weights_markdown([Provenance("m", "random", "", "", 0)], ["x: L image converted to RGB"])
    assert text.startswith("```{admonition} Weights of this run (includes random initialisation)\n:class: danger\n")
    assert "negative controls" in text and "Images: x: L image converted to RGB" in text
