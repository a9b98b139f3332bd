"""The cached pass: tidy frames, real-model facts, cache reuse and interrupted writes."""

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import features, hooks, images, models

TINY = models.OFFLINE_MODEL


def test_frames_are_tidy_and_split_prefix_from_patches(tiny_features):
    f = tiny_features
    assert f.depth == 12 and f.grid == (14, 14)
    assert len(f.norms) == 8 * 12 * 197
    counts = f.norms[f.norms.block == 0].kind.value_counts()
    assert counts["cls"] == 8 and counts["patch"] == 8 * 196 and "register" not in counts
    assert (f.patch_rows(-1).kind == "patch").all() and len(f.patch_rows(-1)) == 8 * 196
    assert len(f.patches) == 8 * 196 and f.patches.row.max() == 13 and f.patches.col.max() == 13
    assert set(f.attention["head"]) == {0, 1, 2}


def test_real_vit_tiny_has_the_artifact_where_the_readme_says(tiny_features):
    """../shared/weights/README: blocks 0-6 max <= 27; from block 7 ~2 % of patches at ~560."""
    patch = tiny_features.norms[tiny_features.norms.kind == "patch"]
    per_layer = patch.groupby("block").norm
    assert per_layer.max().iloc[:7].max() <= 30
    last = tiny_features.patch_rows(-1).norm
    share = (last > 150).mean()
    assert 0.01 <= share <= 0.04
    assert 450 <= last.max() <= 700 and 10 <= last.median() <= 25


def test_cls_attention_matches_the_attention_frame(tiny_features):
    f = tiny_features
    mean = f.attention[f.attention.kind == "patch"].groupby(["image_id", "token"]).attention.mean()
    merged = f.patches.set_index(["image_id", "token"]).cls_attention
    pd.testing.assert_series_equal(merged.sort_index(), mean.sort_index(), check_names=False, rtol=1e-5)


def test_cache_is_reused_without_running_the_model(weights_dir, tmp_path, monkeypatch):
    first = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model ran despite a cache hit"))
    again = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    pd.testing.assert_frame_equal(first.norms, again.norms)
    assert again.provenance == first.provenance


def test_cache_key_changes_with_what_was_measured(weights_dir):
    provenance = models.resolve_weights(TINY, weights_dir=weights_dir)
    base = features.cache_key(provenance, TINY, "images-a", 224)
    assert base != features.cache_key(provenance, TINY, "images-b", 224)
    assert base != features.cache_key(provenance, TINY, "images-a", 448)
    assert base != features.cache_key(provenance, f"random:{TINY}", "images-a", 224)


def test_interrupted_write_leaves_no_entry_and_the_next_run_recovers(weights_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = features.EntryWriter.add_batch

    def dies_on_second_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first batch is already on disk
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(features.EntryWriter, "add_batch", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False, batch_size=1), keep=("output",))
    assert list(tmp_path.iterdir()) == []  # neither an entry nor a temporary folder
    monkeypatch.setattr(features.EntryWriter, "add_batch", original)
    result = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False, batch_size=1), keep=("output",))
    assert len(result.patches) == 2 * 196 and len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1
    assert len(features.count_passes(tmp_path)) == 1  # the interrupted pass wrote nothing, so it is not counted


def test_two_runs_give_identical_numbers(weights_dir, tmp_path):
    one = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path / "a", progress=False))
    two = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path / "b", progress=False))
    pd.testing.assert_frame_equal(one.norms, two.norms, check_exact=True)
    pd.testing.assert_frame_equal(one.patches, two.patches, check_exact=True)


def test_bad_resolution_is_refused_before_running(weights_dir, tmp_path):
    with pytest.raises(images.ImageError, match="multiple of the patch size 16"):
        features.extract(TINY, features.RunOptions("builtin", 1, 200, weights_dir=weights_dir, cache_dir=tmp_path))


KILLED_WRITER = """
import os, sys, time
import numpy as np
import pandas as pd
from analysis import features
original = features.EntryWriter.add_batch
def slow(self, *args, **kwargs):
    original(self, *args, **kwargs)
    print("WRITING", flush=True)
    time.sleep(120)  # killed here, between two batches of the entry
features.EntryWriter.add_batch = slow
features.extract({spec!r}, features.RunOptions("builtin", 2, 224, weights_dir={weights!r}, cache_dir={cache!r},
                                               progress=False, batch_size=1))
"""


