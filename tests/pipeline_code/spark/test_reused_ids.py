"""An event id reused under another user is one event everywhere: the
derived tables agree with ``events`` on every engine (Beam's local runner
and the Spark adapter), within a run and across runs."""

from __future__ import annotations

from pipeline_code.local.run import process_log
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.warehouses.duckdb import Warehouse
from tests.conftest import line


def _view(event_id: str, user: str, item: str, minute: int) -> bytes:
    return line(
        event_id=event_id,
        user_id=user,
        session_id=f"s-{user}",
        items=[{"item_id": item, "price": 1.0}],
        event_timestamp=f"2026-01-01T10:{minute:02d}:00Z",
    )


PARTS = [
    # e3 twice in one run, first under A (kept), then under B.
    [
        _view("e1", "A", "sku-1", 0),
        _view("e2", "C", "sku-2", 1),
        _view("e3", "A", "sku-3", 2),
        _view("e3", "B", "sku-8", 3),
    ],
    # e1 again in a later run, under B.
    [_view("e1", "B", "sku-9", 4)],
]


def check(warehouse) -> None:
    with Warehouse(warehouse, read_only=True) as wh:
        q = wh.con.execute
        assert sorted(q("SELECT event_id, user_key FROM events").fetchall()) == [
            ("e1", "A"),
            ("e2", "C"),
            ("e3", "A"),
        ]
        for table in ("user_features", "sessions", "user_item_interactions"):
            users = {r[0] for r in q(f"SELECT DISTINCT user_key FROM {table}").fetchall()}
            assert users == {"A", "C"}, table
        assert q("SELECT sum(events) FROM sessions").fetchone()[0] == 3
        assert q("SELECT sum(lifetime_events) FROM user_features").fetchone()[0] == 3
        items = {r[0] for r in q("SELECT item_id FROM item_features").fetchall()}
        assert items == {"sku-1", "sku-2", "sku-3"}
        runs = q(
            "SELECT sum(events_read), sum(events_stored), sum(duplicates_skipped) FROM _dataflow_runs"
        ).fetchone()
    assert runs == (5, 3, 2)


def test_beam_counts_a_reused_id_once(tmp_path) -> None:
    log = EventLog(tmp_path / "w.eventlog")
    for part in PARTS:
        log.append(part)
        summary = process_log(log.path, tmp_path / "w.duckdb")
        assert summary.balanced
    check(tmp_path / "w.duckdb")


def test_spark_counts_a_reused_id_once(tmp_path, spark) -> None:
    from pipeline_code.spark.local import process_log_spark

    log = EventLog(tmp_path / "w.eventlog")
    for part in PARTS:
        log.append(part)
        summary = process_log_spark(log.path, tmp_path / "w.duckdb", spark=spark)
        assert summary.balanced
    check(tmp_path / "w.duckdb")
