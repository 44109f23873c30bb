"""The Glue streaming job: Kinesis in, Redshift Serverless out.

Glue runs ``pipeline_code/spark/glue_job.py`` (uploaded by the AWS
processing component), which calls ``main``. The Glue-specific part is thin:

    Kinesis (raw records) -> glueContext.forEachBatch(window, S3 checkpoint)
        -> process_micro_batch (the same adapter local PySpark runs)
        -> RedshiftSink: Parquet staged in S3, one Data API transaction

Kinesis is read with the Spark Structured Streaming connector
(``format("aws-kinesis")``), which hands over each record's raw bytes, its
sequence number and arrival time, so a line that is not JSON reaches the
dead letters byte for byte. A micro-batch that cannot be committed after
``commit_attempts`` is written, raw, to the dead-letter bucket and the
stream moves on: nothing is dropped and one poison batch does not stop the
job.

The replay job (``pipeline_code/spark/glue_replay_job.py``, a ``glueetl``
job started on demand) calls ``replay_main``: the Firehose archive's range
or the stored dead letters, through the same adapter, committed as a replay
(``pipeline_code.spark.replay``); its arguments are ``archive_uri``,
``region``, ``workgroup``, ``database``, ``staging_uri``, ``copy_role_arn``,
the processing settings and the replay's (``--replay``, ``--replay_from``,
``--replay_to``, ``--replay_stage``, ``--replay_since``).

Job arguments (``--name value``, set by the component): ``stream_name``,
``region``, ``workgroup``, ``database``, ``staging_uri``, ``checkpoint_uri``,
``dead_letter_uri``, ``copy_role_arn`` and the processing settings
(``pipeline_code.host.job_arguments``: ``batch_seconds``, ``shards``,
``window_minutes``, ``allowed_lateness_minutes``, ``session_gap_minutes``).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from pipeline_code import host
from pipeline_code.host import (
    ProcessingSettings,
    ReplayRequest,
    add_arguments,
    add_replay_arguments,
    from_arguments,
    replay_from_arguments,
)
from pipeline_code.spark.adapter import MicroBatchRunner
from pipeline_code.streams.kinesis import to_raw
from pipeline_code.streams.records import spill_lines
from pipeline_code.warehouses.redshift import RedshiftDataLookup, RedshiftSink

log = logging.getLogger("dataflow.glue")


@dataclass(frozen=True)
class JobArgs:
    stream_name: str
    region: str
    workgroup: str
    database: str
    staging_uri: str
    checkpoint_uri: str
    dead_letter_uri: str
    copy_role_arn: str
    settings: ProcessingSettings
    job_name: str = "dataflow"
    commit_attempts: int = 3


def parse_args(argv: list[str]) -> JobArgs:
    """The job's arguments. Glue adds its own (``--JOB_ID`` ...): ignored."""
    p = argparse.ArgumentParser(prog="glue_job")
    for name in (
        "stream_name",
        "region",
        "workgroup",
        "database",
        "staging_uri",
        "checkpoint_uri",
        "dead_letter_uri",
        "copy_role_arn",
    ):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--JOB_NAME", dest="job_name", default="dataflow")
    p.add_argument("--commit_attempts", type=int, default=3)
    add_arguments(p)
    a, _unknown = p.parse_known_args(argv)
    for name in ("staging_uri", "checkpoint_uri", "dead_letter_uri"):
        value = getattr(a, name)
        if not value.startswith("s3://"):
            raise ValueError(f"--{name} must be an s3:// URI, got {value!r}")
    settings = from_arguments(a)
    return JobArgs(
        a.stream_name,
        a.region,
        a.workgroup,
        a.database,
        a.staging_uri.rstrip("/"),
        a.checkpoint_uri,
        a.dead_letter_uri.rstrip("/"),
        a.copy_role_arn,
        settings,
        a.job_name,
        a.commit_attempts,
    )


def kinesis_source_options(args: JobArgs) -> dict[str, str]:
    """Options of the Kinesis connector for Spark Structured Streaming."""
    return {
        "kinesis.streamName": args.stream_name,
        "kinesis.region": args.region,
        "kinesis.endpointUrl": f"https://kinesis.{args.region}.amazonaws.com",
        "kinesis.consumerType": "GetRecords",
        # A new job starts from the oldest retained record; after that the
        # S3 checkpoint says where to resume.
        "kinesis.startingposition": "TRIM_HORIZON",
    }


def put_metrics(args: JobArgs, values: dict[str, float]) -> None:
    """Publish one micro-batch's counts (``EventsRead``, ``DeadLettered``, ...)."""
    import boto3

    dims = [{"Name": "Job", "Value": args.job_name}]
    boto3.client("cloudwatch", region_name=args.region).put_metric_data(
        Namespace=host.CLOUDWATCH_NAMESPACE,
        MetricData=[
            {"MetricName": name, "Dimensions": dims, "Value": float(v), "Unit": "Count"}
            for name, v in sorted(values.items())
        ],
    )


