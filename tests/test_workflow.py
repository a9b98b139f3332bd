"""The GitHub Actions workflow that publishes the paper book: it cannot run here, so its shape is checked."""

import re
import subprocess

import yaml

from analysis.run import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_workflow_runs_the_readme_commands_through_the_makefile_only():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["build"]["steps"]
    commands = [step["run"] for step in steps if "run" in step]
    make_calls = [c for c in commands if c.startswith("make ")]
    assert [c.split()[1] for c in make_calls] == ["weights", "images", "test", "book"]
    assert all(c.split()[1] in make_targets() for c in make_calls)
    assert any("PARAMS=paper" in c for c in make_calls)
    assert all(c.startswith(("make ", "sudo apt-get")) for c in commands), commands  # nothing else runs
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_workflow_caches_the_hub_and_deploys_the_built_site():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    uses = [step.get("uses", "") for job in workflow["jobs"].values() for step in job["steps"]]
    caches = [s["with"]["path"] for s in workflow["jobs"]["build"]["steps"]
              if s.get("uses", "").startswith("actions/cache")]
    assert any("huggingface" in path for path in caches) and "data/imagenette" in caches
    upload = next(s for s in workflow["jobs"]["build"]["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert any(u.startswith("actions/deploy-pages") for u in uses)


def test_makefile_accepts_the_variables_the_workflow_sets():
    result = subprocess.run(["make", "-n", "book", "PARAMS=paper", "WEIGHTS_DIR="], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0 and "--set paper" in result.stdout
