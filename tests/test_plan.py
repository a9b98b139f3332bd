"""The pass plan (analysis.plan): what the pages ask for, how it splits and merges, and the rehearsal that holds it
against the notebooks themselves; and the command line's errors (analysis.cli)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import cli, features, images, models, plan
from analysis.run import ROOT, toc_pages

TINY = models.OFFLINE_MODEL


@pytest.fixture(scope="module")
def ci_plan(weights_dir) -> plan.Plan:
    return plan.build_plan("ci", weights_dir=str(weights_dir))


def random_pass(spec: str, count: int = 8, resolution: int = 224, **fields) -> plan.Pass:
    return plan.Pass("features", spec, plan.Sample("source", "builtin", count), resolution, **fields)


# --------------------------------------------------------------------------------------------------------
# What the pages ask for.


def test_every_page_of_the_book_has_a_kind():
    assert set(plan.PAGE_KINDS) == set(toc_pages())


def test_passes_shared_by_pages_appear_once(ci_plan):
    ids = [p.id for p in ci_plan.passes]
    assert len(ids) == len(set(ids)) == len(set(ci_plan.passes))
    shared = [p for p in ci_plan.passes if p.spec == TINY and p.sample == plan.Sample("source", "builtin", 8)
              and p.kind == "features"]
    assert len(shared) == 1  # one cache entry for every page on ViT-Ti, 8 shipped photos, 224 px
    assert {"attention_maps", "norm_histogram", "layer_dependence", "training_time", "redundancy",
            "census"} <= set(shared[0].pages)
    assert list(shared[0].pages) == [p for p in toc_pages() if p in shared[0].pages]  # in _toc.yml order
    # the test-time page holds half its images out and an interval needs 8 of them: it draws 16, a pass of its own
    test_time = [p for p in ci_plan.passes if p.kind == "features" and "test_time_registers" in p.pages]
    assert [p.sample for p in test_time] == [plan.Sample("source", "builtin", 16)] and test_time[0].spec == TINY
    assert test_time[0].pages == ("test_time_registers",)


def test_each_page_asks_for_what_its_notebook_calls(ci_plan):
    by_page = {page: [p for p in ci_plan.passes if page in p.pages] for page in toc_pages()}
    probe, = by_page["information_probes"]
    assert probe.keep == ("output",) and probe.sample == plan.Sample("labelled", "digits", 20)
    discovery = [p for p in by_page["object_discovery"] if p.kind == "features"]
    assert {p.spec for p in discovery} == {TINY, f"random:{TINY}"}
    assert all(p.square and p.keep == ("keys",) and p.sample.kind == "voc" and p.batch_size == 8 for p in discovery)
    moved = [p for p in ci_plan.passes if p.kind == "intervened"]
    assert {p.option("page") for p in moved} == {"test_time_registers", "object_discovery"}
    assert all(p.spec == TINY for p in moved)  # a random control's pass is never moved
    twins = plan.page_parameters("ci", "validation")["twin_names"]  # the page's own list of twins
    assert len(twins) >= 7 and {p.plant for p in by_page["validation"]} == set(twins)
    assert all(p.sample == plan.Sample("source", images.ORIGINAL_PHOTOS_SOURCE, 12) for p in by_page["validation"])
    assert by_page["validation"][0].sample.describe() == "12 from builtin (12 named photos)"
    assert [p.sample.source for p in by_page["your_image"]] == ["builtin:chelsea"] * 2
    assert by_page["claims"] == by_page["summary"] == by_page["quality"] == []


def test_a_parameter_override_changes_the_passes_of_the_pages_that_take_it(ci_plan, weights_dir):
    smaller = plan.build_plan("ci", {"n_images": 3}, weights_dir=str(weights_dir))
    before, after = set(ci_plan.by_id()), set(smaller.by_id())
    shared = next(p for p in smaller.passes if p.spec == TINY and p.sample.kind == "source" and p.kind == "features"
                  and p.sample.source == "builtin" and p.plant is None)
    assert shared.sample.count == 3 and shared.id not in before
    untouched = [p for p in ci_plan.passes if p.sample.kind in ("labelled", "voc") or p.sample.count is None]
    assert untouched and all(p.id in after for p in untouched)  # pages without n_images keep their passes


def test_keep_is_the_union_and_pages_are_listed_once():
    asked = [("a", random_pass(f"random:{TINY}", keep=("keys",))), ("b", random_pass(f"random:{TINY}")),
             ("b", random_pass(f"random:{TINY}", keep=("output",))), ("c", random_pass(f"random:{TINY}", 4))]
    merged = plan.deduplicate(asked)
    assert len(merged) == 2
    assert merged[0].keep == ("keys", "output") and merged[0].pages == ("a", "b")
    assert merged[1].pages == ("c",) and merged[1].sample.count == 4


def test_pass_ids_are_stable_and_name_the_model():
    first, second = random_pass(f"random:{TINY}"), random_pass(f"random:{TINY}", keep=("output",), device="cpu")
    assert first.id == second.id and first.id.startswith("random-vit_tiny_patch16_224-224-")
    assert random_pass(f"random:{TINY}", plant="pinned").id != first.id
    assert random_pass(f"random:{TINY}", square=True).id != first.id


# --------------------------------------------------------------------------------------------------------
# Estimates, with known truth.


def synthetic_plan(seconds: dict[str, float], entry_bytes: int = 1000) -> plan.Plan:
    """A plan of random-init passes (nothing to download) with the given estimated seconds."""
    passes = [random_pass(f"random:{TINY}", count) for count in range(1, len(seconds) + 1)]
    estimates = {p.id: plan.Estimate(p.sample.count, s, "test", 2**30, entry_bytes)
                 for p, s in zip(passes, seconds.values())}
    return plan.Plan("test", passes, estimates, plan.Throughput({}, plan.ASSUMED_FLOPS, "test"), ["a"], {})


def test_totals_add_up():
    trial = synthetic_plan({"a": 10.0, "b": 20.0, "c": 30.5}, entry_bytes=10**6)
    totals = trial.totals()
    assert totals["seconds"] == pytest.approx(60.5)  # random weights: no download
    assert totals["memory_bytes"] == 2**30  # the largest pass, not the sum: passes run one after another
    assert totals["disk_bytes"] == plan.ENVIRONMENT_BYTES + 3 * 10**6
    assert all(totals["fits"].values())


def test_estimates_of_vit_ti_from_its_geometry():
    shape = plan.geometry(TINY, 224)
    assert (shape.tokens, shape.patches, shape.depth, shape.dim, shape.heads) == (197, 196, 12, 192, 3)
    assert shape.flops == pytest.approx(2 * (shape.params * 197 + 12 * 2 * 197**2 * 192))
    from analysis import bench

    for name, resolution in ((TINY, 224), ("vit_giant_patch14_dinov2.lvd142m", 448)):
        assert plan.geometry(name, resolution).activation_mib(4) == pytest.approx(
            bench.activation_mib(name, resolution, 4))
    probe = plan.Pass("features", TINY, plan.Sample("labelled", "digits", 20), 224, keep=("output",))
    estimate = plan.estimate(probe, plan.Throughput.load(None))
    output_npy = 200 * 197 * 192 * 4  # the ci cache's output.npy: 200 digits × tokens × channels, float32
    frames = 200 * (12 * 197 * 8 + 196 * 24 + 3 * 197 * 8)
    assert estimate.images == 200 and estimate.entry_bytes == output_npy + frames
    assert estimate.seconds_source == "FLOP model"
    assert estimate.memory_bytes == pytest.approx(
        (plan.INTERPRETER_MIB + 2 * shape.params * 4 / 2**20 + shape.activation_mib(4)) * 2**20, rel=1e-9)


def test_measured_throughput_is_used_where_present(tmp_path):
    small = "vit_small_patch14_dinov2.lvd142m"
    pd.DataFrame([{"model": small, "resolution": 224, "images": 2, "images_per_s": 4.0, "seconds": 0.5,
                   "measured": True},
                  {"model": "vit_base_patch14_dinov2.lvd142m", "resolution": 224, "images_per_s": 99.0,
                   "measured": False}]).to_parquet(tmp_path / "throughput.parquet")
    rates = plan.Throughput.load(tmp_path)
    assert rates.seconds(small, 224, 8) == (2.0, "measured")
    assert "measured by `make bench`" in rates.source
    scaled, source = rates.seconds(TINY, 224, 8)  # not measured: its FLOPs at the measured FLOP rate
    assert source == "scaled from measured"
    achieved = 4.0 * plan.geometry(small, 224).flops
    assert scaled == pytest.approx(8 * plan.geometry(TINY, 224).flops / achieved)
    assert plan.Throughput.load(tmp_path / "missing").source.startswith("FLOP model")


def test_runner_limits_are_githubs_standard_linux_runner():
    assert (plan.RUNNER.cores, plan.RUNNER.memory_bytes, plan.RUNNER.disk_bytes, plan.RUNNER.job_seconds) == \
        (4, 16 * 10**9, 14 * 10**9, 6 * 3600)


# --------------------------------------------------------------------------------------------------------
# Shards.


@pytest.mark.parametrize("count", [1, 2, 3, 5, 40])
def test_shards_are_disjoint_cover_the_plan_and_keep_dependencies_together(ci_plan, count):
    shards = ci_plan.shards(count)
    assert len(shards) == count
    ids = [p.id for shard in shards for p in shard]
    assert sorted(ids) == sorted(p.id for p in ci_plan.passes)  # every pass exactly once
    assert [[p.id for p in s] for s in ci_plan.shards(count)] == [[p.id for p in s] for s in shards]  # deterministic
    for shard in shards:
        order = [p.id for p in shard]
        for p in shard:
            if p.after:
                assert p.after in order and order.index(p.after) < order.index(p.id)


def test_shards_balance_estimated_seconds():
    trial = synthetic_plan({"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 3.0})
    loads = sorted(sum(trial.estimates[p.id].seconds for p in shard) for shard in trial.shards(2))
    assert loads == [8.0, 10.0]  # longest first, each to the least loaded shard: 5+3 | 4+3+3
    loads = [sum(trial.estimates[p.id].seconds for p in shard) for shard in trial.shards(5)]
    assert sorted(loads) == [3.0, 3.0, 3.0, 4.0, 5.0]
    with pytest.raises(plan.PlanError):
        trial.shard(3, 2)


def test_the_matrix_names_each_shards_passes_and_models(ci_plan):
    matrix = ci_plan.matrix(3)["include"]
    assert [entry["shard"] for entry in matrix] == ["1/3", "2/3", "3/3"]
    assert sorted(i for entry in matrix for i in entry["passes"].split()) == sorted(ci_plan.by_id())
    for entry in matrix:
        assert len(entry["cache_key"]) == len(entry["weights_key"]) == 16


def test_select_brings_the_pass_an_intervened_pass_needs(ci_plan):
    moved = next(p for p in ci_plan.passes if p.kind == "intervened")
    chosen = plan.select(ci_plan, [moved.id])
    assert [p.id for p in chosen] == [moved.after, moved.id]
    with pytest.raises(plan.PlanError, match="has no pass nope"):
        plan.select(ci_plan, ["nope"])
    with pytest.raises(plan.PlanError, match="K/N"):
        plan.select(ci_plan, shard="two")


# --------------------------------------------------------------------------------------------------------
# Passes in parts, and the paper set's shards (issue 23).


def test_a_long_pass_splits_into_ceil_parts_whose_id_selects_them_all():
    p = random_pass(f"random:{TINY}", 400)
    e = plan.Estimate(400, 3 * 3600 + 10.0, "test", 2**30, 10**6, load_seconds=10.0)
    count = plan.parts_needed(p, e)
    assert count == math.ceil(3 * 3600 / (3600 - 10)) == 4  # compute / (an hour less loading the weights)
    parts = plan.split(p, e, count)
    assert [q.part for q, _ in parts] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [q.id for q, _ in parts] == [f"{p.id}-part{k}of4" for k in (1, 2, 3, 4)]
    assert {q.whole for q, _ in parts} == {p} and sum(qe.images for _, qe in parts) == 400
    assert all(qe.seconds <= 3600 and qe.load_seconds == 10.0 for _, qe in parts)
    assert sum(qe.entry_bytes for _, qe in parts) == pytest.approx(10**6, abs=4)
    assert plan.parts_needed(p, dataclasses.replace(e, seconds=3000.0)) == 1  # within the hour: whole
    assert plan.parts_needed(random_pass(f"random:{TINY}", 6), dataclasses.replace(e, images=6)) == 2  # 2 batches
    trial = plan.Plan("test", [q for q, _ in parts], {q.id: qe for q, qe in parts},
                      plan.Throughput({}, plan.ASSUMED_FLOPS, "test"), ["a"], {})
    assert [q.id for q in plan.select(trial, [p.id])] == [q.id for q, _ in parts]  # the pass's id: its parts
    assert [q.id for q in plan.select(trial, [parts[1][0].id])] == [parts[1][0].id]
    assert plan.whole_where_complete(trial.passes) == [p]  # every part in one place: the whole pass, once
    assert plan.whole_where_complete(trial.passes[1:3]) == trial.passes[1:3]
    assert trial.totals()["passes"] == 1 and trial.totals()["parts"] == 4 and trial.suggested_shards() == 4
    needed = random_pass(f"random:{TINY}", 400)
    assert not plan.splittable(needed, {needed.id}) and not plan.splittable(random_pass(TINY, plant="pinned"), set())
    assert not plan.splittable(dataclasses.replace(p, kind="intervened"), set()) and plan.splittable(p, set())


@pytest.fixture(scope="module")
def paper_plan(weights_dir, tmp_path_factory) -> plan.Plan:
    """The paper plan on a machine without Imagenette (and without `make bench`'s measurements)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(images.IMAGENETTE_ENV, str(tmp_path_factory.mktemp("no_imagenette")))
        assert not images.imagenette_available()
        return plan.build_plan("paper", weights_dir=str(weights_dir))


def images_of(planned: plan.Plan) -> dict[str, int]:
    """Images of each (whole) pass: its parts' images summed."""
    counts: dict[str, int] = {}
    for p in planned.passes:
        counts[p.whole.id] = counts.get(p.whole.id, 0) + planned.estimates[p.id].images
    return counts


def test_the_paper_plan_counts_the_workflows_images_with_or_without_imagenette_here(paper_plan, weights_dir,
                                                                                      tmp_path, monkeypatch):
    counts = images_of(paper_plan)
    probe = {p.whole for p in paper_plan.passes if "information_probes" in p.pages}
    assert probe == {p.whole for p in paper_plan.passes if p.sample == plan.Sample("labelled", "imagenette", 50)}
    assert [counts[p.id] for p in probe] == [500]  # 50 per class of Imagenette's 10 classes
    drawn = {p.whole.id for p in paper_plan.passes if p.sample == plan.Sample("source", "imagenette", 100)}
    assert len(drawn) >= 30 and {counts[i] for i in drawn} == {100}  # 100 per page
    fake = tmp_path / "imagenette"  # Imagenette's layout: 10 class folders, more images than a page draws
    for label in range(10):
        (fake / f"n0{label}").mkdir(parents=True)
        for index in range(60):
            (fake / f"n0{label}" / f"{index}.JPEG").write_bytes(b"")
    monkeypatch.setenv(images.IMAGENETTE_ENV, str(fake))
    here = plan.build_plan("paper", weights_dir=str(weights_dir))
    assert [p.id for p in here.passes] == [p.id for p in paper_plan.passes]  # same passes, parts and shards
    assert images_of(here) == counts and here.suggested_shards() == paper_plan.suggested_shards()


def test_every_shard_of_the_paper_plan_fits_an_hour_and_10_gb(paper_plan):
    assert plan.SHARD_BUDGET == plan.Budget(seconds=3600, disk_bytes=10 * 10**9)
    count = paper_plan.suggested_shards()
    shards = [shard for shard in paper_plan.shards(count) if shard]
    assert sorted(p.id for shard in shards for p in shard) == sorted(paper_plan.by_id())
    for shard in shards:
        totals = paper_plan.totals(shard)
        assert totals["seconds"] <= 3600 and totals["disk_bytes"] <= 10 * 10**9, (totals, [p.id for p in shard])
        assert all(totals["fits"].values()) and all(totals["fits_shard"].values())
        giants = {p.model for p in shard if p.pretrained and "giant" in p.model}
        assert len(giants) <= 1  # two ViT-g weight files (4.5 GB each) would take a shard past 10 GB
    assert not paper_plan.too_large()
    probe = [p for p in paper_plan.passes if "information_probes" in p.pages]
    whole = plan.estimate(probe[0].whole, paper_plan.throughput)
    room = 3600 - whole.load_seconds - plan.fetch_seconds(probe[0])
    assert len(probe) == math.ceil((whole.seconds - whole.load_seconds) / room) >= 2
    assert [p.part for p in probe] == [(k, len(probe)) for k in range(1, len(probe) + 1)]
    for p in paper_plan.passes:  # every pass that runs whole fits a shard on its own
        if p.part is None:
            assert paper_plan.estimates[p.id].seconds + plan.fetch_seconds(p) <= 3600


def test_without_imagenette_the_paper_sets_class_probe_stops_in_one_line(paper_plan, weights_dir, tmp_path,
                                                                         monkeypatch, capsys):
    """The paper set's class probe draws Imagenette, never the digits: a pass of it where Imagenette is absent says
    so in one line, before any model is built."""
    monkeypatch.setenv(images.IMAGENETTE_ENV, str(tmp_path / "absent"))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("a model was built"))
    probe = next(p for p in paper_plan.passes if "information_probes" in p.pages)
    assert cli.main(["--weights-dir", str(weights_dir), "--build-dir", str(tmp_path), "pass", "--set", "paper",
                     probe.id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the imagenette image source is not on this machine") and err.count("\n") == 1


@pytest.mark.slow
def test_parts_run_apart_merge_into_the_whole_entry_and_a_page_reads_it_without_a_pass(tmp_path, weights_dir):
    """A pass split into three parts by a tighter shard budget (the paper set's long passes split the same way):
    each part runs into its own cache, the caches merge into the book's, and the page that asks for the pass reads
    the joined entry - the same frames and arrays as the whole pass - and runs no model."""
    from analysis.run import run_page
    from analysis.params import SETS

    overrides = {"models": [TINY], "n_images": 12}
    asked = plan.build_plan("ci", overrides, str(weights_dir), pages=["norm_histogram"])
    whole, = asked.passes
    e = asked.estimates[whole.id]
    budget = plan.Budget(e.load_seconds + plan.fetch_seconds(whole) + (e.seconds - e.load_seconds) / 2.5, 10**10)
    split = plan.build_plan("ci", overrides, str(weights_dir), pages=["norm_histogram"], budget=budget)
    assert [p.part for p in split.passes] == [(1, 3), (2, 3), (3, 3)]
    for index, shard in enumerate(split.shards(3), start=1):
        assert plan.run_passes(shard, tmp_path / f"machine{index}", weights_dir, progress=False)[0]["ran"]
    merged = plan.merge_caches([tmp_path / f"machine{i}" for i in (1, 2, 3)], tmp_path / "build" / "cache")
    assert merged["parts"] == 3 and merged["assembled"] == 1 and merged["log_lines"] == 3

    plan.run_passes([whole], tmp_path / "whole", weights_dir, progress=False)
    run = features.RunOptions("builtin", 12, 224, weights_dir=weights_dir, progress=False, allow_hub=False)
    reference = features.extract(TINY, run.replace(cache_dir=tmp_path / "whole"))
    joined = features.extract(TINY, run.replace(cache_dir=tmp_path / "build" / "cache"))
    for name in features.FRAMES:
        pd.testing.assert_frame_equal(getattr(joined, name), getattr(reference, name))
    assert {k: v for k, v in joined.meta.items() if k != "assembled_from"} == reference.meta

    before = plan.log_length(tmp_path / "build" / "cache")
    executed = run_page("norm_histogram", {**SETS["ci"]["norm_histogram"], **overrides}, tmp_path / "build",
                        str(weights_dir))
    assert executed.is_file() and plan.log_length(tmp_path / "build" / "cache") == before  # the page ran no pass


# --------------------------------------------------------------------------------------------------------
# Merging caches.


def fake_entry(cache: Path, name: str, kept: list[str], marker: str = "") -> Path:
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"kept": kept, "marker": marker}))
    (folder / "norms.parquet").write_bytes(b"x" * 10)
    return folder


