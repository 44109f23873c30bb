"""The raw archive on AWS: Firehose from the stream through the transform to
a private, encrypted bucket with the spec's expiry."""

from __future__ import annotations

import json

from tests.components.aws.helpers import build, granted
from tests.components.conftest import AWS_ACCOUNT

KEY = f"arn:aws:kms:eu-west-1:{AWS_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_firehose_reads_the_stream_and_writes_gzip_by_arrival_hour_through_the_transform(default):
    rec, _ = default
    delivery = rec.one("kinesis/firehoseDeliveryStream:FirehoseDeliveryStream").inputs
    assert delivery["kinesisSourceConfiguration"]["kinesisStreamArn"].endswith(
        ":stream/dataflow-ingest-events"
    )
    s3 = delivery["extendedS3Configuration"]
    assert s3["bucketArn"] == "arn:aws:s3:::dataflow-archive-raw"
    assert (s3["compressionFormat"], s3["kmsKeyArn"]) == ("GZIP", KEY)
    assert s3["prefix"] == "raw/!{timestamp:yyyy/MM/dd/HH}/" and s3["errorOutputPrefix"].startswith("errors/")
    assert (s3["bufferingInterval"], s3["bufferingSize"]) == (300, 64)
    (processor,) = s3["processingConfiguration"]["processors"]
    arn = {p["parameterName"]: p["parameterValue"] for p in processor["parameters"]}["LambdaArn"]
    assert arn.endswith(":function/dataflow-archive-transform")
    transform = rec.one("lambda/function:Function", "dataflow-archive-transform-function").inputs
    assert transform["imageConfig"]["commands"] == ["pipeline_code.streams.firehose.handler"]


def test_the_bucket_expires_after_the_spec_and_is_locked(default):
    rec, _ = default
    rules = rec.one(
        "s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "dataflow-archive-raw-lifecycle"
    )
    assert {"id": "expire", "status": "Enabled", "filter": {}, "expiration": {"days": 400}} in rules.inputs[
        "rules"
    ]
    forever, _ = build(archive={"retention_days": None})
    lifecycle = [
        r
        for r in forever.of_type(":BucketLifecycleConfiguration")
        if r.name == "dataflow-archive-raw-lifecycle"
    ]
    assert all("expiration" not in rule for r in lifecycle for rule in r.inputs["rules"])


def test_firehoses_role_reads_the_stream_writes_the_bucket_and_invokes_the_transform(default):
    rec, _ = default
    statements = granted(rec, "dataflow-archive-delivery")
    actions = {a for s in statements for a in s["Action"]}
    assert {"kinesis:GetRecords", "s3:PutObject", "lambda:InvokeFunction", "kms:GenerateDataKey"} <= actions
    resources = {r for s in statements for r in s["Resource"]}
    assert "arn:aws:s3:::dataflow-archive-raw/*" in resources
    assert not [r for r in resources if "dynamodb" in r or "redshift" in r]
    role = rec.one("iam/role:Role", "dataflow-archive-delivery").inputs
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"] == [
        "firehose.amazonaws.com"
    ]
