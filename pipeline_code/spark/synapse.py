"""The Synapse Spark job: Event Hubs Capture files in, the dedicated SQL pool out.

The Data Factory pipeline starts this as a Synapse Spark job definition
(``pipeline_code/spark/synapse_job.py`` calls ``main``). Event Hubs Capture
writes every event, as sent, into Avro files in the lake (so nothing is
lost while processing is stopped); this job reads them as a stream:

    capture Avro (Body bytes, SequenceNumber, EnqueuedTimeUtc)
        -> foreachBatch (window, checkpoint in the lake)
        -> MicroBatchRunner / process_micro_batch (the adapter Glue runs)
        -> SynapseSink: Parquet staged in the lake, COPY INTO, one transaction

The replay job definition (``pipeline_code/spark/synapse_replay_job.py``,
started on demand by the chain's replay pipeline in Data Factory) calls
``replay_main``: a range of Capture's Avro, or the stored dead letters,
through the same adapter, committed as a replay
(``pipeline_code.spark.replay``).

Before the stream starts it creates any of the tables the pool lacks, from
``pipeline_code.warehouses.synapse`` (no ARM resource runs T-SQL).

It authenticates as the workspace's managed identity: to the lake through
Spark's ABFS driver and pyarrow, to the SQL pool with an Entra ID token
(``mssparkutils``) handed to pyodbc. A batch that cannot be committed after
``commit_attempts`` is written raw to the dead-letter container.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pipeline_code.host import (
    ProcessingSettings,
    ReplayRequest,
    add_arguments,
    add_replay_arguments,
    from_arguments,
    post_metrics,
    replay_from_arguments,
)
from pipeline_code.spark.adapter import MicroBatchRunner
from pipeline_code.streams.eventhubs import CAPTURE_SCHEMA, to_raw
from pipeline_code.streams.records import spill_lines
from pipeline_code.warehouses.synapse import SynapseLookup, SynapseSink, ensure_tables


@dataclass(frozen=True)
class JobArgs:
    capture_uri: str
    staging_uri: str
    checkpoint_uri: str
    dead_letter_uri: str
    sql_server: str
    sql_database: str
    settings: ProcessingSettings
    job_name: str = "dataflow"
    commit_attempts: int = 3
    insights_connection: str | None = None


def parse_args(argv: list[str]) -> JobArgs:
    p = argparse.ArgumentParser(prog="synapse_job")
    for name in (
        "capture_uri",
        "staging_uri",
        "checkpoint_uri",
        "dead_letter_uri",
        "sql_server",
        "sql_database",
    ):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--job_name", default="dataflow")
    p.add_argument("--insights_connection", default=None, help="Application Insights connection string")
    p.add_argument("--commit_attempts", type=int, default=3)
    add_arguments(p)
    a = p.parse_args(argv)
    for name in ("capture_uri", "staging_uri", "checkpoint_uri", "dead_letter_uri"):
        value = getattr(a, name)
        if not value.startswith("abfss://"):
            raise ValueError(f"--{name} must be an abfss:// URI, got {value!r}")
    settings = from_arguments(a)
    return JobArgs(
        a.capture_uri.rstrip("/"),
        a.staging_uri.rstrip("/"),
        a.checkpoint_uri,
        a.dead_letter_uri.rstrip("/"),
        a.sql_server,
        a.sql_database,
        settings,
        a.job_name,
        a.commit_attempts,
        a.insights_connection,
    )


def publish_metrics(args: JobArgs, counts: dict[str, float]) -> None:
    """Send a batch's counts to Application Insights (the monitoring
    component alerts on ``DeadLettered`` and ``SpilledBatches``)."""
    if args.insights_connection:
        post_metrics(args.insights_connection, args.job_name, counts)


def main(argv: list[str] | None = None) -> None:
    """The Synapse Spark job (needs the Synapse runtime: ``mssparkutils``, pyodbc)."""
    import sys

    from notebookutils import mssparkutils  # type: ignore[import-not-found]
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import input_file_name, regexp_extract

    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = SparkSession.builder.getOrCreate()

    def token() -> str:
        return mssparkutils.credentials.getToken("DW")

    def spill(batch_id: int, raws: list, error: str) -> str:
        where = f"{args.dead_letter_uri}/{args.job_name}/batch-{batch_id:012d}.jsonl"
        mssparkutils.fs.put(where, spill_lines(raws, error).decode(), True)
        return where

    def make_sink(key: str, attempt: int) -> SynapseSink:
        batch = key.rsplit(":", 1)[1]
        prefix = f"{args.staging_uri}/{args.job_name}/batch-{batch}/attempt-{attempt}"
        return SynapseSink(args.sql_server, args.sql_database, key, prefix, token())

    ensure_tables(args.sql_server, args.sql_database, token())
    runner = MicroBatchRunner(
        args.job_name,
        args.settings,
        make_lookup=lambda: SynapseLookup(args.sql_server, args.sql_database, token()),
        make_sink=make_sink,
        spill=spill,
        publish=lambda counts: publish_metrics(args, counts),
        attempts=args.commit_attempts,
    )
    stream = (
        spark.readStream.format("avro")
        .schema(CAPTURE_SCHEMA)
        .option("recursiveFileLookup", "true")
        .load(args.capture_uri)
        # Capture's path is <namespace>/<hub>/<partition>/<yyyy>/...
        .withColumn("partition", regexp_extract(input_file_name(), r"/(\d+)/\d{4}/", 1))
    )
    query = (
        stream.writeStream.foreachBatch(
            lambda frame, batch_id: runner.run(
                frame.select("Body", "SequenceNumber", "EnqueuedTimeUtc", "partition").rdd.map(to_raw),
                batch_id,
            )
        )
        .option("checkpointLocation", args.checkpoint_uri)
        .trigger(processingTime=f"{args.settings.batch_seconds} seconds")
        .start()
    )
    query.awaitTermination()


@dataclass(frozen=True)
class ReplayJobArgs:
    capture_uri: str
    staging_uri: str
    sql_server: str
    sql_database: str
    settings: ProcessingSettings
    request: ReplayRequest
    job_name: str = "dataflow-replay"


def parse_replay_args(argv: list[str]) -> ReplayJobArgs:
    """The replay job's arguments (``ValueError`` names a bad one)."""
    p = argparse.ArgumentParser(prog="synapse_replay_job")
    for name in ("capture_uri", "staging_uri", "sql_server", "sql_database"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--job_name", default="dataflow-replay")
    add_arguments(p)
    add_replay_arguments(p)
    a = p.parse_args(argv)
    for name in ("capture_uri", "staging_uri"):
        value = getattr(a, name)
        if not value.startswith("abfss://"):
            raise ValueError(f"--{name} must be an abfss:// URI, got {value!r}")
    return ReplayJobArgs(
        a.capture_uri.rstrip("/"),
        a.staging_uri.rstrip("/"),
        a.sql_server,
        a.sql_database,
        from_arguments(a),
        replay_from_arguments(a),
        a.job_name,
    )


def replay_main(argv: list[str] | None = None) -> None:
    """The Synapse replay job (needs the Synapse runtime: ``mssparkutils``, pyodbc)."""
    import sys

    from notebookutils import mssparkutils  # type: ignore[import-not-found]
    from pyspark.sql import SparkSession

    from pipeline_code.spark.replay import run_replay

    args = parse_replay_args(sys.argv[1:] if argv is None else argv)
    spark = SparkSession.builder.getOrCreate()

    def token() -> str:
        return mssparkutils.credentials.getToken("DW")

    def make_sink(key: str, replay) -> SynapseSink:
        prefix = f"{args.staging_uri}/{args.job_name}/{key.rsplit(':', 1)[1]}"
        return SynapseSink(args.sql_server, args.sql_database, key, prefix, token(), replay)

    ensure_tables(args.sql_server, args.sql_database, token())
    run_replay(
        spark,
        args.request,
        job_name=args.job_name,
        kind="capture",
        archive_uri=args.capture_uri,
        settings=args.settings,
        make_lookup=lambda: SynapseLookup(args.sql_server, args.sql_database, token()),
        make_sink=make_sink,
    )
