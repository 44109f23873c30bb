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
from pipeline_code.spark.glue import parse_args
from pipeline_code.tables import TABLES
from pipeline_code.warehouses import redshift
from tests.components.conftest import AWS_ACCOUNT, resolved, run_program
from tests.components.test_spec import AWS, aws_config, gcp_config

KEY = f"arn:aws:kms:eu-west-1:{AWS_ACCOUNT}:key/0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: AwsChain("dataflow", load_spec(aws_config(**sections))))


@pytest.fixture(scope="module")
def default():
    return build()


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


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("kinesis/stream:Stream", 1),
        ("redshiftserverless/namespace:Namespace", 1),
        ("redshiftserverless/workgroup:Workgroup", 1),
        ("redshiftdata/statement:Statement", len(TABLES) + 1 + 3),  # tables, batches, the job's user
        ("glue/connection:Connection", 1),
        ("glue/securityConfiguration:SecurityConfiguration", 1),
        ("glue/job:Job", 1),
        ("glue/trigger:Trigger", 1),
        ("s3/bucketObjectv2:BucketObjectv2", 3),
        ("sagemaker/model:Model", 1),
        ("sagemaker/endpointConfiguration:EndpointConfiguration", 1),
        ("sagemaker/endpoint:Endpoint", 1),
        ("appautoscaling/target:Target", 1),
        ("lambda/function:Function", 1),
        ("lambda/functionUrl:FunctionUrl", 1),
        ("cloudwatch/metricAlarm:MetricAlarm", 7),
        ("cloudwatch/dashboard:Dashboard", 1),
        ("sns/topic:Topic", 1),
        ("kms/key:Key", 1),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_the_tables_are_the_ddl_from_the_one_description(default):
    rec, _ = default
    sqls = {r.inputs["sql"] for r in rec.of_type("redshiftdata/statement:Statement")}
    assert {redshift.ddl(t) for t in TABLES.values()} | {redshift.BATCHES_DDL} <= sqls
    for r in rec.of_type("redshiftdata/statement:Statement"):
        assert r.inputs["workgroupName"] == "dataflow-warehouse-wg" and r.inputs["database"] == "dataflow"
        assert r.inputs["secretArn"].startswith("arn:aws:secretsmanager:")


def test_the_job_reads_the_stream_and_writes_the_warehouse_it_was_given(default):
    rec, _ = default
    job = rec.one("glue/job:Job")
    args = parse_args([x for k, v in job.inputs["defaultArguments"].items() for x in (k, v)])
    assert args.stream_name == rec.one("kinesis/stream:Stream").inputs["name"]
    assert args.workgroup == rec.one("redshiftserverless/workgroup:Workgroup").inputs["workgroupName"]
    assert args.database == rec.one("redshiftserverless/namespace:Namespace").inputs["dbName"]
    assert args.copy_role_arn == f"arn:aws:iam::{AWS_ACCOUNT}:role/dataflow-warehouse-copy"
    code = rec.one("s3/bucket:Bucket", "dataflow-process-code").name
    assert job.inputs["command"] == {
        "name": "gluestreaming",
        "scriptLocation": f"s3://{code}/code/glue_job.py",
        "pythonVersion": "3",
    }
    assert args.checkpoint_uri == f"s3://{code}/checkpoint/" and args.settings.batch_seconds == 10
    assert job.inputs["defaultArguments"]["--extra-py-files"] == f"s3://{code}/code/pipeline_code.zip"
    assert job.inputs["defaultArguments"]["--additional-python-modules"] == "msgspec>=0.19"
    assert job.inputs["connections"] == ["dataflow-warehouse-network"]
    assert job.inputs["securityConfiguration"] == "dataflow-process-security"
    assert job.inputs["executionProperty"] == {"maxConcurrentRuns": 1}
    trigger = rec.one("glue/trigger:Trigger")
    assert trigger.inputs["actions"] == [{"jobName": "dataflow-process-stream"}]


def test_the_job_role_is_granted_exactly_its_resources(default):
    rec, _ = default
    stream = f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"
    statements = granted(rec, "dataflow-process-job")
    by_action = {a: s["Resource"] for s in statements for a in s["Action"]}
    assert by_action["kinesis:GetRecords"] == [stream]
    assert "kinesis:PutRecord" not in by_action
    assert by_action["redshift-data:BatchExecuteStatement"] == [
        f"arn:aws:redshiftserverless:eu-west-1:{AWS_ACCOUNT}:workgroup/dataflow-warehouse-wg"
    ]
    assert by_action["s3:PutObject"] and all(
        r.startswith(("arn:aws:s3:::dataflow-process-code/", "arn:aws:s3:::dataflow-ingest-dead-letters/"))
        for s in statements
        if "s3:PutObject" in s["Action"]
        for r in s["Resource"]
    )
    copy = granted(rec, "dataflow-warehouse-copy")
    assert [r for s in copy if "s3:GetObject" in s["Action"] for r in s["Resource"]] == [
        "arn:aws:s3:::dataflow-process-code/staging/*"
    ]