def test_a_killed_run_leaves_no_entry_and_the_next_run_cleans_up(weights_dir, tmp_path):
    import signal
    import subprocess
    import sys

    code = KILLED_WRITER.format(spec=TINY, weights=str(weights_dir), cache=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "WRITING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")  # a partial write, not an entry
    result = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    assert len(result.patches) == 2 * 196
    names = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert len(names) == 1 and not names[0].startswith(".tmp-")  # the abandoned write was removed


def test_kept_arrays_extend_an_entry_once(weights_dir, tmp_path):
    """A page asking for output tokens after another page cached the reductions: one more pass, then none."""
    first = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    assert first.arrays == {}
    kept = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False), keep=("output",))
    assert kept.arrays["output"].shape == (2, 197, 192)
    again = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    assert "output" in again.arrays and len(features.count_passes(tmp_path)) == 2
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_streamed_entry_equals_one_batch_and_arrays_are_memory_mapped(weights_dir, tmp_path):
    """Batch by batch on disk (1 image a batch) gives the very numbers of one 3-image batch; kept tokens
    come back memory-mapped, in image order, and match a direct hooked pass."""
    one_by_one = features.extract(TINY, features.RunOptions("builtin", 3, 224, weights_dir=weights_dir, cache_dir=tmp_path / "a", progress=False, batch_size=1), keep=("output",))
    together = features.extract(TINY, features.RunOptions("builtin", 3, 224, weights_dir=weights_dir, cache_dir=tmp_path / "b", progress=False, batch_size=3), keep=("output",))
    pd.testing.assert_frame_equal(one_by_one.norms, together.norms, check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(one_by_one.patches, together.patches, check_exact=False, rtol=1e-4)
    output = one_by_one.arrays["output"]
    assert isinstance(output, np.memmap) and output.shape == (3, 197, 192)
    np.testing.assert_allclose(output, together.arrays["output"], rtol=1e-4, atol=1e-4)
    # row i of the array is image i of the pass: its last-block patch norms (before the final norm) differ,
    # but the image order must agree with the frames' order
    order = [image["image_id"] for image in one_by_one.meta["images"]]
    assert list(one_by_one.patches.image_id.unique()) == order
    assert not np.allclose(output[0], output[1])


def test_predicted_class_is_the_classifier_top1_and_minus_one_without_a_head(weights_dir, tmp_path):
    feats = features.extract(TINY, features.RunOptions("builtin", 3, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    model, _ = models.load_model(TINY, weights_dir=weights_dir)
    pixels = images.pixel_batch(images.records_of(feats.meta["images"]), model, 224)
    with torch.inference_mode():
        expected = model(pixels).argmax(-1).numpy()
    np.testing.assert_array_equal(feats.predicted_class, expected)
    model.reset_classifier(0)  # a backbone without a head, as DINO and DINOv2 are released
    assert hooks.capture_tokens(model, pixels[:2]).predicted_class.tolist() == [-1, -1]


def test_bfloat16_runs_only_within_its_norm_tolerance(weights_dir, tmp_path):
    """bfloat16 autocast on the CPU: accepted at the stated 2 % tolerance (its measured deviation is noted and
    small but not zero), refused when the tolerance is tighter than what it measures, and cached apart."""
    exact = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False))
    mixed = features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False, precision="bfloat16"))
    deviation = mixed.meta["norm_deviation"]
    assert 0 < deviation <= features.PRECISION_TOLERANCE and exact.meta["norm_deviation"] is None
    assert any("bfloat16" in note for note in mixed.notes)
    relative = (mixed.patches.norm - exact.patches.norm).abs() / exact.patches.norm
    assert 0 < relative.median() < 0.01
    assert len(features.count_passes(tmp_path)) == 2  # its own cache entry, not float32's
    model, _ = models.load_model(TINY, weights_dir=weights_dir)
    pixels = images.pixel_batch(images.records_of(exact.meta["images"]), model, 224)
    with pytest.raises(features.PrecisionError, match="more than the 0.[0-9]% allowed"):
        features.check_precision(model, pixels, "bfloat16", TINY, tolerance=deviation / 2)
    assert features.check_precision(model, pixels, "float32", TINY, tolerance=0.0) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        features.extract(TINY, features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, precision="fp8"))