def test_merge_copies_missing_entries_and_keeps_the_one_with_more_arrays(tmp_path):
    first, second, into = tmp_path / "one", tmp_path / "two", tmp_path / "into"
    fake_entry(first, "m-aaaa", [], "first")
    fake_entry(first, "m-bbbb", ["keys"], "first")
    fake_entry(second, "m-bbbb", ["keys", "output"], "second")  # a superset: replaces
    fake_entry(second, "m-cccc", [], "second")
    fake_entry(into, "m-cccc", ["output"], "into")  # already there with more: stays
    (first / ".tmp-m-dddd-99999-abcdef12").mkdir()  # a writer's temporary folder: never merged
    planted = first / "planted_voc" / "JPEGImages"
    planted.mkdir(parents=True)
    (planted / "planted_0000.jpg").write_bytes(b"jpg")
    (second / "m-units-1234.json").write_text("[]")
    (first / "passes.jsonl").write_text('{"spec": "a"}\n{"spec": "b"}\n')
    (second / "passes.jsonl").write_text('{"spec": "c"}\n')
    (into / "passes.jsonl").write_text('{"spec": "old"}\n')

    counts = plan.merge_caches([first, second], into)

    assert counts == {"copied": 2, "replaced": 1, "kept": 1, "folders": 1, "files": 1, "parts": 0, "assembled": 0,
                      "log_lines": 3}
    marker = {name: json.loads((into / name / "meta.json").read_text())["marker"]
              for name in ("m-aaaa", "m-bbbb", "m-cccc")}
    assert marker == {"m-aaaa": "first", "m-bbbb": "second", "m-cccc": "into"}
    assert (into / "planted_voc" / "JPEGImages" / "planted_0000.jpg").read_bytes() == b"jpg"
    assert (into / "m-units-1234.json").read_text() == "[]"
    assert plan.log_length(into) == 4 and not list(into.glob(".*"))  # nothing temporary left behind
    again = plan.merge_caches([first], into)  # entries are content-addressed: nothing to copy twice
    assert again["copied"] == again["replaced"] == 0 and again["kept"] == 2
    moved = plan.merge_caches([second], tmp_path / "elsewhere", move=True)
    assert moved["copied"] == 2 and not (second / "m-bbbb").exists() and (tmp_path / "elsewhere" / "m-bbbb").is_dir()
    with pytest.raises(plan.PlanError):
        plan.merge_caches([into], into)
    with pytest.raises(plan.PlanError):
        plan.merge_caches([tmp_path / "absent"], into)


