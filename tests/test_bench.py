"""The benchmark's bookkeeping, checked against hand-computed values (its timings are never tested)."""

import pytest

from analysis import bench, params, run

TINY = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def test_dry_run_set_replaces_every_model_and_keeps_each_page_resolution():
    giant, registers = bench.DRY_RUN_MODELS
    dry = params.dry_run_set([giant, registers], n_images=2, device="cpu")
    assert set(dry) == set(params.PAPER)
    assert dry["registers"]["models"] == [f"random:{giant}", f"random:{registers}"]
    assert dry["layer_dependence"]["model"] == f"random:{giant}"
    assert dry["object_discovery"]["resolution"] == params.PAPER["object_discovery"]["resolution"] == 224
    assert dry["norm_histogram"]["resolution"] == 448 and dry["norm_histogram"]["n_images"] == 2
    assert dry["information_probes"]["per_class"] == 1 and dry["information_probes"]["labelled_source"] == "digits"
    assert dry["census"]["controls"] == [] and dry["claims"] == {}
    for page, parameters in dry.items():  # every page accepts what the dry run passes it
        run.check_parameters(page, parameters)
        assert all(not str(m).startswith("vit") for m in parameters.get("models", []))


def test_activation_size_is_the_mlp_hidden_layer_plus_the_attention_matrix():
    # ViT-Ti/16 at 224: 197 tokens, MLP hidden 768, 3 heads; float32, 2 images
    expected = 2 * (197 * 768 + 3 * 197**2) * 4 / 2**20
    assert bench.activation_mib("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 224, 2) == pytest.approx(expected)
    # DINOv2 ViT-g/14 at 448: 1025 tokens, SwiGLU's first layer is 2 × 4096 wide, 24 heads
    expected = (1025 * 8192 + 24 * 1025**2) * 4 / 2**20
    assert bench.activation_mib("vit_giant_patch14_dinov2.lvd142m", 448, 1) == pytest.approx(expected)


def test_the_command_line_forwards_every_benchmark_option(monkeypatch, tmp_path):
    from analysis import cli

    seen = {}
    monkeypatch.setattr(bench, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    assert cli.main(["--build-dir", str(tmp_path), "bench", "--quick", "--dry-run", "--precision", "bfloat16"]) == 0
    assert seen["argv"][:4] == ["--quick", "--dry-run", "--precision", "bfloat16"]
    assert seen["argv"][4:6] == ["--out", str(tmp_path / "bench")]
    with pytest.raises(SystemExit):  # an option no command knows is still refused
        cli.main(["params", "--dry-run"])


def test_memory_target_is_the_interpreter_plus_the_model_and_table_pages_have_none():
    import pandas as pd

    runs = pd.DataFrame({"page": ["a", "b", "claims", "summary"], "peak_rss_mib": [5000.0, 9000.0, 1000.0, 1100.0],
                         "model_mib": [7000.0, 7000.0, 0.0, 0.0]})
    judged = bench.memory_targets(runs)
    assert judged.baseline_mib.tolist() == [1000.0] * 4  # the smallest table-page peak
    assert judged.target_mib.tolist()[:2] == [8000.0, 8000.0] and judged.target_mib[2:].isna().all()
    assert judged.within_target.tolist() == [True, False, True, True]  # 9000 > 8000; tables are not judged


def test_device_checks_write_only_the_gpu_ratios_with_their_targets_and_device(monkeypatch, tmp_path):
    import pandas as pd

    monkeypatch.setattr(bench, "capture_overhead", lambda device, precision="float32", weights_dir=None: {
        "metric": "capture_overhead" + ("" if precision == "float32" else "_" + precision), "value": 1.02})
    monkeypatch.setattr(bench, "position_probe_problem", lambda weights_dir: ("tokens", "labels", "problem"))
    monkeypatch.setattr(bench, "probe_fit_ratio", lambda *args, repeats, device: {"metric": "probe_fit_over_sklearn",
                                                                          "value": 0.5})
    timed = {}

    def pass_times(set_name, device, weights_dir):
        timed["set"] = set_name
        return pd.DataFrame([{"set": set_name, "id": "a", "model": "m", "kind": "features", "seconds": 2.0,
                              "estimated_seconds": 60.0, "device": "cpu", "device_type": "cpu"}])

    monkeypatch.setattr(bench, "set_pass_times", pass_times)
    assert bench.main(["--device-checks", "--device", "cpu", "--out", str(tmp_path)]) == 0
    frame = pd.read_parquet(tmp_path / "device_ratios.parquet")
    assert frame.metric.tolist() == ["capture_overhead", "capture_overhead_bfloat16", "probe_fit_over_sklearn"]
    assert frame.passed.tolist() == [True, True, False] and set(frame.device) == {"cpu"}
    assert set(frame.device_type) == {"cpu"} and frame.date.notna().all()
    assert not (tmp_path / "ratios.parquet").exists()  # the CPU benchmark's table is left alone
    assert timed["set"] == "lite"  # the lite set's passes are timed on the device by default
    assert pd.read_parquet(tmp_path / "device_passes.parquet").seconds.tolist() == [2.0]
    (tmp_path / "device_passes.parquet").unlink()
    assert bench.main(["--device-checks", "--device", "cpu", "--out", str(tmp_path), "--pass-set", "none"]) == 0
    assert not (tmp_path / "device_passes.parquet").exists()


def test_a_sets_passes_are_timed_with_random_weights_of_their_architectures(weights_dir, tmp_path, monkeypatch):
    """The device check's pass timing, on the CPU with the ci set's ViT-Ti: every pass of the plan runs (with a
    random initialisation of its model, so a pretrained pass and its random control both run), and each row holds
    the plan's estimate beside the measured seconds."""
    from analysis import models, plan

    built = []
    original = models.load_model
    monkeypatch.setattr(models, "load_model", lambda spec, **kw: built.append(spec) or original(spec, **kw))
    times = bench.set_pass_times("ci", "cpu", str(weights_dir), pages=["norm_histogram", "test_time_registers"],
                                 overrides={"n_images": 2}, workdir=tmp_path)
    planned = plan.build_plan("ci", {"n_images": 2}, str(weights_dir),
                              pages=["norm_histogram", "test_time_registers"])
    assert sorted(times.id) == sorted(planned.by_id()) and (times.outcome == "ran").all()
    assert set(built) == {f"random:{TINY}"}  # the real layout at random, never the pretrained file
    assert (times.seconds > 0).all() and (times.device_type == "cpu").all() and set(times.set) == {"ci"}
    assert times.estimated_seconds.tolist() == [planned.estimates[i].seconds for i in times.id]


def test_the_plan_travels_as_json_to_a_gpu_machine_without_the_notebook_tools(weights_dir, tmp_path):
    """A lent GPU machine has torch and timm but not nbformat or papermill, with which the plan reads the notebooks:
    `plan --json` carries the passes (parts too) and the device check times them from that file."""
    import dataclasses
    import json
    import subprocess
    import sys

    from analysis import plan

    planned = plan.build_plan("ci", {"n_images": 2}, str(weights_dir), pages=["test_time_registers"])
    data = json.loads(json.dumps(planned.as_json(), default=str))
    back = plan.plan_from_json(data)
    assert back.passes == planned.passes and [p.id for p in back.passes] == [p.id for p in planned.passes]
    assert [(p.keep, p.options, p.after) for p in back.passes] == [(p.keep, p.options, p.after) for p in planned.passes]
    assert {i: e.seconds for i, e in back.estimates.items()} == {i: e.seconds for i, e in planned.estimates.items()}
    part = dataclasses.replace(planned.passes[0], part=(2, 3))
    assert plan.pass_from_dict(json.loads(json.dumps(dataclasses.asdict(part)))).id == part.id
    (tmp_path / "plan.json").write_text(json.dumps(data))
    code = (f"import sys; sys.modules.update(nbformat=None, papermill=None, yaml=None)\n"
            f"from analysis import bench\n"
            f"times = bench.set_pass_times(device='cpu', weights_dir={str(weights_dir)!r}, "
            f"plan_file={str(tmp_path / 'plan.json')!r}, workdir={str(tmp_path / 'work')!r})\n"
            f"print(len(times), (times.outcome == 'ran').all(), 'analysis.run' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=run.ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"{len(planned.passes)} True False"
