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

Job arguments (``--name value``, set by the component): ``stream_name``,
``region``, ``workgroup``, ``database``, ``staging_uri``, ``checkpoint_uri``,
``dead_letter_uri``, ``copy_role_arn``, ``window_seconds`` and the
processing settings ``shards``, ``window_minutes``,
``allowed_lateness_minutes``, ``session_gap_minutes``.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pipeline_code import redshift
from pipeline_code.core.parse import RawEvent
from pipeline_code.core.settings import ProcessingSettings, add_arguments, from_arguments
from pipeline_code.lookup import RedshiftDataLookup, to_us, wait_for_statement
from pipeline_code.spark.adapter import MicroBatchRunner, kinesis_offset, spill_lines
from pipeline_code.tables import TABLES, arrow_schema

log = logging.getLogger("dataflow.glue")
METRICS_NAMESPACE = "DataFlow"
"""CloudWatch namespace of the job's own metrics (dimension ``Job``): the
monitoring component's dead-letter and spill alarms read them."""


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
    window_seconds: int
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
    p.add_argument("--window_seconds", type=int, default=10)
    p.add_argument("--commit_attempts", type=int, default=3)
    add_arguments(p)
    a, _unknown = p.parse_known_args(argv)
    for name in ("staging_uri", "checkpoint_uri", "dead_letter_uri"):
        value = getattr(a, name)
        if not value.startswith("s3://"):
            raise ValueError(f"--{name} must be an s3:// URI, got {value!r}")
    if a.window_seconds < 1:
        raise ValueError(f"--window_seconds must be at least 1, got {a.window_seconds}")
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
        a.window_seconds,
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


def to_raw(row: Any) -> tuple[int, int, bytes]:
    """A connector row (``data``, ``sequenceNumber``,
    ``approximateArrivalTimestamp``) -> a ``RawEvent`` tuple."""
    arrived = to_us(row["approximateArrivalTimestamp"])
    return tuple(
        RawEvent(kinesis_offset(row["sequenceNumber"], arrived // 1000), arrived, bytes(row["data"]))
    )  # type: ignore[return-value]


class RedshiftSink:
    """Stages row batches as Parquet under ``<staging>/<batch>/<table>/``
    (on the executors, through pyarrow's S3 filesystem), then commits the
    batch with one Data API ``BatchExecuteStatement`` (one transaction)."""

    def __init__(self, args: JobArgs, batch_key: str, batch_prefix: str) -> None:
        self.region = args.region
        self.workgroup = args.workgroup
        self.database = args.database
        self.copy_role_arn = args.copy_role_arn
        self.batch_key = batch_key
        self.prefix = batch_prefix

    def stage(self, table: str, rows: list[dict[str, Any]]) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyarrow import fs

        url = urlparse(f"{self.prefix}/{table}/{uuid.uuid4().hex}.parquet")
        s3 = fs.S3FileSystem(region=self.region)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=arrow_schema(TABLES[table])),
            f"{url.netloc}{url.path}",
            filesystem=s3,
        )
        return f"s3://{url.netloc}{url.path}"

    def commit(self, files: dict[str, list[str]]) -> dict[str, Any]:
        import boto3

        staged = {table: f"{self.prefix}/{table}/" for table in files}
        statements = redshift.merge_statements(self.batch_key, staged, self.copy_role_arn)
        client = boto3.client("redshift-data", region_name=self.region)
        batch = client.batch_execute_statement(
            WorkgroupName=self.workgroup, Database=self.database, Sqls=statements
        )
        wait_for_statement(client, batch["Id"], f"batch {self.batch_key}", poll_s=0.5)
        return {"statement_id": batch["Id"], "tables": sorted(files)}


def put_metrics(args: JobArgs, values: dict[str, float]) -> None:
    """Publish one micro-batch's counts (``EventsRead``, ``DeadLettered``, ...)."""
    import boto3

    dims = [{"Name": "Job", "Value": args.job_name}]
    boto3.client("cloudwatch", region_name=args.region).put_metric_data(
        Namespace=METRICS_NAMESPACE,
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
        return RedshiftSink(args, key, f"{args.staging_uri}/{args.job_name}/batch-{batch}/attempt-{attempt}")

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
        options={"windowSize": f"{args.window_seconds} seconds", "checkpointLocation": args.checkpoint_uri},
    )
