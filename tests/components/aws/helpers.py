"""What the AWS component tests share: building the chain, reading what it declared."""

from __future__ import annotations

import json

from components.aws import AwsChain
from components.spec import load_spec
from tests.components.configs import aws_config
from tests.components.conftest import AWS_ACCOUNT, run_program


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: AwsChain("dataflow", load_spec(aws_config(**sections))))


def policies(rec) -> dict[str, list[dict]]:
    """Inline role policies by resource name, as statements."""
    return {
        r.name: json.loads(r.inputs["policy"])["Statement"] for r in rec.of_type("iam/rolePolicy:RolePolicy")
    }


def granted(rec, role_name: str) -> list[dict]:
    """Every statement attached to one role."""
    return [
        s
        for r in rec.of_type("iam/rolePolicy:RolePolicy")
        if r.inputs["role"] == role_name
        for s in json.loads(r.inputs["policy"])["Statement"]
    ]


KEY = f"arn:aws:kms:eu-west-1:{AWS_ACCOUNT}:key/0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"