def test_the_api_calls_the_endpoint_the_model_created_and_only_it(default):
    rec, _ = default
    function = rec.one("lambda/function:Function")
    assert function.inputs["environment"]["variables"]["MODEL_ENDPOINT"] == "sagemaker:dataflow-ml-endpoint"
    assert function.inputs["imageConfig"]["commands"] == ["pipeline_code.serving.aws_lambda.handler"]
    invoke = [s for s in granted(rec, "dataflow-serve-function") if "sagemaker:InvokeEndpoint" in s["Action"]]
    assert invoke == [
        {
            "Effect": "Allow",
            "Action": ["sagemaker:InvokeEndpoint"],
            "Resource": [f"arn:aws:sagemaker:eu-west-1:{AWS_ACCOUNT}:endpoint/dataflow-ml-endpoint"],
        }
    ]
    config = rec.one("sagemaker/endpointConfiguration:EndpointConfiguration")
    endpoint = rec.one("sagemaker/endpoint:Endpoint")
    assert endpoint.inputs["endpointConfigName"] == config.name  # the mock's name is the resource name
    variant = config.inputs["productionVariants"][0]
    assert variant["instanceType"] == "ml.m5.large" and variant["initialInstanceCount"] == 1
    model = rec.one("sagemaker/model:Model")
    assert model.inputs["primaryContainer"]["modelDataUrl"] == AWS["model_artifact_uri"]
    assert model.inputs["enableNetworkIsolation"] is True


def test_no_policy_grants_wildcard_actions_or_unscoped_resources(default):
    rec, _ = default
    found = policies(rec)
    assert len(found) == 7
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
    assert buckets == {"dataflow-ingest-dead-letters", "dataflow-process-code", "dataflow-ml-capture"}
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
    assert rec.one("lambda/function:Function").inputs["kmsKeyArn"] == key_arn
    sec = rec.one("glue/securityConfiguration:SecurityConfiguration").inputs["encryptionConfiguration"]
    assert sec["s3Encryption"]["s3EncryptionMode"] == "SSE-KMS"
    assert sec["cloudwatchEncryption"]["cloudwatchEncryptionMode"] == "SSE-KMS"


def test_the_warehouse_is_private_and_protected(default):
    rec, _ = default
    wg = rec.one("redshiftserverless/workgroup:Workgroup").inputs
    assert wg["publiclyAccessible"] is False and wg["enhancedVpcRouting"] is True
    assert {"parameterKey": "require_ssl", "parameterValue": "true"} in wg["configParameters"]
    assert wg["subnetIds"] == AWS["subnet_ids"]
    ns = rec.one("redshiftserverless/namespace:Namespace").inputs
    assert ns["manageAdminPassword"] is True and "adminUserPassword" not in ns
    ingress = rec.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert not [r for r in ingress if "cidrIpv4" in r.inputs]  # only group-to-group, never a CIDR
    to_redshift = rec.one(
        "vpc/securityGroupIngressRule:SecurityGroupIngressRule", "dataflow-warehouse-redshift-from-clients"
    )
    assert (to_redshift.inputs["fromPort"], to_redshift.inputs["toPort"]) == (5439, 5439)


def test_the_api_needs_signed_requests_by_default(default):
    rec, _ = default
    assert rec.one("lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "AWS_IAM"
    assert not rec.of_type("lambda/permission:Permission")
    assert rec.one("lambda/function:Function").inputs["reservedConcurrentExecutions"] == 10


def test_every_alarm_notifies_the_topic(default):
    rec, _ = default
    alarms = rec.of_type("cloudwatch/metricAlarm:MetricAlarm")
    assert all(
        a.inputs["alarmActions"] == [f"arn:aws:sns:eu-west-1:{AWS_ACCOUNT}:topic/dataflow-monitoring-alerts"]
        for a in alarms
    )
    by_name = {a.name.removeprefix("dataflow-monitoring-"): a.inputs for a in alarms}
    assert by_name["backlog"]["dimensions"] == {"StreamName": "dataflow-ingest-events"}
    assert by_name["backlog"]["threshold"] == 300_000
    assert by_name["job-failures"]["dimensions"]["JobName"] == "dataflow-process-stream"
    assert by_name["dead-letters"]["namespace"] == "DataFlow" and by_name["dead-letters"]["threshold"] == 10
    assert by_name["model-latency"]["threshold"] == 500_000
    share = [q for q in by_name["model-errors"]["metricQueries"] if q.get("expression")]
    assert share[0]["expression"] == "IF(calls > 0, errors / calls, 0)"
    json.loads(rec.one("cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])


def test_outputs_have_the_same_names_as_gcps(default):
    _, chain = default
    values = resolved(__import__("pulumi").Output.all(**chain.outputs()))
    assert (
        values["ingest_endpoint"] == f"arn:aws:kinesis:eu-west-1:{AWS_ACCOUNT}:stream/dataflow-ingest-events"
    )
    assert values["warehouse_location"] == "dataflow-warehouse-wg/dataflow"
    assert values["dead_letter_location"] == "s3://dataflow-ingest-dead-letters/"
    assert values["api_url"].startswith("https://")
    _, gcp_chain = run_program(lambda: GcpChain("dataflow", load_spec(gcp_config())))
    assert set(chain.outputs()) == set(gcp_chain.outputs())


def test_a_given_key_replaces_the_chains_own():
    rec, _ = build(aws={**AWS, "kms_key_arn": KEY})
    assert not rec.of_type("kms/key:Key")
    assert rec.one("kinesis/stream:Stream").inputs["kmsKeyId"] == KEY


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
                rec.one("glue/job:Job").inputs["numberOfWorkers"] == 6
                and rec.one("glue/job:Job").inputs["defaultArguments"]["--batch_seconds"] == "30"
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
