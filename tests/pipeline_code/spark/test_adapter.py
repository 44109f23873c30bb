"""The Spark adapter's own rules: Kinesis offsets and late popularity windows."""

from __future__ import annotations

import duckdb
import pytest

from pipeline_code.core.parse import RawEvent
from pipeline_code.host import ProcessingSettings
from pipeline_code.spark.adapter import MicroBatchRunner, process_micro_batch
from pipeline_code.streams.kinesis import kinesis_offset
from pipeline_code.warehouses.duckdb import DuckDBLookup, LocalWarehouseSink, Warehouse
from tests.conftest import RECEIVED_US, line

HOUR_US = 3_600_000_000


def test_kinesis_offsets_keep_arrival_order_and_fit_int64():
    seqs = ["49590338271490256608559692538361571095921575989136588898", "1", "49590338271490256608559692538"]
    offsets = [kinesis_offset(s, 1_767_268_800_000 + i) for i, s in enumerate(seqs)]
    assert offsets == sorted(offsets)
    assert all(0 < o < 2**63 for o in offsets)
    assert kinesis_offset(seqs[0], 5) != kinesis_offset(seqs[2], 5)


def test_kinesis_offset_names_a_bad_sequence_number():
    with pytest.raises(ValueError, match="sequenceNumber must be decimal digits, got 'abc'"):
        kinesis_offset("abc", 1)


def test_windows_late_beyond_the_lateness_skip_popularity_but_keep_their_events(spark, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    raws = [
        RawEvent(1, RECEIVED_US, line(event_id="now", event_timestamp="2026-01-01T11:30:00Z")),
        RawEvent(2, RECEIVED_US, line(event_id="old", event_timestamp="2025-12-30T08:00:00Z")),
    ]
    settings = ProcessingSettings(shards=2, window_minutes=60, allowed_lateness_minutes=24 * 60)
    sink = LocalWarehouseSink(str(warehouse), str(tmp_path / "staging"), "log", 0, 3)
    watermark = RECEIVED_US - HOUR_US  # 2026-01-01T11:00Z: the old window closed long ago
    result = process_micro_batch(
        spark.sparkContext.parallelize(raws, 2), DuckDBLookup(str(warehouse)), sink, settings, watermark
    )
    assert result.balanced and result.events_stored == 2
    assert result.late_windows_dropped == 1
    con = duckdb.connect(str(warehouse), read_only=True)
    windows = con.execute("SELECT window_start::VARCHAR FROM item_popularity").fetchall()
    con.close()
    assert windows == [("2026-01-01 11:00:00+00",)]


class FailingSink(LocalWarehouseSink):
    """The local sink, failing its first ``fail`` commits (a warehouse outage)."""

    failures = 0

    def __init__(self, *args, fail: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail = fail

    def commit(self, files):
        if FailingSink.failures < self.fail:
            FailingSink.failures += 1
            raise RuntimeError("warehouse unavailable")
        return super().commit(files)


def runner_for(tmp_path, warehouse, fail: int, spilled: list, published: list) -> MicroBatchRunner:
    FailingSink.failures = 0
    return MicroBatchRunner(
        "job",
        ProcessingSettings(shards=2),
        make_lookup=lambda: DuckDBLookup(str(warehouse)),
        make_sink=lambda key, attempt: FailingSink(
            str(warehouse), str(tmp_path / f"staging-{attempt}"), "log", 0, 2, fail=fail
        ),
        spill=lambda batch_id, raws, error: spilled.append((batch_id, raws, error)) or "spill://x",
        publish=published.append,
        attempts=3,
        backoff_s=0,
    )


def test_a_batch_that_fails_to_commit_is_retried_then_counted(spark, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    spilled, published = [], []
    raws = spark.sparkContext.parallelize(
        [RawEvent(1, RECEIVED_US, line(event_id="a")), RawEvent(2, RECEIVED_US, b"x")]
    )
    result = runner_for(tmp_path, warehouse, 2, spilled, published).run(raws, 7)
    assert result is not None and (result.events_stored, result.dead_lettered) == (1, 1)
    assert not spilled and published == [
        {
            "EventsRead": 2,
            "EventsStored": 1,
            "DuplicatesSkipped": 0,
            "DeadLettered": 1,
            "LateWindowsDropped": 0,
        }
    ]


def test_a_batch_that_never_commits_is_spilled_raw_and_nothing_is_stored(spark, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    spilled, published = [], []
    raws = [RawEvent(1, RECEIVED_US, line(event_id="a")), RawEvent(2, RECEIVED_US, b"\xff")]
    runner = runner_for(tmp_path, warehouse, 99, spilled, published)
    assert runner.run(spark.sparkContext.parallelize(raws), 8) is None
    ((batch_id, kept, error),) = spilled
    assert batch_id == 8 and sorted(kept) == sorted(tuple(r) for r in raws)
    assert error == "RuntimeError: warehouse unavailable" and published == [{"SpilledBatches": 1}]
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
    con.close()


def test_spilled_batches_keep_every_byte_and_the_reason():
    import json

    from pipeline_code.streams.records import spill_lines

    raws = [(1, RECEIVED_US, b"\xff\x00binary"), (2, RECEIVED_US, line(event_id="a"))]
    rows = [json.loads(x) for x in spill_lines(raws, "RedshiftError: down").splitlines()]
    assert [(r["source_offset"], r["received_at_us"], bytes.fromhex(r["payload_hex"])) for r in rows] == raws
    assert {r["error"] for r in rows} == {"RedshiftError: down"}
