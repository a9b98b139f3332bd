"""Findings on planted arrays whose answer is known: position-stratified comparisons, the register reduction,
onset resamples, the cutoff refit inside resamples."""

import numpy as np
import pandas as pd
import pytest

from analysis import findings


def two_positions(n_images: int = 40, seed: int = 0):
    """Two grid positions that differ in base cosine and in how often they hold an outlier, with *no*
    difference between outliers and normal tokens inside either position."""
    rng = np.random.default_rng(seed)
    cosine = np.stack([rng.normal(0.9, 0.02, n_images), rng.normal(0.3, 0.02, n_images)], axis=1)  # (B, 2)
    high = np.zeros((n_images, 2), bool)
    high[: int(0.8 * n_images), 0] = True  # position 0: high cosine, outlier in 80 % of images
    high[: int(0.1 * n_images), 1] = True  # position 1: low cosine, outlier in 10 %
    return cosine, high


def test_pooling_positions_invents_redundancy_that_stratifying_does_not():
    from analysis import metrics

    cosine, high = two_positions()
    pooled = metrics.separation_auc(cosine.ravel(), high.ravel())
    assert pooled > 0.8  # the confound: position alone separates
    assert findings.position_matched_auc(cosine, high) == pytest.approx(0.5, abs=0.15)


def test_stratified_auc_finds_a_planted_difference_within_positions():
    cosine, high = two_positions()
    cosine = cosine + 0.1 * high  # outliers 0.1 more similar to their neighbours than normal tokens there
    assert findings.position_matched_auc(cosine, high) > 0.95


def test_stratified_auc_weights_positions_by_their_outliers(monkeypatch):
    monkeypatch.setattr(findings, "MIN_MATCHED_PAIRS", 1)  # the arithmetic on 2 matched pairs, below the minimum
    cosine = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # (4 images, 2 positions)
    high = np.array([[True, True], [False, True], [False, True], [False, False]])
    # position 0: the outlier has the highest cosine (AUC 1); position 1: outliers 1, 0, 0 vs normal 0 (AUC 4/6)
    expected = (1 * 1.0 + 3 * (2 / 3)) / 4
    assert findings.position_matched_auc(cosine, high) == pytest.approx(expected)


def test_pinned_counts_tokens_not_positions():
    high = np.zeros((20, 10), bool)
    high[:, 0] = True  # one position holds an outlier in every image
    assert findings.position_stability(high)["pinned"]
    high[np.arange(20), 1 + np.arange(20) % 9] = True  # and one free outlier per image elsewhere: half pinned
    assert not findings.position_stability(high)["pinned"]
    high[:, 9] = True  # a second always-on position: 40 pinned of 60
    assert findings.position_stability(high)["pinned"]


def test_matched_attention_tells_position_from_outlier():
    rng = np.random.default_rng(1)
    attention = np.tile([0.5, 0.1, 0.1, 0.1, 0.2], (30, 1)) + rng.normal(0, 0.005, (30, 5))
    high = np.zeros((30, 5), bool)
    high[:15, 0] = True  # outliers sit where attention is high anyway
    high[15:, 4] = True
    assert findings.matched_attention_ratio(attention, high) == pytest.approx(1.0, abs=0.05)
    boosted = attention + 0.4 * high  # now outliers draw more than normal tokens at their positions
    assert findings.matched_attention_ratio(boosted, high) > 1.8
    assert np.isnan(findings.matched_attention_ratio(attention, np.ones((30, 5), bool)))


def test_register_reduction_on_the_plain_models_scale():
    rng = np.random.default_rng(2)
    plain = rng.lognormal(np.log(20), 0.2, (16, 100))
    plain[:, :3] *= 30  # 3 % outliers far above the median
    registers = 10 * rng.lognormal(np.log(20), 0.2, (16, 100))  # another scale, no outliers
    ratio = 8.0
    clean = findings.register_reduction_interval(plain, registers, ratio)
    assert clean.estimate == pytest.approx(1.0) and clean.low == pytest.approx(1.0)
    registers[:, :3] *= 30  # same outliers with registers: nothing removed
    kept = findings.register_reduction_interval(plain, registers, ratio)
    assert kept.estimate == pytest.approx(0.0) and kept.high < 0.5


def test_onset_resamples_without_onset_count_as_never():
    assert findings.relative_onset(np.ones((2, 4, 10))) == 1.0
    interval = findings.onset_interval(np.ones((6, 4, 10)), n_resamples=19)
    assert np.isnan(interval.estimate)


def test_outlier_share_refits_the_cutoff_inside_resamples():
    rng = np.random.default_rng(3)
    norms = rng.lognormal(np.log(20), 0.2, (12, 200))
    norms[0, :6] = 600.0  # one image alone holds the outliers
    cutoff = findings.cutoff_from_norms(norms, 150.0)
    refit = findings.outlier_share_interval(norms, cutoff.value, refit=True)
    assert refit.estimate == pytest.approx(6 / 2400)
    assert refit.low == 0.0  # resamples without that image have no mode: the share can be 0
    assert not findings.has_outliers(cutoff, refit)


