"""The Spark adapter on local PySpark, over the local event log and DuckDB.

    dataflow process --engine spark --input events.jsonl --warehouse warehouse.duckdb

or, against an existing log, ``process_log_spark(log_dir, warehouse)``; and
``replay_archive_spark`` over archive files (a batch replay, as Glue and
Synapse run it, committed as a replay: ``pipeline_code.local.replay``). A
run is one micro-batch: everything past the warehouse's checkpoint, read in
``chunk_bytes`` ranges on the executors (as Beam's ``ReadEventLog`` does),
run through ``process_micro_batch`` and committed with the checkpoint in one
DuckDB transaction. It needs the ``spark`` extra and a Java runtime (17+).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from pipeline_code.core.ports import RunSummary
from pipeline_code.host import ProcessingSettings
from pipeline_code.spark.adapter import BatchResult, process_micro_batch
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.warehouses.duckdb import (
    DuckDBLookup,
    LocalWarehouseSink,
    Warehouse,
    check_run,
    run_staging,
)


class SparkUnavailable(Exception):
    """PySpark or a Java runtime is missing."""


def spark_session(cores: int = 2):
    """A local Spark session for this machine: no UI, few shuffle partitions,
    the workers on this interpreter."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable("PySpark is not installed: pip install 'data-flow[spark]'") from exc
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailable("Spark needs a Java runtime (17 or newer): none on PATH and JAVA_HOME unset")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("dataflow")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(cores * 2))
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class _ReadRange:
    """``(start, end)`` of the log -> its ``RawEvent`` tuples (on an executor)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def __call__(self, byte_range: tuple[int, int]):
        return [tuple(raw) for raw in EventLog(self.log_dir).read_range(*byte_range)]


def _summary(
    run_id: str, log_id: str, start: int, end: int, result: BatchResult, started: float
) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        log_id=log_id,
        from_offset=start,
        to_offset=end,
        events_read=result.events_read,
        events_stored=result.events_stored,
        duplicates_skipped=result.duplicates_skipped,
        dead_lettered=result.dead_lettered,
        started_at=started,
        seconds=time.time() - started,
    )


def process_log_spark(
    log_dir: str | Path,
    warehouse: str | Path,
    settings: ProcessingSettings | None = None,
    spark=None,
    chunk_bytes: int = 1 << 20,
) -> RunSummary:
    """Run the Spark adapter over the log past the checkpoint and commit it."""
    settings = settings or ProcessingSettings()
    spark = spark or spark_session()
    log = EventLog(log_dir)
    started = time.time()
    run_id = uuid.uuid4().hex
    with run_staging(warehouse, run_id) as staging:
        with Warehouse(warehouse) as wh:
            from_offset = wh.checkpoint(log.log_id)
        from_offset, to_offset = log.unread_range(from_offset)
        ranges = log.ranges(from_offset, to_offset, chunk_bytes)
        raws = spark.sparkContext.parallelize(ranges, max(1, len(ranges))).flatMap(_ReadRange(str(log.path)))
        run = {
            "run_id": run_id,
            "started_at": started,
            "events_read": log.count_records(from_offset, to_offset),
        }
        sink = LocalWarehouseSink(str(warehouse), str(staging), log.log_id, from_offset, to_offset, run)
        result: BatchResult = process_micro_batch(raws, DuckDBLookup(str(warehouse)), sink, settings)
        summary = _summary(run_id, log.log_id, from_offset, to_offset, result, started)
        check_run(warehouse, summary)
        return summary


def replay_archive_spark(
    warehouse: str | Path,
    paths: list[str],
    kind: str,
    start_us: int,
    end_us: int,
    settings: ProcessingSettings | None = None,
    spark=None,
) -> RunSummary:
    """Reprocess the archive files (``pipeline_code.spark.archive``'s kinds)
    whose records arrived in ``[start_us, end_us)``, as one batch committed
    as a replay (no checkpoint moves; ``_dataflow_replays``)."""
    from pipeline_code.spark.archive import archive_raws

    settings = settings or ProcessingSettings()
    spark = spark or spark_session()
    started = time.time()
    run_id = uuid.uuid4().hex
    with run_staging(warehouse, run_id) as staging:
        with Warehouse(warehouse) as wh:
            generation = wh.generation()
        raws = archive_raws(spark, paths, kind, start_us, end_us).persist()
        try:
            run = {
                "run_id": run_id,
                "started_at": started,
                "events_read": raws.count(),
                "generation": generation,
                "kind": "archive",
                "detail": f"spark {kind} {start_us}..{end_us}",
            }
            sink = LocalWarehouseSink(str(warehouse), str(staging), "archive", 0, 0, run)
            result: BatchResult = process_micro_batch(raws, DuckDBLookup(str(warehouse)), sink, settings)
        finally:
            raws.unpersist()
        summary = _summary(run_id, "archive", 0, 0, result, started)
        check_run(warehouse, summary)
        return summary
