"""What a build tells the person who runs it: no kernel-transport warning, one line per page, a summary, run times."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from analysis import run
from analysis.report import write_parquet


def test_run_time_words():
    assert run.run_time_words(0.4) == "0 s"
    assert run.run_time_words(42.4) == "42 s"
    assert run.run_time_words(60) == "1 min"
    assert run.run_time_words(125) == "2 min 5 s"
    assert run.run_time_words(3600) == "1 h"
    assert run.run_time_words(3725) == "1 h 2 min"


def test_verdict_counts_in_the_verdicts_order_and_no_claims(tmp_path):
    assert run.verdict_counts("norm_histogram", tmp_path) == {}
    assert run.counts_words({}) == "no claims"
    claims = pd.DataFrame({"verdict": ["not testable", "reproduced", "inconclusive", "reproduced"]})
    write_parquet(claims, tmp_path / "results" / "norm_histogram_claims.parquet")
    counts = run.verdict_counts("norm_histogram", tmp_path)
    assert counts == {"reproduced": 2, "inconclusive": 1, "not testable": 1}
    assert run.counts_words(counts) == "2 reproduced, 1 inconclusive, 1 not testable"


def _notebook(*tags_per_cell):
    cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(len(tags_per_cell))]
    for cell, tags in zip(cells, tags_per_cell):
        cell.metadata["tags"] = list(tags)
    return nbformat.v4.new_notebook(cells=cells)


def test_the_run_time_sits_right_after_the_values_this_run_used(tmp_path):
    path = tmp_path / "page.ipynb"
    nbformat.write(_notebook(["parameters"], ["injected-parameters"], []), path)
    run._mark_executed(path, "key", seconds=125)
    cells = nbformat.read(path, as_version=4).cells
    assert [c.metadata.get("tags") for c in cells] == [["parameters", "hide-cell"], ["injected-parameters"],
                                                        [run.RUN_TIME_TAG], []]
    assert cells[2].source.startswith("*This page ran in 2 min 5 s on ") and "CPU cores" in cells[2].source
    nbformat.write(_notebook(["parameters"], []), path)  # nothing injected: after the defaults, which stay open
    run._mark_executed(path, "key", seconds=3)
    cells = nbformat.read(path, as_version=4).cells
    assert [c.metadata.get("tags") for c in cells] == [["parameters"], [run.RUN_TIME_TAG], []]
    assert "3 s" in cells[1].source


@pytest.mark.slow
def test_a_kernel_runs_without_the_unencrypted_tcp_warning(tmp_path, capfd):
    import papermill

    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), source)
    papermill.execute_notebook(str(source), str(executed), kernel_name="python3", progress_bar=False,
                               kernel_manager_class=run._ipc_kernel_manager())
    assert nbformat.read(executed, as_version=4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" not in capfd.readouterr().err