def test_the_papers_own_cutoff_is_read_for_the_model_it_belongs_to(tiny_features):
    """DINO's statement is "below 100": its row reads the share above 100, not above the page's threshold."""
    as_dino = findings.norm_summary({"vit_base_patch16_224.dino": tiny_features}, 1000.0).iloc[0]
    assert as_dino.paper_cutoff == 100.0 and as_dino.share_above_threshold == 0.0
    assert as_dino.share_above_paper_cutoff == pytest.approx(as_dino.outlier_share, abs=0.002)
    assert as_dino.share_above_paper_cutoff > 0.01
    assert findings.paper_share_interval(as_dino).estimate == as_dino.share_above_paper_cutoff
    unnamed = findings.norm_summary({"vit_tiny_patch16_224.augreg_in21k_ft_in1k": tiny_features}, 150.0).iloc[0]
    assert np.isnan(unnamed.paper_cutoff) and findings.paper_share_interval(unnamed) is None


def test_depth_sentence_names_the_blocks_and_whether_the_mode_survives_to_the_output():
    from analysis.findings import depth_sentence

    assert depth_sentence(np.zeros(12, bool)) == "no block of the 12 has a separated high-norm mode"
    middle = np.zeros(12, bool)
    middle[5:9] = True  # a distilled model's middle blocks, gone by the output
    assert depth_sentence(middle) == ("a separated high-norm mode exists in blocks 5–8 of 0–11, and none is left "
                                      "at the last block (the output)")
    late = np.zeros(12, bool)
    late[7:] = True
    assert depth_sentence(late) == "a separated high-norm mode exists in blocks 7–11 of 0–11: from block 7 on, up to the output"
    broken = np.array([0, 1, 0, 0, 1, 1], bool)
    assert depth_sentence(broken) == ("a separated high-norm mode exists in blocks 1 and 4–5 of 0–5; without a break "
                                      "from block 4 on, up to the output")
    single = np.array([0, 0, 1], bool)
    assert depth_sentence(single) == "a separated high-norm mode exists in block 2 of 0–2: from block 2 on, up to the output"


# ---------------------------------------------------------------------------------------------- minimum counts


def corner_like(n_images: int = 12, normal_images: int = 1):
    """One grid position holding an outlier in all but ``normal_images`` images (a pinned corner), the rest normal;
    the outliers there have the higher cosine."""
    rng = np.random.default_rng(5)
    high = np.zeros((n_images, 6), bool)
    high[normal_images:, 0] = True
    cosine = rng.normal(0.5, 0.05, (n_images, 6)) + 0.3 * high
    attention = rng.normal(0.1, 0.005, (n_images, 6)) + 0.4 * high
    return cosine, attention, high


def test_matched_counts_are_pairs_per_position_summed():
    high = np.zeros((12, 4), bool)
    high[1:, 0] = True  # 11 outliers, 1 normal token: 1 pair
    high[:3, 1] = True  # 3 outliers, 9 normal: 3 pairs
    high[:, 2] = True  # outliers in every image: no normal token there, not counted
    counts = findings.matched_counts(high)
    assert (counts.positions, counts.outliers, counts.normals, counts.pairs, counts.all_outliers) == (2, 14, 10, 4, 26)
    assert not counts.measurable and counts.reason() == (
        "not measurable: 4 matched pairs (an outlier and a normal token at one grid position), 10 needed: 2 positions "
        "hold both kinds, 14 of the 26 outliers and 10 normal tokens")


def test_one_normal_token_at_a_pinned_position_is_not_measurable():
    """The ci book's case: AUC 1.00 [1.00, 1.00] from ONE normal corner token is no comparison."""
    cosine, attention, high = corner_like()
    assert np.isnan(findings.position_matched_auc(cosine, high))
    auc = findings.redundancy_intervals(cosine, high)["matched"]
    assert np.isnan(auc.estimate) and auc.method.startswith(findings.NOT_MEASURABLE)
    assert "1 matched pair (" in auc.method and "1 position holds both kinds, 11 of the 11 outliers and 1 normal" in auc.method
    assert np.isnan(findings.matched_attention_ratio(attention, high))
    matched = findings.matched_attention_interval(attention, high)
    assert np.isnan(matched.estimate) and matched.method.startswith(findings.NOT_MEASURABLE)
    assert not np.isnan(findings.redundancy_intervals(cosine, high)["raw"].estimate)  # the pooled AUC is still shown


def test_enough_matched_pairs_are_measured():
    cosine, attention, high = corner_like(n_images=24, normal_images=findings.MIN_MATCHED_PAIRS)
    assert findings.matched_counts(high).pairs == findings.MIN_MATCHED_PAIRS
    assert findings.position_matched_auc(cosine, high) > 0.95
    assert findings.redundancy_intervals(cosine, high)["matched"].low > 0.8
    assert findings.matched_attention_ratio(attention, high) > 3
    fewer = corner_like(n_images=24, normal_images=findings.MIN_MATCHED_PAIRS - 1)
    assert np.isnan(findings.position_matched_auc(fewer[0], fewer[2]))


