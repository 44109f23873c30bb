"""The pack as Pulumi runs it: in its own virtualenv with pulumi-policy (which
pins an older protobuf than the gcp extra), each rule wrapped as a real
``pulumi_policy`` policy, fed every fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from components.policy.rules import RULES, STACK_RULES
from tests.components.policy.fixtures import FIXTURES, STACK_FIXTURES

PACK = Path(__file__).resolve().parents[3] / "components" / "policy"
DRIVER = Path(__file__).with_name("pack_driver.py")


# CI builds the pack's virtualenv once from its pinned requirements and names
# its interpreter here; without one the test builds it, which needs the index.
PACK_PYTHON = os.environ.get("DATAFLOW_POLICY_PYTHON")
pytestmark = [] if PACK_PYTHON else [pytest.mark.network]


@pytest.fixture(scope="module")
def pack_python(tmp_path_factory) -> str:
    if PACK_PYTHON:
        return PACK_PYTHON
    home = tmp_path_factory.mktemp("policy-venv")
    venv.create(home, with_pip=True)
    python = str(home / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", str(PACK / "requirements.txt")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def cases() -> list[dict]:
    out = []
    for rule, (resource_type, good, bad) in FIXTURES.items():
        for kind, fixture in (("good", good), ("bad", bad)):
            props, protect = fixture if isinstance(fixture, tuple) else (fixture, False)
            out.append(
                {
                    "id": f"{rule}/{kind}",
                    "rule": rule,
                    "type": resource_type,
                    "props": props,
                    "protect": protect,
                }
            )
    for rule, (good, bad) in STACK_FIXTURES.items():
        for kind, resources in (("good", good), ("bad", bad)):
            out.append({"id": f"{rule}/{kind}", "rule": rule, "resources": resources})
    return out


def test_the_pack_reports_exactly_the_bad_fixtures(pack_python):
    done = subprocess.run(
        [pack_python, str(DRIVER)],
        input=json.dumps(cases()),
        cwd=PACK,
        # As Pulumi runs the pack: its directory on the path, nothing of ours installed.
        env={"PYTHONPATH": str(PACK), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["policies"] == sorted(r.name for r in [*RULES, *STACK_RULES])
    for case_id, messages in report["results"].items():
        assert bool(messages) == case_id.endswith("/bad"), (case_id, messages)
    assert "checkov: CKV_AWS_43" in report["descriptions"]["aws-kinesis-kms"]
    assert sys.executable != pack_python
