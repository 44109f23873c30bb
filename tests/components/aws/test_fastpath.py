"""The fast path on AWS: the user-state table, the stream function wired to
the chain's stream, and exactly its grants (the function writes, the API
reads, nothing else touches the table)."""

from __future__ import annotations

import json

from tests.components.aws.helpers import build, granted
from tests.components.conftest import AWS_ACCOUNT

TABLE = f"arn:aws:dynamodb:eu-west-1:{AWS_ACCOUNT}:table/dataflow-state-table"


def test_the_store_is_on_demand_encrypted_with_the_chain_key_and_expires(default):
    rec, _ = default
    table = rec.one("dynamodb/table:Table").inputs
    assert table["billingMode"] == "PAY_PER_REQUEST" and table["hashKey"] == "user_key"
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert table["serverSideEncryption"] == {
        "enabled": True,
        "kmsKeyArn": f"arn:aws:kms:eu-west-1:{AWS_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    }


def test_the_function_consumes_the_stream_with_partial_failures_and_a_dead_letter_destination(default):
    rec, _ = default
    function = rec.one("lambda/function:Function", "dataflow-fast-function").inputs
    assert function["imageConfig"]["commands"] == ["pipeline_code.fastpath.aws_lambda.handler"]
    assert function["environment"]["variables"] == {
        "USER_STATE": "dynamodb:dataflow-state-table",
        "USER_STATE_TTL_DAYS": "30",
    }
    assert not [u for u in rec.of_type("lambda/functionUrl:FunctionUrl") if "fast" in u.name]
    mapping = rec.one("lambda/eventSourceMapping:EventSourceMapping").inputs
    assert (
        mapping["eventSourceArn"] == f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"
    )
    assert mapping["functionName"].endswith(":function/dataflow-fast-fresh")
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["bisectBatchOnFunctionError"] is True and mapping["maximumRetryAttempts"] == 5
    assert mapping["startingPosition"] == "LATEST" and mapping["maximumRecordAgeInSeconds"] == 3600
    assert (mapping["batchSize"], mapping["maximumBatchingWindowInSeconds"]) == (100, 1)
    assert mapping["destinationConfig"] == {
        "onFailure": {"destinationArn": "arn:aws:s3:::dataflow-ingest-dead-letters"}
    }


def test_the_spec_sets_batching_ttl_and_the_apis_budget():
    rec, _ = build(
        fast_path={"batch_size": 500, "batch_window_seconds": 5, "ttl_days": 7, "read_timeout_ms": 80}
    )
    mapping = rec.one("lambda/eventSourceMapping:EventSourceMapping").inputs
    assert (mapping["batchSize"], mapping["maximumBatchingWindowInSeconds"]) == (500, 5)
    env = rec.one("lambda/function:Function", "dataflow-fast-function").inputs["environment"]["variables"]
    assert env["USER_STATE_TTL_DAYS"] == "7"
    api = rec.one("lambda/function:Function", "dataflow-serve-function").inputs["environment"]["variables"]
    assert api["USER_STATE"] == "dynamodb:dataflow-state-table" and api["USER_STATE_TIMEOUT_MS"] == "80"


def test_only_the_function_writes_and_only_the_api_reads_the_table(default):
    rec, _ = default
    touching = {}
    for policy in rec.of_type("iam/rolePolicy:RolePolicy"):
        for s in json.loads(policy.inputs["policy"])["Statement"]:
            if TABLE in s["Resource"]:
                touching.setdefault(policy.inputs["role"], set()).update(s["Action"])
    assert touching == {
        "dataflow-fast-function": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "dataflow-serve-function": {"dynamodb:GetItem"},
    }
    fast = granted(rec, "dataflow-fast-function")
    assert {"s3:PutObject"} in [set(s["Action"]) for s in fast]  # the on-failure destination
    assert ["kinesis:GetRecords" in s["Action"] for s in fast].count(True) == 1


def test_alarms_watch_the_functions_errors_and_lag_and_the_tables_throttling(default):
    rec, _ = default
    errors = rec.one("cloudwatch/metricAlarm:MetricAlarm", "dataflow-monitoring-fast-path-errors").inputs
    assert errors["dimensions"] == {"FunctionName": "dataflow-fast-fresh"} and errors["threshold"] == 5
    lag = rec.one("cloudwatch/metricAlarm:MetricAlarm", "dataflow-monitoring-fast-path-lag").inputs
    assert lag["metricName"] == "IteratorAge" and lag["threshold"] == 60_000
    throttled = rec.one(
        "cloudwatch/metricAlarm:MetricAlarm", "dataflow-monitoring-user-state-throttled"
    ).inputs
    dims = [q["metric"]["dimensions"] for q in throttled["metricQueries"] if "metric" in q]
    assert dims == [{"TableName": "dataflow-state-table"}] * 2
