"""The Synapse job's own parts, run here: arguments, capture records into the
adapter, staging for COPY INTO, and the T-SQL it sends."""

from __future__ import annotations

import datetime as dt
import json
import re

import duckdb
import pytest
import sqlglot

from pipeline_code import synapse
from pipeline_code.core.settings import ProcessingSettings
from pipeline_code.local.warehouse import LocalWarehouseSink, Warehouse
from pipeline_code.lookup import DuckDBLookup
from pipeline_code.spark.adapter import process_micro_batch
from pipeline_code.spark.synapse import https_of, parse_args, to_raw
from pipeline_code.tables import TABLES
from tests.conftest import line

LAKE = "abfss://{c}@lake1.dfs.core.windows.net/{p}"
ARGS = [
    "--capture_uri", LAKE.format(c="capture", p="ns/events"),
    "--staging_uri", LAKE.format(c="work", p="staging"),
    "--checkpoint_uri", LAKE.format(c="work", p="checkpoint"),
    "--dead_letter_uri", LAKE.format(c="dead-letters", p=""),
    "--sql_server", "ws.sql.azuresynapse.net", "--sql_database", "dataflow", "--shards", "4",
]  # fmt: skip


def test_job_arguments_parse_and_bad_ones_are_named():
    args = parse_args(ARGS)
    assert args.settings == ProcessingSettings(shards=4) and args.window_seconds == 60
    argv = [*ARGS]
    argv[argv.index("--staging_uri") + 1] = "wasbs://x"
    with pytest.raises(ValueError, match=re.escape("--staging_uri must be an abfss:// URI, got 'wasbs://x'")):
        parse_args(argv)


def test_copy_into_reads_the_https_form_of_the_staging_path():
    assert https_of("abfss://jobs@lake1.dfs.core.windows.net/staging/b1/events/") == (
        "https://lake1.dfs.core.windows.net/jobs/staging/b1/events/"
    )
    with pytest.raises(ValueError, match="is not abfss://CONTAINER@ACCOUNT"):
        https_of("abfss://lake1.blob.core.windows.net/x")


def test_capture_records_reach_the_adapter_byte_for_byte(spark, tmp_path):
    """Rows shaped as Event Hubs Capture writes them (Avro fields, plus the
    partition taken from the file path)."""
    rows = [
        (line(event_id="c1"), 41, "11/24/2026 8:00:01 PM", "0"),
        (b"\x00binary junk", 41, "11/24/2026 8:00:01 PM", "1"),
    ]
    frame = spark.createDataFrame(
        rows, "Body binary, SequenceNumber long, EnqueuedTimeUtc string, partition string"
    )
    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    raws = frame.rdd.map(to_raw)
    offsets = [r[0] for r in raws.collect()]
    assert len(set(offsets)) == 2  # same sequence number, other partition
    sink = LocalWarehouseSink(str(warehouse), str(tmp_path / "s"), "capture", 0, 2)
    result = process_micro_batch(raws, DuckDBLookup(str(warehouse)), sink, ProcessingSettings(shards=2))
    assert result.balanced and (result.events_stored, result.dead_lettered) == (1, 1)
    con = duckdb.connect(str(warehouse), read_only=True)
    ((payload, received),) = con.execute("SELECT payload, received_at FROM dead_letters").fetchall()
    con.close()
    assert payload == b"\x00binary junk" and received == dt.datetime(2026, 11, 24, 20, 0, 1, tzinfo=dt.UTC)


def test_nested_columns_are_staged_as_json_text():
    row = {c: None for c in TABLES["user_features"].column_names()}
    row.update(user_key="u1", first_seen_at=1, last_seen_at=2, lifetime_events=1)
    row.update(lifetime_purchases=0, lifetime_revenue=0.0, recent_items=["b", "a"], last_session_items=[])
    row["is_bot"] = False
    staged = synapse.stage_rows(TABLES["user_features"], [row])
    assert str(staged.schema.field("recent_items").type) == "string"
    assert json.loads(staged.column("recent_items")[0].as_py()) == ["b", "a"]


def test_synapse_sql_parses_as_tsql():
    """Every statement parses in sqlglot's T-SQL dialect. ``CLUSTERED
    COLUMNSTORE INDEX`` is a Synapse table option sqlglot does not know, so
    the DDL is parsed with ``HEAP`` (the other documented option) in its place."""
    staged = {t: f"https://lake1.dfs.core.windows.net/jobs/staging/9/{t}/*.parquet" for t in TABLES}
    load, merge, cleanup = synapse.batch_statements("job:9", staged)
    ddl = [s.replace("CLUSTERED COLUMNSTORE INDEX", "HEAP") for s in synapse.all_ddl()]
    for sql in [*ddl, *load, *merge, *cleanup]:
        for tree in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
            assert type(tree).__name__ != "Command", f"not parsed, only passed through: {sql[:80]}"
    assert sum(s.startswith("COPY INTO") for s in load) == len(TABLES)
    guard = "NOT EXISTS (SELECT 1 FROM dbo._dataflow_batches WHERE batch_key = N'job:9')"
    assert all(guard in s for s in merge) and merge[-1].startswith("INSERT INTO dbo._dataflow_batches")
    assert len(cleanup) == len(TABLES)


def test_synapse_ddl_follows_the_table_description():
    events = synapse.ddl(TABLES["events"])
    assert re.search(r"\bitems NVARCHAR\(MAX\) (NOT )?NULL", events)
    assert "DISTRIBUTION = HASH(user_key), HEAP" in events  # MAX columns: a heap
    assert "CLUSTERED COLUMNSTORE INDEX" in synapse.ddl(TABLES["item_popularity"])
    assert "is_bot BIT NOT NULL" in synapse.ddl(TABLES["sessions"])


def test_batch_counts_become_application_insights_metric_telemetry():
    from pipeline_code.spark.synapse import metrics_envelope

    connection = (
        "InstrumentationKey=00000000-1111-2222-3333-444444444444;"
        "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
    )
    url, (envelope,) = metrics_envelope(
        connection, "dataflow-stream", {"DeadLettered": 3, "EventsRead": 10}, "t"
    )
    assert url == "https://westeurope-5.in.applicationinsights.azure.com/v2/track"
    assert envelope["name"] == "Microsoft.ApplicationInsights.00000000111122223333444444444444.Metric"
    base = envelope["data"]["baseData"]
    assert envelope["data"]["baseType"] == "MetricData" and base["properties"] == {"Job": "dataflow-stream"}
    assert base["metrics"] == [
        {"name": "DeadLettered", "value": 3.0, "count": 1},
        {"name": "EventsRead", "value": 10.0, "count": 1},
    ]
    with pytest.raises(ValueError, match="no InstrumentationKey"):
        metrics_envelope("IngestionEndpoint=https://x/", "j", {}, "t")
