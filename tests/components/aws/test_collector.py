"""The collector on AWS: a public function URL in front of the Kinesis stream,
allowed to put records on it and read its write keys, nothing else."""

from __future__ import annotations

import json

from components.aws import AwsChain
from components.policy.rules import violations
from components.spec import load_spec
from tests.components.configs import aws_config
from tests.components.conftest import AWS_ACCOUNT, run_program


def build(**sections):
    return run_program(lambda: AwsChain("dataflow", load_spec(aws_config(**sections))))


def test_the_collector_puts_records_on_the_ingest_stream_only():
    rec, _ = build()
    function = rec.one("lambda/function:Function", "dataflow-collector-function").inputs
    env = function["environment"]["variables"]
    assert env["COLLECTOR_SINK"] == "kinesis:dataflow-ingest-events" and env["COLLECTOR_SPILL_MB"] == "0"
    secret = rec.one("secretsmanager/secret:Secret")
    assert env["DATAFLOW_WRITE_KEYS_SECRET"].endswith(":secret/dataflow-collector-write-keys")
    assert secret.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert function["imageConfig"]["commands"] == ["pipeline_code.collector.aws_lambda.handler"]
    statements = [
        s
        for r in rec.of_type("iam/rolePolicy:RolePolicy")
        if r.inputs["role"] == "dataflow-collector-function"
        for s in json.loads(r.inputs["policy"])["Statement"]
    ]
    by_action = {a: s["Resource"] for s in statements for a in s["Action"]}
    stream = f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"
    assert by_action["kinesis:PutRecords"] == [stream] and "kinesis:GetRecords" not in by_action
    assert by_action["secretsmanager:GetSecretValue"] == [env["DATAFLOW_WRITE_KEYS_SECRET"]]


def test_only_the_collector_url_is_public_and_the_policy_pack_allows_it():
    rec, _ = build()
    urls = {r.name: r.inputs["authorizationType"] for r in rec.of_type("lambda/functionUrl:FunctionUrl")}
    assert urls == {"dataflow-collector-url": "NONE", "dataflow-serve-url": "AWS_IAM"}
    found = [v for r in rec.resources for v in violations(r.type, r.inputs, r.protect)]
    assert found == []


def test_the_collector_can_be_left_out():
    rec, _ = build(collector={"enabled": False})
    assert (
        not rec.of_type("secretsmanager/secret:Secret") and len(rec.of_type("lambda/function:Function")) == 3
    )
