"""Every page runs under papermill with an overridden parameter; bad parameters are clear errors."""

import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from analysis import params, run
from analysis.pages import FINDINGS, PAGES

#: One override per page, and what it must change in the page's saved table.
OVERRIDES = {
    "attention_maps": ({"n_images": 3, "n_show": 2}, lambda t: set(t["head"]) >= {"mean", "0"}),
    "norm_histogram": ({"n_images": 3}, lambda t: (t.images == 3).all()),
    "layer_dependence": ({"resolution": 160}, lambda t: len(t) == 12),
    "model_size": ({"models": ["random:vit_small_patch14_dinov2.lvd142m", params.TINY], "n_images": 2},
                   lambda t: list(t.random_weights) == [True, False]),
    "training_time": ({"training_fractions": [0.0, 0.9]}, lambda t: list(t.training_fraction) == [0.0, 0.9]),
    "redundancy": ({"adaptive": False, "threshold": 100.0}, lambda t: ((t.norm > 100) == t.high_norm).all()),
    "registers": ({"n_images": 2, "resolution": 112}, lambda t: len(t) == 2),
    "information_probes": ({"per_class": 6}, lambda t: set(t.probe) >= {"position top-1", "class accuracy"}),
    "test_time_registers": ({"top_k": 1}, lambda t: len(t) == 1),
    "claims": ({"parameter_set": "custom"}, lambda t: len(t) >= 1 and set(t.page) <= set(FINDINGS)),
    "object_discovery": ({"n_discovery": 4, "test_time_register": False}, lambda t: list(t.images) == [4, 4]),
    "summary": ({"n_images": 4}, lambda t: len(t) == 4 and t.page.iloc[0] == "norm_histogram"),
    "your_image": ({"image": "builtin:coffee"}, lambda t: len(t) == 2),
    "quality": ({"bench_dir": "/nonexistent"}, lambda t: len(t) == 0),
}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("build")


def glued_keys(notebook):
    keys = set()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if scrapbook:
                keys.add(scrapbook["name"])
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_runs_with_an_override(page, build_dir, weights_dir):
    override, check = OVERRIDES[page]
    parameters = {**params.CI[page], **override}
    output = run.run_page(page, parameters, build_dir, str(weights_dir))
    notebook = nbformat.read(output, as_version=4)
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all(f"{key} = " in injected[0].source for key in override)
    table = pd.read_parquet(build_dir / "results" / f"{page}.parquet")
    assert check(table), table
    assert "verdict" in glued_keys(notebook) and "weights" in glued_keys(notebook)


@pytest.mark.slow
def test_unchanged_page_is_not_executed_again(build_dir, weights_dir, capsys):
    run.run_page("layer_dependence", params.CI["layer_dependence"], build_dir, str(weights_dir))
    run.run_page("layer_dependence", params.CI["layer_dependence"], build_dir, str(weights_dir))
    assert "unchanged, reusing" in capsys.readouterr().out


def test_unknown_parameter_is_refused_with_the_known_ones():
    with pytest.raises(run.ParameterError, match="no parameter 'n_imgs'; it takes: .*n_images"):
        run.check_parameters("norm_histogram", {"n_imgs": 3})


@pytest.mark.parametrize("bad", [0, -5, "high", True])
def test_threshold_must_be_positive(bad):
    with pytest.raises(run.ParameterError, match="threshold must be a positive number"):
        run.check_parameters("norm_histogram", {"threshold": bad})


def test_unknown_page():
    with pytest.raises(run.ParameterError, match="unknown page"):
        run.notebook_path("histograms")


def test_every_parameter_line_is_understood_by_papermill():
    """A parameters cell papermill cannot parse would silently drop that name from overrides."""
    for page in PAGES:
        source = next(c.source for c in nbformat.read(run.notebook_path(page), 4).cells
                      if "parameters" in c.metadata.get("tags", []))
        assigned = {line.split("=")[0].strip() for line in source.splitlines() if "=" in line and not line.startswith("#")}
        assert assigned == set(run.declared_parameters(page)), page


def test_committed_notebooks_have_no_outputs():
    for page in PAGES:
        notebook = nbformat.read(run.notebook_path(page), 4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in notebook.cells if c.cell_type == "code")


def test_cli_reports_a_bad_parameter_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "--build-dir", str(tmp_path), "run", "norm_histogram", "-p", "threshold", "-1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: threshold must be a positive number (the paper uses 150), got -1"]


def test_parse_value():
    assert run.parse_value("12") == 12 and run.parse_value("0.5") == 0.5
    assert run.parse_value('["a", "b"]') == ["a", "b"] and run.parse_value("None") is None
    assert run.parse_value("/some/folder") == "/some/folder"