def test_parts_that_name_one_entry_but_different_passes_are_refused(tmp_path):
    for index, request in ((1, {"images": "a:4"}), (2, {"images": "b:4"})):
        folder = tmp_path / f"machine{index}" / features.PARTS_DIR / "m-aaaa" / f"{index:03d}-of-002"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"part": {"index": index, "count": 2, "start": 0, "stop": 2},
                                                      "images": [{}, {}], "kept": [], "request": request}))
    with pytest.raises(plan.PlanError, match="asked for different passes"):
        plan.merge_caches([tmp_path / "machine1", tmp_path / "machine2"], tmp_path / "into")
    assert not (tmp_path / "into" / "m-aaaa").exists()  # nothing joined; the parts stay for a look


def test_a_planted_set_built_in_two_folders_has_one_cache_key(tmp_path):
    """Two shards build the object-discovery page's planted set, each in its own cache folder at its own time:
    the image fingerprints (id + bytes, not path or mtime) agree, so both shards' entries share one key."""
    first = plan.voc_records(None, None, 4, 0, tmp_path / "one")
    time.sleep(0.01)  # a later modification time
    second = plan.voc_records(None, None, 4, 0, tmp_path / "two")
    assert len(first) == 4 and first[0].origin != second[0].origin
    assert images.image_set_key(first) == images.image_set_key(second)
    edited = Path(second[0].origin)
    edited.write_bytes(edited.read_bytes() + b"\0")  # one more byte: another image, another key
    assert images.image_set_key(first) != images.image_set_key(plan.voc_records(None, None, 4, 0, tmp_path / "two"))


