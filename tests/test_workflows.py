"""The CI workflow: linted by actionlint, and in step with the stacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "infrastructure.yml"


def actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    assert Path(found).exists(), "actionlint is not installed (the dev extra brings it)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_the_workflow_passes_actionlint():
    done = lint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ matrix.stack }}", "${{ matrix.stak }}", 1))
    done = lint(broken)
    assert done.returncode != 0 and "stak" in done.stdout


def test_every_stack_is_previewed_with_its_own_extra_and_oidc():
    from components.plan import stack_spec, stacks

    flow = yaml.safe_load(WORKFLOW.read_text())
    job = flow["jobs"]["stack"]
    matrix = {row["stack"]: row["cloud"] for row in job["strategy"]["matrix"]["include"]}
    assert matrix == {s: stack_spec(s).cloud for s in stacks()}
    assert flow["permissions"]["id-token"] == "write"
    steps = [s.get("uses", s.get("run", "")) for s in job["steps"]]
    install = next(i for i, s in enumerate(steps) if "pip install" in s)
    preview = next(i for i, s in enumerate(steps) if s.startswith("pulumi/actions"))
    assert install < preview  # the action does not install Python dependencies
    assert ".[${{ matrix.cloud }}]" in steps[install]
    commands = {s["with"]["command"] for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions")}
    assert commands == {"preview", "up"}
    # Credentials only from secrets and OIDC, never written in the file.
    assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert all(
        v.startswith("${{ secrets.")
        for k, v in job["env"].items()
        if k.startswith("ARM_") and k != "ARM_USE_OIDC"
    )
