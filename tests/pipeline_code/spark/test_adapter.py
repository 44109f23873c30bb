"""The Spark adapter's own rules: Kinesis offsets and late popularity windows."""

from __future__ import annotations

import duckdb
import pytest

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.settings import ProcessingSettings
from pipeline_code.local.warehouse import LocalWarehouseSink, Warehouse
from pipeline_code.lookup import DuckDBLookup
from pipeline_code.spark.adapter import kinesis_offset, process_micro_batch
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