def test_kind_gap_needs_enough_tokens_of_each_kind():
    rng = np.random.default_rng(6)
    values = rng.normal(0, 1, (12, 50))
    high = np.zeros((12, 50), bool)
    high[:9, 0] = True  # 9 high-norm tokens: one short
    gap = findings.kind_gap(values, high)
    assert np.isnan(gap.estimate) and gap.method == ("not measurable: 9 high-norm and 591 normal tokens (10 of each "
                                                     "needed)")
    high[9, 0] = True
    assert not np.isnan(findings.kind_gap(values, high).estimate)


def test_kind_gap_needs_high_norm_tokens_in_several_images():
    """Ten outliers from one image are one image's answer: not measurable, however many tokens."""
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1, (12, 50))
    high = np.zeros((12, 50), bool)
    high[:3, :10] = True  # 30 high-norm tokens in 3 images
    gap = findings.kind_gap(values, high)
    assert np.isnan(gap.estimate) and gap.method == ("not measurable: the 30 high-norm tokens lie in 3 images (4 "
                                                     "needed)")
    high[3, 0] = True  # a fourth image
    assert not np.isnan(findings.kind_gap(values, high).estimate)


def test_the_papers_line_is_read_against_each_images_own_median():
    """3x each image's median: a whole image 4x brighter holds no token above it, a NaN or zero norm is never
    above it and does not move the line; tokens planted at 5x their image's median are counted exactly."""
    rng = np.random.default_rng(3)
    norms = rng.lognormal(np.log(20), 0.05, (12, 100))
    norms[2] *= 4  # a brighter image: nothing above its own line
    assert findings.paper_line_share(norms).estimate == 0
    norms[:, :2] = 5 * np.median(norms, axis=1, keepdims=True)  # 2 per image at 5x their image's median
    norms[0, 50], norms[1, 60] = np.nan, 0.0
    line = findings.paper_line_share(norms)
    assert line.estimate == pytest.approx(24 / 1200) and line.low > 0


def test_the_block_table_reads_each_block_as_images_like_the_onset():
    """A block where two of twelve images have every norm 4x higher holds no outliers within images: the block table
    must say so, as the onset's reading (separated_blocks) does; read flat, those images look like a minority mode."""
    rng = np.random.default_rng(0)
    norms = rng.lognormal(np.log(20), 0.1, (12, 3, 196))  # (images, blocks, patches)
    norms[:2, 1] *= 4  # block 1: two whole images higher
    norms[:, 2, :4] *= 8  # block 2: 4 real outliers in every image
    table = findings.block_table(norms)
    assert table.separated_mode.tolist() == findings.separated_blocks(norms).tolist() == [False, False, True]
    assert not table.undecided_mode[1]
    from analysis import metrics

    assert metrics.adaptive_threshold(norms[:, 1].ravel()).bimodal  # the flat reading would call it a mode


def test_an_onset_is_exact_only_where_the_block_before_it_reads_as_none():
    """The block before the onset must be decided and, as "has none" requires of a model, hold no share above the
    paper's line whose interval lies above 0.1 % (or cannot be bounded)."""
    table = pd.DataFrame({"separated_mode": [False, False, True, True], "undecided_mode": [False, False, False, False],
                          "line_share": [0.0, 0.003, 0.02, 0.02], "line_share_low": [0.0, 0.0005, 0.01, 0.01],
                          "line_share_high": [0.0, 0.006, 0.03, 0.03]})
    assert findings.onset_is_exact(table, 2)  # block 1: 0.3 %, but its interval reaches under 0.1 %
    assert findings.onset_is_exact(table, None) and findings.onset_is_exact(table, 0)
    assert not findings.onset_is_exact(table.assign(undecided_mode=[False, True, False, False]), 2)
    assert not findings.onset_is_exact(table.assign(line_share_low=[0.0, 0.002, 0.01, 0.01]), 2)  # tokens at the line
    assert not findings.onset_is_exact(table.assign(line_share_low=[0.0, np.nan, 0.01, 0.01]), 2)  # cannot bound it


def test_the_block_table_counts_each_block_above_three_times_its_images_medians():
    norms = np.full((8, 2, 10), 10.0)  # (images, blocks, patches)
    norms[1] *= 5  # the second image is 5x higher everywhere: its own median moves with it
    norms[0, 1, :2] = 31.0  # block 1: two tokens above 3x the first image's median (30)
    norms[1, 1, 0] = 149.0  # under 3x the second image's median (150): not counted
    norms[1, 0, 0] = np.nan  # never above
    norms[2, 0, :3] = np.inf  # nor an infinite norm (not a length the model made)
    table = findings.block_table(norms)
    assert table.line_share.tolist() == [0.0, 2 / 80]
    assert table.line_share_low[0] == table.line_share_high[0] == 0.0
    assert table.line_share_low[1] <= 2 / 80 <= table.line_share_high[1]
