"""The slow path on AWS: the export and training schedules, the job's
identity with exactly its grants, and the request the schedule sends."""

from __future__ import annotations

import json

import sqlglot

from pipeline_code.ml.deploy import target_from_env
from tests.components.aws.helpers import build, granted
from tests.components.conftest import AWS_ACCOUNT

PREFIX = f"arn:aws:sagemaker:eu-west-1:{AWS_ACCOUNT}"


def _schedules(rec):
    return {r.name: r.inputs for r in rec.of_type("scheduler/schedule:Schedule")}


def test_the_export_runs_30_minutes_before_training_and_unloads_the_export_query(default):
    rec, _ = default
    s = _schedules(rec)
    assert s["dataflow-train-export"]["scheduleExpression"] == "cron(30 2 * * ? *)"
    assert s["dataflow-train-run"]["scheduleExpression"] == "cron(0 3 * * ? *)"
    assert {x["state"] for x in s.values()} == {"ENABLED"}
    target = s["dataflow-train-export"]["target"]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:redshiftdata:executeStatement"
    sql = json.loads(target["input"])["Sql"]
    assert sql.startswith("UNLOAD ('SELECT e.user_key") and sql.endswith("FORMAT AS PARQUET CLEANPATH")
    inner = sql.split("('", 1)[1].rsplit("') TO", 1)[0].replace("''", "'")
    assert sqlglot.parse_one(inner, read="redshift")


def test_on_demand_only_keeps_both_schedules_disabled():
    rec, _ = build(model={"retrain": None})
    assert {x["state"] for x in _schedules(rec).values()} == {"DISABLED"}
    # Nothing runs daily, so a missing run is no alarm; refusals and age still are.
    alarms = {r.name for r in rec.of_type("cloudwatch/metricAlarm:MetricAlarm")}
    assert "dataflow-monitoring-training-failed" not in alarms
    assert {"dataflow-monitoring-model-refused", "dataflow-monitoring-model-age"} <= alarms


def test_the_training_request_is_what_sagemakers_api_takes(default):
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    rec, _ = default
    target = _schedules(rec)["dataflow-train-run"]["target"]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:createTrainingJob"
    body = json.loads(target["input"])
    assert body["TrainingJobName"] == "dataflow-train-<aws.scheduler.execution-id>"
    # The placeholder becomes a UUID at run time; check the rest against the service model.
    body["TrainingJobName"] = "dataflow-train-0f1e2d3c-4b5a-6978-8091-a2b3c4d5e6f7"
    shape = get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), report.generate_report()
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}
    assert channels == {
        "training": "s3://dataflow-train-registry/training/latest/",
        "production": "s3://dataflow-train-registry/models/production/",
    }
    env = body["Environment"]
    assert (
        env["REGISTRY"] == "s3://dataflow-train-registry/models/" and env["TRAINING_METRICS"] == "cloudwatch"
    )
    platform, rollout, canary, bake = target_from_env(env)
    assert (platform, rollout.endpoint, canary, bake) == ("sagemaker", "dataflow-ml-endpoint", 10, 600)
    assert rollout.alarms == ("dataflow-train-rollback-errors", "dataflow-train-rollback-latency")
    assert body["HyperParameters"] == {"tolerance": "0.02"}


def test_the_jobs_role_reads_its_data_writes_the_registry_and_deploys_to_one_endpoint(default):
    rec, _ = default
    statements = granted(rec, "dataflow-train-job")
    by_action = {a: set(s["Resource"]) for s in statements for a in s["Action"]}
    assert by_action["s3:GetObject"] == {
        "arn:aws:s3:::dataflow-train-registry/training/*",
        "arn:aws:s3:::dataflow-train-registry/models/*",
    }
    assert by_action["s3:PutObject"] == {
        "arn:aws:s3:::dataflow-train-registry/models/*",
        "arn:aws:s3:::dataflow-train-registry/jobs/*",
    }
    assert by_action["sagemaker:UpdateEndpoint"] == {f"{PREFIX}:endpoint/dataflow-ml-endpoint"}
    assert by_action["sagemaker:CreateModel"] == {
        f"{PREFIX}:model/dataflow-*",
        f"{PREFIX}:endpoint-config/dataflow-*",
    }
    assert by_action["iam:PassRole"] == {f"arn:aws:iam::{AWS_ACCOUNT}:role/dataflow-ml-execution"}
    # Nothing of the stream or the user state; of the warehouse, model_versions only.
    assert not [a for a in by_action if a.split(":")[0] in ("kinesis", "dynamodb", "glue")]
    grant = rec.one("redshiftdata/statement:Statement", "dataflow-warehouse-db-grant-training").inputs["sql"]
    assert grant.startswith("GRANT SELECT, INSERT, UPDATE, DELETE ON model_versions TO")


def test_the_scheduler_starts_only_its_jobs_and_passes_only_their_role(default):
    rec, _ = default
    statements = granted(rec, "dataflow-train-scheduler")
    by_action = {a: set(s["Resource"]) for s in statements for a in s["Action"]}
    assert by_action["sagemaker:CreateTrainingJob"] == {f"{PREFIX}:training-job/dataflow-train-*"}
    assert by_action["iam:PassRole"] == {f"arn:aws:iam::{AWS_ACCOUNT}:role/dataflow-train-job"}
    assert "redshift-data:ExecuteStatement" in by_action  # the export, as a warehouse reader
    assert "redshift-data:BatchExecuteStatement" not in by_action  # ... and not a writer
    # UNLOAD writes the export as the warehouse's COPY role, under training/ only.
    copy = granted(rec, "dataflow-warehouse-copy")
    writes = {r for s in copy for a in s["Action"] if a == "s3:PutObject" for r in s["Resource"]}
    assert "arn:aws:s3:::dataflow-train-registry/training/*" in writes


def test_the_endpoint_ignores_the_config_the_rollouts_move_it_to(default):
    rec, _ = default
    assert rec.ignored[("aws:sagemaker/endpoint:Endpoint", "dataflow-ml-endpoint")] == ["endpointConfigName"]
