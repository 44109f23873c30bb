"""The whole AWS chain under Pulumi's mocks: every link, the wiring between
them, least privilege, encryption and private defaults, and each option."""

from __future__ import annotations

import json

import pytest

from components.aws import AwsChain
from components.aws.security import PolicyError, check_statement, statement
from components.gcp import GcpChain
from components.policy.rules import UNSCOPED_ACTIONS
from components.spec import load_spec
from pipeline_code.tables import TABLES
from tests.components.aws.helpers import KEY, build, policies
from tests.components.configs import AWS, gcp_config
from tests.components.conftest import AWS_ACCOUNT, resolved, run_program


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("kinesis/stream:Stream", 1),
        ("redshiftserverless/namespace:Namespace", 1),
        ("redshiftserverless/workgroup:Workgroup", 1),
        # tables, batches, the processing job's user (3), the replay job's (3), the export's reader (2),
        # the trainer (3)
        ("redshiftdata/statement:Statement", len(TABLES) + 1 + 3 + 3 + 2 + 3),
        ("glue/connection:Connection", 1),
        ("glue/securityConfiguration:SecurityConfiguration", 1),
        ("glue/job:Job", 2),
        ("glue/trigger:Trigger", 1),
        ("s3/bucketObjectv2:BucketObjectv2", 4),
        ("sagemaker/model:Model", 1),
        ("sagemaker/endpointConfiguration:EndpointConfiguration", 1),
        ("sagemaker/endpoint:Endpoint", 1),
        ("appautoscaling/target:Target", 1),
        ("lambda/function:Function", 3),  # the API, the fast path, the archive's transform
        ("lambda/functionUrl:FunctionUrl", 1),  # the fast path has no callers
        ("lambda/eventSourceMapping:EventSourceMapping", 1),
        ("kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", 1),
        ("dynamodb/table:Table", 1),
        # the chain's 11, the slow path's 3, and the 2 a rollout rolls back on
        ("cloudwatch/metricAlarm:MetricAlarm", 16),
        ("scheduler/schedule:Schedule", 2),
        ("cloudwatch/dashboard:Dashboard", 1),
        ("sns/topic:Topic", 1),
        ("kms/key:Key", 1),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_no_policy_grants_wildcard_actions_or_unscoped_resources(default):
    rec, _ = default
    found = policies(rec)
    # 14, the slow path's (job, scheduler, export, registry reads x2, model_versions), and the
    # replay job's (archive read, warehouse Data API, runtime)
    assert len(found) == 23
    for name, statements in found.items():
        for s in statements:
            assert s["Effect"] == "Allow", name
            assert not [a for a in s["Action"] if "*" in a], (name, s)
            if "*" in s["Resource"]:
                assert set(s["Action"]) <= UNSCOPED_ACTIONS, (name, s)
    roles = rec.of_type("iam/role:Role")
    assert all("managedPolicyArns" not in r.inputs for r in roles)
    services = {
        json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"][0] for r in roles
    }
    assert services == {
        "glue.amazonaws.com",
        "redshift.amazonaws.com",
        "sagemaker.amazonaws.com",
        "lambda.amazonaws.com",
        "firehose.amazonaws.com",
        "scheduler.amazonaws.com",
    }


def test_the_policy_checker_refuses_what_the_tests_look_for():
    with pytest.raises(PolicyError, match="wildcard actions"):
        check_statement(statement(["s3:*"], ["arn:aws:s3:::b/*"]))
    with pytest.raises(
        PolicyError, match=r"Resource '\*' for actions that can be scoped: \['s3:GetObject'\]"
    ):
        check_statement(statement(["s3:GetObject"], ["*"]))
    check_statement(statement(["ecr:GetAuthorizationToken"], ["*"]))


