"""The processing link on AWS."""

from __future__ import annotations

from pipeline_code.spark.glue import parse_args, parse_replay_args
from tests.components.aws.helpers import granted
from tests.components.conftest import AWS_ACCOUNT


def test_the_job_reads_the_stream_and_writes_the_warehouse_it_was_given(default):
    rec, _ = default
    job = rec.one("glue/job:Job", "dataflow-process-job")
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


def test_the_replay_job_runs_on_demand_over_the_archive_into_the_warehouse(default):
    rec, _ = default
    job = rec.one("glue/job:Job", "dataflow-process-replay")
    code = rec.one("s3/bucket:Bucket", "dataflow-process-code").name
    archive = rec.one("s3/bucket:Bucket", "dataflow-archive-raw").name
    assert job.inputs["command"] == {
        "name": "glueetl",
        "scriptLocation": f"s3://{code}/code/glue_replay_job.py",
        "pythonVersion": "3",
    }
    defaults = job.inputs["defaultArguments"]
    # A run names what to replay; the job's own arguments parse with it.
    run = {"--replay": "archive", "--replay_from": "2026-11-01", "--replay_to": "2026-11-02"}
    args = parse_replay_args([x for k, v in {**defaults, **run}.items() for x in (k, v)])
    assert args.archive_uri == f"s3://{archive}/raw"
    assert args.workgroup == rec.one("redshiftserverless/workgroup:Workgroup").inputs["workgroupName"]
    assert args.staging_uri == f"s3://{code}/staging" and args.settings.batch_seconds == 10
    assert defaults["--job-bookmark-option"] == "job-bookmark-disable"
    assert (job.inputs["maxRetries"], job.inputs["timeout"]) == (0, 720)
    assert job.inputs["executionProperty"] == {"maxConcurrentRuns": 1}
    assert job.inputs["securityConfiguration"] == "dataflow-process-security"
    # No trigger starts it: the only trigger is the streaming job's.
    assert [t.inputs["actions"] for t in rec.of_type("glue/trigger:Trigger")] == [
        [{"jobName": "dataflow-process-stream"}]
    ]


def test_the_replay_role_reads_the_archive_and_writes_the_warehouse_and_nothing_else(default):
    rec, _ = default
    archive = rec.one("s3/bucket:Bucket", "dataflow-archive-raw").name
    statements = granted(rec, "dataflow-process-replay")
    by_action: dict[str, list] = {}
    for s in statements:
        for a in s["Action"]:
            by_action.setdefault(a, []).extend(s["Resource"])
    assert not [a for a in by_action if a.startswith(("kinesis:", "firehose:", "sagemaker:"))]
    assert f"arn:aws:s3:::{archive}/raw/*" in by_action["s3:GetObject"]
    assert sorted(by_action["s3:PutObject"]) == [
        "arn:aws:s3:::dataflow-process-code/staging/*",
        "arn:aws:s3:::dataflow-process-code/temp/*",
    ]
    assert by_action["redshift-data:BatchExecuteStatement"] == [
        f"arn:aws:redshiftserverless:eu-west-1:{AWS_ACCOUNT}:workgroup/dataflow-warehouse-wg"
    ]
    # Its database user gets DML on the pipeline's tables, as the streaming job's does.
    grants = [s.inputs["sql"] for s in rec.of_type("redshiftdata/statement:Statement") if "replay" in s.name]
    assert any(g.startswith("GRANT SELECT, INSERT, UPDATE, DELETE ON") and "IAMR:dataflow-process-replay" in g
               for g in grants), grants  # fmt: skip