@pytest.mark.parametrize("model", [TINY, f"random:{TINY}", f"{TINY}@/weights/step_1000.safetensors"])
def test_a_checkpoint_names_one_spec_whatever_form_the_model_takes(model, monkeypatch):
    """`random:` on the model itself used to become `random:random:<name>`; `name@path` lost its path."""
    calls = []
    monkeypatch.setattr(features, "extract", lambda spec, run, **options: calls.append((spec, options)))
    run = features.RunOptions()
    for checkpoint in ("random", "pretrained", "/weights/step_2000.safetensors"):
        features.extract_checkpoint(model, checkpoint, run)
    assert calls[0] == (f"random:{TINY}", {})
    assert calls[1] == (model, {})
    assert calls[2] == (model, {"weights_file": "/weights/step_2000.safetensors"})


def test_without_the_weights_an_entry_computed_elsewhere_is_read_with_its_recorded_provenance(weights_dir, tmp_path,
                                                                                                monkeypatch):
    run = features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path, progress=False)
    computed = features.extract(TINY, run)  # the shard that had the weights
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model ran despite a recorded entry"))
    monkeypatch.setattr(models, "resolve_weights", lambda *a, **k: pytest.fail("weights looked up"))
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setattr(models, "_in_hf_cache", lambda name: False)
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    assert not models.weights_available(TINY, empty)
    read = features.extract(TINY, run.replace(weights_dir=empty))  # the book job, without them
    assert read.provenance == computed.provenance and read.meta["request"]["spec"] == TINY
    pd.testing.assert_frame_equal(read.patches, computed.patches)
    with pytest.raises(pytest.fail.Exception):  # another image sample was never computed: the weights are needed
        features.extract(TINY, run.replace(weights_dir=empty, n_images=3))


def test_a_checkpoint_entry_is_never_read_back_as_the_released_weights(weights_dir, tmp_path, monkeypatch):
    import shutil

    checkpoint = tmp_path / "step_500.safetensors"
    shutil.copy(weights_dir / f"{TINY}.safetensors", checkpoint)
    run = features.RunOptions("builtin", 2, 224, weights_dir=weights_dir, cache_dir=tmp_path / "cache", progress=False)
    computed = features.extract(TINY, run, weights_file=checkpoint)  # the shard that had the checkpoint
    checkpoint.unlink()
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setattr(models, "_in_hf_cache", lambda name: False)
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model ran despite a recorded entry"))
    elsewhere = run.replace(weights_dir=empty)
    assert features.extract(TINY, elsewhere, weights_file=checkpoint).meta["request"]["weights_file"] == checkpoint.name
    assert computed.meta["request"]["weights_file"] == checkpoint.name
    with pytest.raises(models.WeightsNotFoundError):  # the released weights were never computed: not the checkpoint
        features.extract(TINY, elsewhere)


def test_an_entry_made_where_the_images_sat_elsewhere_is_read_here_and_points_at_this_copy(weights_dir, tmp_path,
                                                                                             monkeypatch):
    from PIL import Image

    there, here = tmp_path / "machine1" / "photos", tmp_path / "machine2" / "photos"
    there.mkdir(parents=True)
    for name in ("chelsea", "coffee"):
        Image.fromarray(images.BUILTIN_PHOTOS[name]()).save(there / f"{name}.png")
    cache = tmp_path / "cache"
    computed = features.extract(TINY, features.RunOptions(there, None, 224, weights_dir=weights_dir, cache_dir=cache,
                                                          progress=False))
    here.parent.mkdir()
    there.rename(here)  # the same files, another machine's folder; the recorded paths no longer exist
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model ran despite a cache hit"))
    read = features.extract(TINY, features.RunOptions(here, None, 224, weights_dir=weights_dir, cache_dir=cache,
                                                      progress=False))
    pd.testing.assert_frame_equal(read.norms, computed.norms)
    assert sorted(image["origin"] for image in read.meta["images"]) == [str(here / "chelsea.png"),
                                                                        str(here / "coffee.png")]
    for record in images.records_of(read.meta["images"]):  # what reads pixels later reads this machine's copy
        assert np.array_equal(np.asarray(record.load()), images.BUILTIN_PHOTOS[record.image_id]())
    # the same on a machine without the weights (the book job reads what a shard computed)
    monkeypatch.setattr(models, "resolve_weights", lambda *a, **k: pytest.fail("weights looked up"))
    monkeypatch.setattr(models, "_in_hf_cache", lambda name: False)
    monkeypatch.delenv(models.WEIGHTS_DIR_ENV, raising=False)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    recorded = features.extract(TINY, features.RunOptions(here, None, 224, weights_dir=empty, cache_dir=cache,
                                                          progress=False))
    assert sorted(image["origin"] for image in recorded.meta["images"]) == [str(here / "chelsea.png"),
                                                                            str(here / "coffee.png")]