def test_no_bucket_is_public_and_every_store_is_encrypted(default):
    rec, _ = default
    buckets = {r.name for r in rec.of_type("s3/bucket:Bucket")}
    assert buckets == {
        "dataflow-ingest-dead-letters",
        "dataflow-process-code",
        "dataflow-ml-capture",
        "dataflow-archive-raw",
        "dataflow-train-registry",
    }
    blocks = {
        r.inputs["bucket"]: r.inputs
        for r in rec.of_type("s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    }
    assert set(blocks) == buckets
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(all(b[f] is True for f in flags) for b in blocks.values())
    sse = rec.of_type("s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert {r.inputs["bucket"] for r in sse} == buckets
    key = rec.one("kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    key_arn = f"arn:aws:kms:eu-west-1:{AWS_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for r in sse:
        rule = r.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
    for r in rec.of_type("s3/bucketPolicy:BucketPolicy"):
        deny = json.loads(r.inputs["policy"])["Statement"][0]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    stream = rec.one("kinesis/stream:Stream").inputs
    assert (stream["encryptionType"], stream["kmsKeyId"]) == ("KMS", key_arn)
    assert rec.one("redshiftserverless/namespace:Namespace").inputs["kmsKeyId"] == key_arn
    assert rec.one("sagemaker/endpointConfiguration:EndpointConfiguration").inputs["kmsKeyArn"] == key_arn
    assert all(r.inputs["kmsKeyId"] == key_arn for r in rec.of_type("cloudwatch/logGroup:LogGroup"))
    assert rec.one("sns/topic:Topic").inputs["kmsMasterKeyId"] == key_arn
    assert all(r.inputs["kmsKeyArn"] == key_arn for r in rec.of_type("lambda/function:Function"))
    assert rec.one("dynamodb/table:Table").inputs["serverSideEncryption"]["kmsKeyArn"] == key_arn
    sec = rec.one("glue/securityConfiguration:SecurityConfiguration").inputs["encryptionConfiguration"]
    assert sec["s3Encryption"]["s3EncryptionMode"] == "SSE-KMS"
    assert sec["cloudwatchEncryption"]["cloudwatchEncryptionMode"] == "SSE-KMS"


def test_outputs_have_the_same_names_as_gcps(default):
    _, chain = default
    values = resolved(__import__("pulumi").Output.all(**chain.outputs()))
    assert (
        values["ingest_endpoint"] == f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"
    )
    assert values["warehouse_location"] == "dataflow-warehouse-wg/dataflow"
    assert values["dead_letter_location"] == "s3://dataflow-ingest-dead-letters/"
    assert values["api_url"].startswith("https://")
    assert values["user_state_location"] == "dynamodb:dataflow-state-table"
    _, gcp_chain = run_program(lambda: GcpChain("dataflow", load_spec(gcp_config())))
    assert set(chain.outputs()) == set(gcp_chain.outputs())


def test_a_given_key_replaces_the_chains_own():
    rec, _ = build(aws={**AWS, "kms_key_arn": KEY})
    assert not rec.of_type("kms/key:Key")
    assert rec.one("kinesis/stream:Stream").inputs["kmsKeyId"] == KEY


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sections", "check"),
    [
        (
            {"serve": {"public": True}},
            lambda rec: (
                rec.one("lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "NONE"
                and rec.one("lambda/permission:Permission").inputs["functionUrlAuthType"] == "NONE"
            ),
        ),
        (
            {"aws": {**AWS, "kinesis_shards": 4}},
            lambda rec: (
                rec.one("kinesis/stream:Stream").inputs["shardCount"] == 4
                and rec.one("kinesis/stream:Stream").inputs["streamModeDetails"]
                == {"streamMode": "PROVISIONED"}
            ),
        ),
        (
            {"model": {"private": True}},
            lambda rec: rec.one("sagemaker/model:Model").inputs["vpcConfig"]["subnets"] == AWS["subnet_ids"],
        ),
        (
            {"model": {"size": "large", "min_replicas": 2, "max_replicas": 4}},
            lambda rec: (
                rec.one("sagemaker/endpointConfiguration:EndpointConfiguration").inputs["productionVariants"][
                    0
                ]["instanceType"]
                == "ml.m5.2xlarge"
                and rec.one("appautoscaling/target:Target").inputs["maxCapacity"] == 4
            ),
        ),
        (
            {"alerts": {"email": "oncall@example.com"}},
            lambda rec: (
                rec.one("sns/topicSubscription:TopicSubscription").inputs["endpoint"] == "oncall@example.com"
            ),
        ),
        (
            {"processing": {"max_workers": 6, "batch_seconds": 30}},
            lambda rec: (
                rec.one("glue/job:Job", "dataflow-process-job").inputs["numberOfWorkers"] == 6
                and rec.one("glue/job:Job", "dataflow-process-job").inputs["defaultArguments"][
                    "--batch_seconds"
                ]
                == "30"
            ),
        ),
        (
            {"stream": {"retention_hours": 48}},
            lambda rec: rec.one("kinesis/stream:Stream").inputs["retentionPeriod"] == 48,
        ),
    ],
)
def test_each_option_changes_what_it_says(sections, check):
    rec, _ = build(**sections)
    assert check(rec)


def test_defaults_differ_from_each_option(default):
    rec, _ = default
    assert rec.one("kinesis/stream:Stream").inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "vpcConfig" not in rec.one("sagemaker/model:Model").inputs
    assert not rec.of_type("sns/topicSubscription:TopicSubscription")


def test_a_chain_for_another_cloud_is_refused():
    from components.spec import SpecError

    with pytest.raises(SpecError, match=r"AwsChain needs data-flow:cloud 'aws'.*'gcp'"):
        AwsChain("dataflow", load_spec(gcp_config()))
