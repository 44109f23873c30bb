"""Replays: the same pipeline over input the warehouse already counted.

A store processed in pieces and then replayed whole, from the event log or
from the archive files, leaves every table as it was; a loosened validation
rule and a replay of the dead letters store exactly the events that now
pass, once."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_code.cli import main
from pipeline_code.core import parse
from pipeline_code.local.replay import archive_range, replay_archive, replay_dead_letters
from pipeline_code.local.run import process_log
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import TABLES
from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError
from tests.conftest import line

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ALL_TIME = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def tables(warehouse) -> dict[str, list]:
    """Every table's rows, sorted (dead letters without the time they were written)."""
    out = {}
    with Warehouse(warehouse, read_only=True) as wh:
        for name in TABLES:
            cols = [c for c in TABLES[name].column_names() if c != "dead_lettered_at"]
            rows = wh.con.execute(f"SELECT {', '.join(cols)} FROM {name}").fetchall()
            out[name] = sorted(rows, key=repr)
    return out


@pytest.fixture
def pieces(tmp_path):
    """3,000 synthetic lines (duplicates and malformed ones among them),
    appended and processed in three pieces, as a stream would."""
    log = EventLog(tmp_path / "w.eventlog")
    warehouse = tmp_path / "w.duckdb"
    lines = list(generate(StoreSpec(events=3000, seed=11)))
    for i in range(3):
        log.append(lines[i * 1000 : (i + 1) * 1000])
        process_log(log.path, warehouse)
    return log, warehouse


@pytest.mark.slow
def test_replaying_everything_from_the_log_changes_no_table(pieces) -> None:
    log, warehouse = pieces
    before = tables(warehouse)
    assert before["dead_letters"] and before["sessions"]
    summary = replay_archive(warehouse, log.path, *ALL_TIME)
    assert summary.events_read == 3000 and summary.balanced
    assert (summary.events_stored, summary.dead_lettered, summary.duplicates_skipped) == (0, 0, 3000)
    assert tables(warehouse) == before
    # The processing runs still add up to the log; the replay is on its own.
    with Warehouse(warehouse, read_only=True) as wh:
        assert wh.con.execute("SELECT sum(events_read) FROM _dataflow_runs").fetchone()[0] == 3000
        assert wh.con.execute("SELECT kind, events_read FROM _dataflow_replays").fetchall() == [
            ("archive", 3000)
        ]


@pytest.mark.slow
def test_the_archive_files_replay_to_the_same_tables_and_fill_a_new_warehouse(pieces, tmp_path) -> None:
    log, warehouse = pieces
    out = tmp_path / "archive"
    assert archive_range(log, 0, 2**62, out) == 3000
    files = sorted(out.rglob("*.avro"))
    assert files and all(len(f.relative_to(out).parts) == 5 for f in files)  # YYYY/MM/DD/HH/file
    before = tables(warehouse)
    assert replay_archive(warehouse, log.path, *ALL_TIME, archive_dir=out).events_stored == 0
    assert tables(warehouse) == before
    # Into an empty warehouse, the archive gives what processing the log gave.
    fresh = tmp_path / "fresh.duckdb"
    Warehouse(fresh).close()
    replay_archive(fresh, log.path, *ALL_TIME, archive_dir=out)
    assert tables(fresh) == before


@pytest.mark.slow
def test_an_archive_range_takes_only_what_arrived_in_it(tmp_path) -> None:
    log = EventLog(tmp_path / "w.eventlog")
    warehouse = tmp_path / "w.duckdb"
    log.append([line(event_id="early")], received_at_us=1_767_268_800_000_000)  # 2026-01-01 12:00
    log.append(
        [line(event_id="late", event_timestamp="2026-01-02T10:00:00Z")], received_at_us=1_767_355_200_000_000
    )
    Warehouse(warehouse).close()
    summary = replay_archive(
        warehouse, log.path, dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
    )
    assert (summary.events_read, summary.events_stored) == (1, 1)
    with Warehouse(warehouse, read_only=True) as wh:
        assert wh.con.execute("SELECT event_id FROM events").fetchall() == [("late",)]


