"""The test-time-register page's two passes on the real ViT-Ti: the cached pass's own precision and images, the
units and the moved pass both cached (a second call runs no model), and "nothing to move" when there are no units."""

import numpy as np
import pytest

from analysis import features, findings, models, test_time

TINY = models.OFFLINE_MODEL


@pytest.fixture(scope="module")
def bfloat16_pass(weights_dir, tmp_path_factory):
    run = features.RunOptions("builtin", 8, 224, weights_dir=weights_dir, cache_dir=tmp_path_factory.mktemp("cache"),
                              precision="bfloat16", allow_hub=False, progress=False)
    return features.extract(TINY, run), run


def test_the_moved_pass_runs_in_the_cached_pass_precision_on_its_held_out_images(bfloat16_pass):
    feats, run = bfloat16_pass
    high = findings.patch_grid(feats, "norm") > 5 * np.median(findings.patch_grid(feats, "norm"))  # the 4 corners
    # the page asks in float32 by mistake: the moved pass still follows the cached one, so its cutoff applies
    moved = test_time.moved_pass(feats, high, run.replace(precision="float32"), top_k=2)
    assert feats.meta["precision"] == "bfloat16" and moved.moved.meta["precision"] == "bfloat16"
    held_ids = [feats.meta["images"][i]["image_id"] for i in moved.held_out]
    assert [image["image_id"] for image in moved.moved.meta["images"]] == held_ids
    assert len(moved.chosen_on) + len(moved.held_out) == 8 and not set(moved.chosen_on) & set(moved.held_out)
    assert moved.neurons and moved.register_index == feats.meta["num_prefix_tokens"]  # right after CLS
    assert moved.moved.meta["num_prefix_tokens"] == feats.meta["num_prefix_tokens"] + 1
    after = findings.patch_grid(moved.moved, "norm") > high_cutoff(feats)
    assert after.sum() < high[moved.held_out].sum()  # the units moved, the outliers left the grid
    assert moved.register_norm > 5 * np.median(findings.patch_grid(moved.moved, "norm"))  # onto the register


def high_cutoff(feats) -> float:
    return 5 * float(np.median(findings.patch_grid(feats, "norm")))


def test_a_second_call_reads_units_and_moved_pass_from_the_cache(bfloat16_pass, monkeypatch):
    feats, run = bfloat16_pass
    high = findings.patch_grid(feats, "norm") > high_cutoff(feats)
    first = test_time.moved_pass(feats, high, run, top_k=2)
    before = len(features.count_passes(run.cache_dir))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model ran despite a complete cache"))
    again = test_time.moved_pass(feats, high, run, top_k=2)
    assert again.neurons == first.neurons and len(features.count_passes(run.cache_dir)) == before
    np.testing.assert_array_equal(findings.patch_grid(again.moved, "norm"), findings.patch_grid(first.moved, "norm"))


def test_without_outliers_no_unit_moves_and_the_held_out_pass_is_as_released(bfloat16_pass):
    feats, run = bfloat16_pass
    nothing = np.zeros(findings.patch_grid(feats, "norm").shape, bool)
    moved = test_time.moved_pass(feats, nothing, run, top_k=2)
    assert moved.neurons == [] and moved.register_index is None and np.isnan(moved.register_norm)
    assert moved.moved.meta["num_prefix_tokens"] == feats.meta["num_prefix_tokens"]
    np.testing.assert_allclose(findings.patch_grid(moved.moved, "norm"),
                               findings.patch_grid(feats, "norm")[moved.held_out], rtol=1e-5)
    assert moved.unit_table().empty
