"""The Synapse Spark job: Event Hubs Capture files in, the dedicated SQL pool out.

The Data Factory pipeline starts this as a Synapse Spark job definition
(``pipeline_code/spark/synapse_job.py`` calls ``main``). Event Hubs Capture
writes every event, as sent, into Avro files in the lake (so nothing is
lost while processing is stopped); this job reads them as a stream:

    capture Avro (Body bytes, SequenceNumber, EnqueuedTimeUtc)
        -> foreachBatch (window, checkpoint in the lake)
        -> MicroBatchRunner / process_micro_batch (the adapter Glue runs)
        -> SynapseSink: Parquet staged in the lake, COPY INTO, one transaction

Before the stream starts it creates any of the tables the pool lacks, from
``pipeline_code.synapse`` (no ARM resource runs T-SQL).

It authenticates as the workspace's managed identity: to the lake through
Spark's ABFS driver and pyarrow, to the SQL pool with an Entra ID token
(``mssparkutils``) handed to pyodbc. A batch that cannot be committed after
``commit_attempts`` is written raw to the dead-letter container.
"""

from __future__ import annotations

import argparse
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pipeline_code import synapse
from pipeline_code.core.parse import RawEvent
from pipeline_code.core.settings import ProcessingSettings, add_arguments, from_arguments
from pipeline_code.lookup import USER_FEATURES, history_row, to_us
from pipeline_code.spark.adapter import MicroBatchRunner, spill_lines, stream_offset
from pipeline_code.tables import TABLES

# Event Hubs Capture's Avro record.
CAPTURE_SCHEMA = (
    "SequenceNumber long, Offset string, EnqueuedTimeUtc string, "
    "SystemProperties map<string,string>, Properties map<string,string>, Body binary"
)
SQL_COPT_SS_ACCESS_TOKEN = 1256  # pyodbc's connection attribute for an Entra ID token


@dataclass(frozen=True)
class JobArgs:
    capture_uri: str
    staging_uri: str
    checkpoint_uri: str
    dead_letter_uri: str
    sql_server: str
    sql_database: str
    window_seconds: int
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
    p.add_argument("--window_seconds", type=int, default=60)
    p.add_argument("--commit_attempts", type=int, default=3)
    add_arguments(p)
    a = p.parse_args(argv)
    for name in ("capture_uri", "staging_uri", "checkpoint_uri", "dead_letter_uri"):
        value = getattr(a, name)
        if not value.startswith("abfss://"):
            raise ValueError(f"--{name} must be an abfss:// URI, got {value!r}")
    if a.window_seconds < 1:
        raise ValueError(f"--window_seconds must be at least 1, got {a.window_seconds}")
    settings = from_arguments(a)
    return JobArgs(
        a.capture_uri.rstrip("/"),
        a.staging_uri.rstrip("/"),
        a.checkpoint_uri,
        a.dead_letter_uri.rstrip("/"),
        a.sql_server,
        a.sql_database,
        a.window_seconds,
        settings,
        a.job_name,
        a.commit_attempts,
        a.insights_connection,
    )


def https_of(abfss: str) -> str:
    """``abfss://container@account.dfs.core.windows.net/path`` -> the https URL COPY INTO reads."""
    u = urlparse(abfss)
    container, _, host = u.netloc.partition("@")
    if not container or not host.endswith(".dfs.core.windows.net"):
        raise ValueError(f"{abfss!r} is not abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH")
    return f"https://{host}/{container}{u.path}"