# --------------------------------------------------------------------------------------------------------
# The command line: plan, pass, merge.


def test_plan_command_prints_totals_json_and_the_github_matrix(tmp_path, weights_dir, capsys):
    output = tmp_path / "github_output"
    assert cli.main(["--weights-dir", str(weights_dir), "--build-dir", str(tmp_path), "plan", "--set", "ci",
                     "--json", "--shards", "3", "--github-output", str(output)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["set"] == "ci" and printed["shards"] == 3 and len(printed["passes"]) >= 17
    assert set(printed["totals"]["fits"]) == {"time", "memory", "disk"}
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert json.loads(lines["matrix"]) == printed["matrix"] and lines["shards"] == "3"
    assert cli.main(["--weights-dir", str(weights_dir), "--build-dir", str(tmp_path), "plan", "--set", "ci"]) == 0
    table = capsys.readouterr().out
    assert "total on one runner" in table and "16.0 GB" in table and "shard" in table


def test_pass_and_merge_commands_fill_and_join_caches(tmp_path, weights_dir, capsys):
    ci = plan.build_plan("ci", weights_dir=str(weights_dir))
    chosen = [p for p in ci.passes if p.spec == f"random:{TINY}" and p.sample.source == "builtin:chelsea"]
    assert len(chosen) == 1
    common = ["--weights-dir", str(weights_dir), "--build-dir", str(tmp_path)]
    assert cli.main(common + ["pass", "--set", "ci", chosen[0].id, "--cache", str(tmp_path / "a")]) == 0
    assert "1 ran" in capsys.readouterr().out
    assert cli.main(common + ["pass", "--set", "ci", chosen[0].id, "--cache", str(tmp_path / "a")]) == 0
    assert "0 ran, 1 were cached" in capsys.readouterr().out
    assert cli.main(common + ["merge", str(tmp_path / "a"), "--into", str(tmp_path / "b")]) == 0
    assert len(features.count_passes(tmp_path / "b")) == 1 and len(list((tmp_path / "b").glob("vit_*"))) == 1


# --------------------------------------------------------------------------------------------------------
# The command line's errors (issue #18): one line for what the user asked for, a traceback for a bug.


def test_a_user_error_is_one_line(monkeypatch, capsys):
    from analysis.run import ParameterError

    def refuse(*args, **kwargs):
        raise ParameterError("page 'norm_histogram' has no parameter 'n_image'")

    monkeypatch.setattr(cli, "run_page", refuse)
    assert cli.main(["run", "norm_histogram", "-p", "n_image", "3"]) == 2
    err = capsys.readouterr().err
    assert err == "error: page 'norm_histogram' has no parameter 'n_image'\n"


def test_a_failed_page_is_one_line_but_another_runtime_error_is_a_bug(monkeypatch, capsys):
    def failed(*args, **kwargs):
        raise RuntimeError("page 'norm_histogram' failed in cell 4 (ValueError: no); executed notebook kept at x")

    monkeypatch.setattr(cli, "run_page", failed)
    assert cli.main(["run", "norm_histogram"]) == 2
    assert capsys.readouterr().err.startswith("error: page 'norm_histogram' failed in cell 4")

    def bug(*args, **kwargs):
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(cli, "run_page", bug)
    with pytest.raises(RuntimeError, match="dictionary changed size"):
        cli.main(["run", "norm_histogram"])
    monkeypatch.setattr(cli, "run_page", lambda *a, **k: {}["missing"])
    with pytest.raises(KeyError):  # a ValueError/KeyError/... from a bug keeps its traceback too
        cli.main(["run", "norm_histogram"])


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_user_error(monkeypatch, capsys, where):
    from analysis.images import ImageError

    def refuse(*args, **kwargs):
        raise ImageError("image folder /nowhere does not exist")

    monkeypatch.setattr(cli, "run_page", refuse)
    argv = ["--debug", "run", "norm_histogram"] if where == "before" else ["run", "norm_histogram", "--debug"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in refuse" in err
    assert err.rstrip().endswith("error: image folder /nowhere does not exist")


def test_the_real_command_line_gives_one_line_and_debug_the_traceback(tmp_path):
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "analysis", "--build-dir", str(tmp_path), *argv],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    user = run("pass", "--set", "ci", "--shard", "4/3")
    assert user.returncode == 2 and user.stderr.strip().splitlines() == ["error: shard 4/3: K must be between 1 and N"]
    shown = run("--debug", "pass", "--set", "ci", "--shard", "4/3")
    assert shown.returncode == 2 and "Traceback" in shown.stderr and "PlanError" in shown.stderr
    missing = run("merge", str(tmp_path / "absent"), "--into", str(tmp_path / "into"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: cache folder") and "Traceback" not in \
        missing.stderr


# --------------------------------------------------------------------------------------------------------
# The rehearsal: the ci plan in three processes, merged, then the book from the merged cache with no pass.


def page_verdicts(results: Path) -> dict[str, list[str]]:
    return {path.name[: -len("_claims.parquet")]: list(pd.read_parquet(path).verdict)
            for path in sorted(results.glob("*_claims.parquet"))}


@pytest.mark.slow
def test_shards_on_three_machines_merge_into_a_book_that_runs_no_pass(tmp_path, weights_dir):
    """Each shard runs in its own process with its own build folder, as on its own machine (image fingerprints
    are contents, not paths). Their caches are merged (moved) into the book's and then deleted, so nothing can be
    read from where a shard ran. The merged cache must let every page read its passes: the build runs zero model
    passes and reaches the verdicts of a plain build (tests/test_pages.py's CI_VERDICTS, asserted there on a plain
    build of the ci book)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_pages import CI_VERDICTS

    build = tmp_path / "build"
    environment = {**os.environ, models.WEIGHTS_DIR_ENV: str(weights_dir), "HF_HUB_OFFLINE": "1"}
    shards = []
    for index in (1, 2, 3):
        machine = tmp_path / f"machine{index}"
        result = subprocess.run(
            [sys.executable, "-m", "analysis", "--build-dir", str(machine), "pass", "--set", "ci", "--shard",
             f"{index}/3"], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        shards.append(machine / "cache")
    ran = [plan.log_length(folder) for folder in shards]
    assert all(ran), f"a shard ran nothing: {ran}"

    merged = plan.merge_caches(shards, build / "cache", move=True)
    assert merged["log_lines"] == sum(ran)
    for index in (1, 2, 3):
        shutil.rmtree(tmp_path / f"machine{index}")
    before = plan.log_length(build / "cache")
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "--build-dir", str(build), "build", "--set", "ci", "--no-html",
         "--expect-cached"], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=3600)
    new = (build / "cache" / "passes.jsonl").read_text().splitlines()[before:]
    assert result.returncode == 0 and not new, (new, result.stdout[-3000:] + result.stderr[-3000:])

    verdicts = page_verdicts(build / "results")
    assert {page: verdicts.get(page) for page in CI_VERDICTS} == CI_VERDICTS
    validation = pd.read_parquet(build / "results" / "validation.parquet")
    twins = plan.page_parameters("ci", "validation")["twin_names"]
    from test_validation import KNOWN_MISJUDGED

    assert set(validation[validation.misjudged].twin) == set(KNOWN_MISJUDGED) and validation.twin.nunique() == len(twins)


def test_quality_page_is_committed_without_outputs_and_reads_the_plan():
    import nbformat

    notebook = nbformat.read(ROOT / "book" / "quality.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    source = "\n".join(c.source for c in notebook.cells)
    assert "pass_plan.build_plan(name, bench_dir=folder)" in source and 'parameter_set = "ci"' in source
    assert '["ci", "lite", "paper", parameter_set]' in source  # the three sets' totals, whichever was built
    for key in ("plan_sentence", "paper_passes", "paper_parts", "paper_hours", "lite_passes", "lite_minutes",
                "shard_hours", "shard_disk_gb", "runner_memory_gb", "runner_disk_gb", "gpu_sentence"):
        assert f"`{key}" in source and f"{key}=" in source
    assert '"device_ratios.parquet"' in source and '"device_passes.parquet"' in source