@pytest.mark.slow
def test_dead_letters_replayed_after_a_fix_are_stored_once(tmp_path, monkeypatch) -> None:
    log = EventLog(tmp_path / "w.eventlog")
    warehouse = tmp_path / "w.duckdb"
    received = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
    future = "2026-01-03T12:00:00Z"  # 48 h after arrival: refused by the 24 h skew rule
    log.append(
        [
            line(event_id="ok"),
            line(event_id="f1", event_timestamp=future),
            line(event_id="f2", event_timestamp=future, user_id="u-2"),
            line(event_id="ok", event_timestamp=future),  # passes after the fix, but its id is stored
            b"{not json",
        ],
        received_at_us=received,
    )
    first = process_log(log.path, warehouse)
    assert (first.events_stored, first.dead_lettered) == (1, 4)
    # The fix: allow a week of clock skew.
    monkeypatch.setattr(parse, "FUTURE_SKEW_US", 7 * 24 * 3600 * 1_000_000)
    summary = replay_dead_letters(warehouse)
    assert summary.balanced and summary.events_read == 4
    assert (summary.events_stored, summary.duplicates_skipped, summary.dead_lettered) == (2, 1, 1)
    with Warehouse(warehouse, read_only=True) as wh:
        ids = sorted(r[0] for r in wh.con.execute("SELECT event_id FROM events").fetchall())
        dead = wh.con.execute("SELECT failed_stage, payload FROM dead_letters").fetchall()
        sessions = wh.con.execute("SELECT sum(events) FROM sessions").fetchone()[0]
    assert ids == ["f1", "f2", "ok"]
    assert dead == [("parse", b"{not json")]  # one row for the one that still fails
    assert sessions == 3  # the replayed events reached the derived tables, once
    # Again: nothing left to store, the one failure keeps its one row.
    again = replay_dead_letters(warehouse)
    assert (again.events_read, again.events_stored, again.dead_lettered) == (1, 0, 1)
    with Warehouse(warehouse, read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1


@pytest.mark.slow
def test_replaying_one_stage_leaves_the_others(tmp_path) -> None:
    log = EventLog(tmp_path / "w.eventlog")
    warehouse = tmp_path / "w.duckdb"
    log.append([b"{not json", line(event_id="v", event_timestamp="1999-01-01T00:00:00Z")])
    process_log(log.path, warehouse)
    summary = replay_dead_letters(warehouse, stage="parse")
    assert (summary.events_read, summary.dead_lettered) == (1, 1)
    with Warehouse(warehouse, read_only=True) as wh:
        stages = sorted(r[0] for r in wh.con.execute("SELECT failed_stage FROM dead_letters").fetchall())
    assert stages == ["parse", "validate"]


def test_a_commit_after_another_commit_is_refused(tmp_path) -> None:
    warehouse = tmp_path / "w.duckdb"
    log = EventLog(tmp_path / "w.eventlog")
    log.append([line(event_id="a")])
    with Warehouse(warehouse) as wh:
        stale = wh.generation()
    process_log(log.path, warehouse)
    run = {
        "run_id": "r",
        "started_at": 0.0,
        "events_read": 0,
        "generation": stale,
        "kind": "archive",
        "detail": "x",
    }
    with (
        Warehouse(warehouse) as wh,
        pytest.raises(WarehouseError, match="committed since run r took its snapshot"),
    ):
        wh.replay({}, run)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay"], "exactly one of --dead-letters or --archive"),
        (["replay", "--dead-letters", "--archive"], "exactly one of --dead-letters or --archive"),
        (["replay", "--archive", "--from", "2026-01-01"], "needs --from and --to"),
        (["replay", "--dead-letters", "--from", "2026-01-01"], "takes --stage and --since"),
        (["replay", "--archive", "--from", "2026-01-02", "--to", "2026-01-01x"], "expected a date or time"),
    ],
)
def test_replay_options_are_checked(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_replay_into_a_missing_warehouse_says_so(tmp_path, capsys) -> None:
    assert main(["replay", "--dead-letters", "--warehouse", str(tmp_path / "none.duckdb")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_commands_run_and_report(pieces, tmp_path, capsys) -> None:
    _, warehouse = pieces
    out = tmp_path / "exported"
    assert (
        main(
            [
                "archive",
                "--from",
                "2000-01-01",
                "--to",
                "2100-01-01",
                "--out",
                str(out),
                "--warehouse",
                str(warehouse),
            ]
        )
        == 0
    )
    assert "archived 3,000 events" in capsys.readouterr().out
    assert (
        main(
            [
                "replay",
                "--archive",
                "--from",
                "2000-01-01",
                "--to",
                "2100-01-01",
                "--warehouse",
                str(warehouse),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "dataflow replay --archive" in text and "3,000" in text