def to_raw(row: Any) -> tuple[int, int, bytes]:
    """A capture record -> a ``RawEvent`` tuple. The offset orders by
    enqueue time; the partition (from the file path) and sequence number
    separate events enqueued in the same millisecond."""
    import datetime as dt

    enqueued = dt.datetime.strptime(row["EnqueuedTimeUtc"], "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=dt.UTC)
    at_us = to_us(enqueued)
    offset = stream_offset(f"{row['partition']}:{row['SequenceNumber']}", at_us // 1000)
    return tuple(RawEvent(offset, at_us, bytes(row["Body"])))  # type: ignore[return-value]


def _connect(server: str, database: str, token: str):
    import pyodbc  # the Synapse Spark runtime ships it with the SQL Server ODBC driver

    raw = token.encode("utf-16-le")
    return pyodbc.connect(
        f"Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:{server},1433;Database={database};"
        "Encrypt=yes;TrustServerCertificate=no",
        attrs_before={SQL_COPT_SS_ACCESS_TOKEN: struct.pack(f"<I{len(raw)}s", len(raw), raw)},
    )


class SynapseLookup:
    """``WarehouseLookup`` over the dedicated SQL pool, with a token the
    driver fetched for this batch (executors have no ``mssparkutils``)."""

    def __init__(self, server: str, database: str, token: str) -> None:
        self.server, self.database, self.token = server, database, token
        self.con = None

    def open(self) -> None:
        self.con = _connect(self.server, self.database, self.token)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def _rows(self, sql: str, params: list) -> list:
        cur = self.con.cursor()  # type: ignore[union-attr]
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(event_ids), 1000):
            chunk = event_ids[i : i + 1000]
            rows = self._rows(
                "SELECT event_id FROM dbo.events WHERE event_id IN (SELECT value FROM OPENJSON(?))",
                [json.dumps(chunk)],
            )
            found.update(r["event_id"] for r in rows)
        return found

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for i in range(0, len(user_keys), 1000):
            rows = self._rows(
                f"SELECT * FROM dbo.{USER_FEATURES} WHERE user_key IN (SELECT value FROM OPENJSON(?))",
                [json.dumps(user_keys[i : i + 1000])],
            )
            for row in rows:
                out[row["user_key"]] = history_row(row)
        return out


class SynapseSink:
    """Stages row batches as Parquet in the lake (pyarrow's Azure filesystem,
    managed identity), then loads and merges them in one transaction."""

    def __init__(self, args: JobArgs, batch_key: str, prefix: str, token: str) -> None:
        self.args, self.batch_key, self.prefix, self.token = args, batch_key, prefix, token

    def stage(self, table: str, rows: list[dict[str, Any]]) -> str:
        import pyarrow.parquet as pq
        from pyarrow import fs

        u = urlparse(f"{self.prefix}/{table}/{uuid.uuid4().hex}.parquet")
        container, _, host = u.netloc.partition("@")
        azure = fs.AzureFileSystem(account_name=host.split(".")[0])
        pq.write_table(synapse.stage_rows(TABLES[table], rows), f"{container}{u.path}", filesystem=azure)
        return f"{self.prefix}/{table}/"

    def commit(self, files: dict[str, list[str]]) -> dict[str, Any]:
        staged = {table: https_of(f"{self.prefix}/{table}/") + "*.parquet" for table in files}
        load, merge, cleanup = synapse.batch_statements(self.batch_key, staged)
        con = _connect(self.args.sql_server, self.args.sql_database, self.token)
        try:
            cur = con.cursor()
            for sql in load:
                cur.execute(sql)
            con.commit()
            for sql in merge:  # pyodbc keeps one transaction open until commit
                cur.execute(sql)
            con.commit()
            for sql in cleanup:
                cur.execute(sql)
            con.commit()
        except Exception:
            con.rollback()
            raise
        finally:
            con.close()
        return {"tables": sorted(files)}


def ensure_tables(args: JobArgs, token: str) -> None:
    """Create whichever logical tables the pool lacks (the DDL is idempotent)."""
    con = _connect(args.sql_server, args.sql_database, token)
    try:
        cur = con.cursor()
        for sql in synapse.all_ddl():
            cur.execute(sql)
        con.commit()
    finally:
        con.close()


def metrics_envelope(connection_string: str, job: str, counts: dict[str, float], at: str) -> tuple[str, list]:
    """One micro-batch's counts as Application Insights metric telemetry:
    ``(track URL, envelopes)`` for the ingestion endpoint's ``/v2/track``."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    if "InstrumentationKey" not in parts:
        raise ValueError("--insights_connection has no InstrumentationKey")
    ikey = parts["InstrumentationKey"]
    endpoint = parts.get("IngestionEndpoint", "https://dc.services.visualstudio.com/").rstrip("/")
    envelope = {
        "name": f"Microsoft.ApplicationInsights.{ikey.replace('-', '')}.Metric",
        "time": at,
        "iKey": ikey,
        "data": {
            "baseType": "MetricData",
            "baseData": {
                "ver": 2,
                "metrics": [
                    {"name": name, "value": float(v), "count": 1} for name, v in sorted(counts.items())
                ],
                "properties": {"Job": job},
            },
        },
    }
    return f"{endpoint}/v2/track", [envelope]


def publish_metrics(args: JobArgs, counts: dict[str, float]) -> None:
    """Send a batch's counts to Application Insights (the monitoring
    component alerts on ``DeadLettered`` and ``SpilledBatches``)."""
    import datetime as dt
    import urllib.request

    if not args.insights_connection:
        return
    at = dt.datetime.now(dt.UTC).isoformat()
    url, body = metrics_envelope(args.insights_connection, args.job_name, counts, at)
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


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
        return SynapseSink(
            args, key, f"{args.staging_uri}/{args.job_name}/batch-{batch}/attempt-{attempt}", token()
        )

    ensure_tables(args, token())
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
        .trigger(processingTime=f"{args.window_seconds} seconds")
        .start()
    )
    query.awaitTermination()
