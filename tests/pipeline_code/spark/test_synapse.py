"""The Synapse job's own parts, run here: arguments, capture records into the
adapter, staging for COPY INTO, and the T-SQL it sends."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest

from pipeline_code.host import ProcessingSettings
from pipeline_code.spark.adapter import process_micro_batch
from pipeline_code.spark.synapse import parse_args, parse_replay_args, to_raw
from pipeline_code.warehouses.duckdb import DuckDBLookup, LocalWarehouseSink, Warehouse
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
    assert args.settings == ProcessingSettings(shards=4)
    argv = [*ARGS]
    argv[argv.index("--staging_uri") + 1] = "wasbs://x"
    with pytest.raises(ValueError, match=re.escape("--staging_uri must be an abfss:// URI, got 'wasbs://x'")):
        parse_args(argv)


def test_replay_job_arguments_parse_and_bad_ones_are_named():
    argv = [
        "--capture_uri", LAKE.format(c="capture", p=""), "--staging_uri", LAKE.format(c="work", p="staging"),
        "--sql_server", "ws.sql.azuresynapse.net", "--sql_database", "dataflow",
        "--replay", "dead_letters", "--replay_stage", "validate",
    ]  # fmt: skip
    args = parse_replay_args(argv)
    assert args.request.describe() == "dead_letters stage=validate since=any"
    assert args.capture_uri == "abfss://capture@lake1.dfs.core.windows.net"
    with pytest.raises(ValueError, match=re.escape("--replay_since must be a date or time")):
        parse_replay_args([*argv, "--replay_since", "last week"])
    with pytest.raises(ValueError, match=re.escape("--replay archive needs --replay_from and --replay_to")):
        parse_replay_args([*argv[:-3], "archive"])


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


def test_batch_counts_become_application_insights_metric_telemetry():
    from pipeline_code.host import metrics_envelope

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
