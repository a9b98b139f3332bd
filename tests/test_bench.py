"""The benchmark's bookkeeping, checked against hand-computed values (its timings are never tested)."""

import pytest

from analysis import bench, params, run


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
    assert bench.main(["--device-checks", "--device", "cpu", "--out", str(tmp_path)]) == 0
    frame = pd.read_parquet(tmp_path / "device_ratios.parquet")
    assert frame.metric.tolist() == ["capture_overhead", "capture_overhead_bfloat16", "probe_fit_over_sklearn"]
    assert frame.passed.tolist() == [True, True, False] and set(frame.device) == {"cpu"}
    assert not (tmp_path / "ratios.parquet").exists()  # the CPU benchmark's table is left alone
