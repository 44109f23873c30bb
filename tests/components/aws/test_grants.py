"""Every AWS grant verb gives one role exactly the actions it names, on
exactly the resource it belongs to."""

from __future__ import annotations

import json

import pulumi

from components.aws import AwsChain
from components.aws.security import service_role
from components.spec import load_spec
from tests.components.configs import aws_config
from tests.components.conftest import AWS_ACCOUNT, run_program

STREAM = f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"


def with_grants():
    def program():
        chain = AwsChain("dataflow", load_spec(aws_config()))
        holder = pulumi.ComponentResource("test:Holder", "holder")
        role = service_role("analyst", "lambda.amazonaws.com", {}, holder)
        chain.ingest.grant_publish("checkout", role)
        chain.ingest.grant_read_dead_letters("analyst", role)
        chain.warehouse.grant_read("analyst", role)
        chain.serve.grant_invoke("analyst", role)
        return role

    return run_program(program)


def statements(rec, policy_name: str) -> list[dict]:
    return json.loads(rec.one("iam/rolePolicy:RolePolicy", policy_name).inputs["policy"])["Statement"]


def test_grant_publish_is_put_records_on_the_stream():
    rec, _ = with_grants()
    s = statements(rec, "dataflow-ingest-publish-checkout")
    assert s[0]["Action"] == ["kinesis:DescribeStreamSummary", "kinesis:PutRecord", "kinesis:PutRecords"]
    assert s[0]["Resource"] == [STREAM]
    assert "kms:GenerateDataKey" in s[1]["Action"]
    assert (
        rec.one("iam/rolePolicy:RolePolicy", "dataflow-ingest-publish-checkout").inputs["role"] == "analyst"
    )


def test_grant_read_dead_letters_reads_that_bucket_only():
    rec, _ = with_grants()
    s = statements(rec, "dataflow-ingest-read-dead-letters-analyst")
    assert s[0] == {
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::dataflow-ingest-dead-letters"],
    }
    assert s[1]["Resource"] == ["arn:aws:s3:::dataflow-ingest-dead-letters/*"]
    assert "kms:Encrypt" not in s[2]["Action"]


def test_warehouse_grant_read_is_select_only():
    rec, _ = with_grants()
    s = statements(rec, "dataflow-warehouse-read-analyst")
    assert s[0]["Action"] == ["redshift-data:ExecuteStatement"]
    sql = rec.one("redshiftdata/statement:Statement", "dataflow-warehouse-db-grant-analyst").inputs["sql"]
    assert sql.startswith("GRANT SELECT ON events, dead_letters") and sql.endswith('TO "IAMR:analyst"')
    assert "INSERT" not in sql
    write = rec.one("redshiftdata/statement:Statement", "dataflow-warehouse-db-grant-job").inputs["sql"]
    assert "INSERT, UPDATE, DELETE" in write and "_dataflow_batches" in write


def test_serve_grant_invoke_is_the_function_url_only():
    rec, _ = with_grants()
    s = statements(rec, "dataflow-serve-invoke-analyst")
    assert s == [
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunctionUrl"],
            "Resource": [f"arn:aws:lambda:eu-west-1:{AWS_ACCOUNT}:function/dataflow-serve-api"],
        }
    ]