# --------------------------------------------------------------------------------------------------------
# A pass in parts (issue 23): image ranges run apart, joined into the entry of the whole pass.


def test_part_spans_are_whole_batches_that_cover_the_sample_in_order():
    for n_images, batch, count in [(10, 2, 3), (500, 4, 8), (100, 4, 2), (12, 4, 3), (3, 4, 2)]:
        spans = [features.part_span(n_images, batch, index, count) for index in range(1, count + 1)]
        assert spans[0][0] == 0 and spans[-1][1] == n_images
        assert all(one[1] == two[0] for one, two in zip(spans, spans[1:]))  # contiguous, in order
        assert all(start % batch == 0 for start, _ in spans)  # each part's batches are the whole pass's batches
    assert [features.part_span(500, 4, index, 8) for index in (1, 2, 8)] == [(0, 60), (60, 124), (436, 500)]
    assert features.part_span(3, 4, 1, 2) == (0, 0)  # fewer batches than parts: an empty part
    with pytest.raises(ValueError):
        features.part_span(10, 2, 4, 3)


def test_a_pass_run_in_parts_on_three_machines_joins_into_the_whole_pass_entry(weights_dir, tmp_path, monkeypatch):
    """Three parts of one pass, each in its own cache folder (as on its own machine), merged into a fourth: the
    joined entry has the whole pass's folder (cache key), frames, arrays and meta, and reading it runs no model."""
    from analysis import plan

    run = features.RunOptions("builtin", 6, 224, weights_dir=weights_dir, progress=False, batch_size=2,
                              allow_hub=False)
    whole = features.extract(TINY, run.replace(cache_dir=tmp_path / "whole"), keep=("output",))
    whole_folder, = [p for p in (tmp_path / "whole").iterdir() if p.is_dir()]
    for index in (1, 2, 3):
        folder = features.extract_part(TINY, run.replace(cache_dir=tmp_path / f"machine{index}"), (index, 3),
                                       keep=("output",))
        assert folder.parent.name == whole_folder.name and folder.parent.parent.name == features.PARTS_DIR
        assert features.count_passes(tmp_path / f"machine{index}").part.tolist() == [f"{index}/3"]

    waiting = plan.merge_caches([tmp_path / "machine1", tmp_path / "machine3"], tmp_path / "book")
    assert waiting["parts"] == 2 and waiting["assembled"] == 0  # an incomplete set waits for the rest
    assert not (tmp_path / "book" / whole_folder.name).exists()
    joined_now = plan.merge_caches([tmp_path / "machine2"], tmp_path / "book")
    assert joined_now["parts"] == 1 and joined_now["assembled"] == 1
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == ["passes.jsonl", whole_folder.name]

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model ran despite the joined entry"))
    joined = features.extract(TINY, run.replace(cache_dir=tmp_path / "book"), keep=("output",))
    for name in features.FRAMES:
        pd.testing.assert_frame_equal(getattr(joined, name), getattr(whole, name))
    np.testing.assert_array_equal(joined.arrays["output"], whole.arrays["output"])
    meta = dict(joined.meta)
    sources = meta.pop("assembled_from")
    assert meta == whole.meta
    assert [(s["part"], s["images"]) for s in sources] == [("1/3", [0, 2]), ("2/3", [2, 4]), ("3/3", [4, 6])]
    assert features.extract_part(TINY, run.replace(cache_dir=tmp_path / "book"), (2, 3), keep=("output",)) == \
        tmp_path / "book" / whole_folder.name  # the whole entry is there: a part has nothing to run