def spill(args: JobArgs, batch_id: int, raws: list[tuple[int, int, bytes]], error: str) -> str:
    """Write a batch that could not be committed, raw, to the dead-letter bucket."""
    import boto3

    url = urlparse(f"{args.dead_letter_uri}/{args.job_name}/batch-{batch_id:012d}.jsonl")
    boto3.client("s3", region_name=args.region).put_object(
        Bucket=url.netloc, Key=url.path.lstrip("/"), Body=spill_lines(raws, error)
    )
    return f"s3://{url.netloc}{url.path}"


def batch_runner(args: JobArgs) -> MicroBatchRunner:
    """The engine-neutral runner wired to Redshift, S3 and CloudWatch."""

    def make_sink(key: str, attempt: int) -> RedshiftSink:
        # Each attempt stages afresh: a COPY of the prefix must not load an earlier attempt's files.
        batch = key.rsplit(":", 1)[1]
        prefix = f"{args.staging_uri}/{args.job_name}/batch-{batch}/attempt-{attempt}"
        return RedshiftSink(args.region, args.workgroup, args.database, args.copy_role_arn, key, prefix)

    return MicroBatchRunner(
        args.job_name,
        args.settings,
        make_lookup=lambda: RedshiftDataLookup(args.workgroup, args.database, args.region),
        make_sink=make_sink,
        spill=lambda batch_id, raws, error: spill(args, batch_id, raws, error),
        publish=lambda counts: put_metrics(args, counts),
        attempts=args.commit_attempts,
    )


class BatchProcessor:
    """What ``forEachBatch`` calls with each micro-batch's DataFrame."""

    def __init__(self, args: JobArgs) -> None:
        self.runner = batch_runner(args)

    def __call__(self, frame, batch_id: int) -> None:
        raws = frame.select("data", "sequenceNumber", "approximateArrivalTimestamp").rdd.map(to_raw)
        self.runner.run(raws, batch_id)


def main(argv: list[str] | None = None) -> None:
    """The Glue job (needs Glue's ``awsglue`` and the Kinesis connector jar)."""
    import sys

    from awsglue.context import GlueContext  # type: ignore[import-not-found]
    from pyspark.context import SparkContext

    args = parse_args(sys.argv[1:] if argv is None else argv)
    glue = GlueContext(SparkContext.getOrCreate())
    frame = glue.spark_session.readStream.format("aws-kinesis").options(**kinesis_source_options(args)).load()
    glue.forEachBatch(
        frame=frame,
        batch_function=BatchProcessor(args),
        options={
            "windowSize": f"{args.settings.batch_seconds} seconds",
            "checkpointLocation": args.checkpoint_uri,
        },
    )


@dataclass(frozen=True)
class ReplayJobArgs:
    archive_uri: str
    region: str
    workgroup: str
    database: str
    staging_uri: str
    copy_role_arn: str
    settings: ProcessingSettings
    request: ReplayRequest
    job_name: str = "dataflow-replay"


def parse_replay_args(argv: list[str]) -> ReplayJobArgs:
    """The replay job's arguments (``ValueError`` names a bad one)."""
    p = argparse.ArgumentParser(prog="glue_replay_job")
    for name in ("archive_uri", "region", "workgroup", "database", "staging_uri", "copy_role_arn"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--JOB_NAME", dest="job_name", default="dataflow-replay")
    add_arguments(p)
    add_replay_arguments(p)
    a, _unknown = p.parse_known_args(argv)
    for name in ("archive_uri", "staging_uri"):
        value = getattr(a, name)
        if not value.startswith("s3://"):
            raise ValueError(f"--{name} must be an s3:// URI, got {value!r}")
    return ReplayJobArgs(
        a.archive_uri.rstrip("/"),
        a.region,
        a.workgroup,
        a.database,
        a.staging_uri.rstrip("/"),
        a.copy_role_arn,
        from_arguments(a),
        replay_from_arguments(a),
        a.job_name,
    )


def replay_main(argv: list[str] | None = None) -> None:
    """The Glue replay job (a ``glueetl`` run; needs Glue's ``awsglue``)."""
    import sys

    from awsglue.context import GlueContext  # type: ignore[import-not-found]
    from pyspark.context import SparkContext

    from pipeline_code.spark.replay import run_replay

    args = parse_replay_args(sys.argv[1:] if argv is None else argv)
    glue = GlueContext(SparkContext.getOrCreate())

    def lookup() -> RedshiftDataLookup:
        return RedshiftDataLookup(args.workgroup, args.database, args.region)

    def make_sink(key: str, replay) -> RedshiftSink:
        prefix = f"{args.staging_uri}/{args.job_name}/{key.rsplit(':', 1)[1]}"
        return RedshiftSink(
            args.region, args.workgroup, args.database, args.copy_role_arn, key, prefix, replay
        )

    run_replay(
        glue.spark_session,
        args.request,
        job_name=args.job_name,
        kind="firehose",
        archive_uri=args.archive_uri,
        settings=args.settings,
        make_lookup=lookup,
        make_sink=make_sink,
    )
