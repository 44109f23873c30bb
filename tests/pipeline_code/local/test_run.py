"""The local chain end to end: ingest, process, load, and its guarantees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

import pipeline_code.local.run as local_run
from pipeline_code.core.history import shard_of
from pipeline_code.core.parse import MAX_ROUTED_SHARDS
from pipeline_code.host import ProcessingSettings
from pipeline_code.local.run import InputError, process_files, process_log
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.synth import StoreSpec, write
from pipeline_code.tables import TABLES
from pipeline_code.warehouses.duckdb import LocalWarehouseSink, Warehouse, WarehouseError
from tests.conftest import HOSTILE, line


def counts(warehouse) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("events", "dead_letters", "sessions", "user_features", "item_features")
        }
    finally:
        con.close()


@pytest.fixture
def corpus(tmp_path):
    good = [
        line(event_id="e1", user_id="u1", event_timestamp="2026-01-01T10:00:00Z"),
        line(event_id="e2", user_id="u1", event_name="add_to_cart", event_timestamp="2026-01-01T10:01:00Z"),
        line(event_id="e3", user_id="u2", event_timestamp="2026-01-01T11:00:00Z"),
        line(event_id="e1", user_id="u1", event_timestamp="2026-01-01T10:00:00Z"),  # a retry
    ]
    path = tmp_path / "in.jsonl"
    # A timestamp in 2026 must not count as "future" whenever the tests run.
    path.write_bytes(b"\n".join([*good, *(p for _, p, _, _ in HOSTILE)]) + b"\n")
    return path


def test_hostile_corpus_is_conserved_and_matches_the_tables(tmp_path, corpus):
    wh = tmp_path / "w.duckdb"
    s = process_files([corpus], wh)
    assert s.events_read == 4 + len(HOSTILE)
    assert (s.events_stored, s.duplicates_skipped, s.dead_lettered) == (3, 1, len(HOSTILE))
    assert s.balanced
    c = counts(wh)
    assert c["events"] == s.events_stored and c["dead_letters"] == s.dead_lettered
    con = duckdb.connect(str(wh), read_only=True)
    payloads = {r[0] for r in con.execute("SELECT payload FROM dead_letters").fetchall()}
    con.close()
    assert payloads == {p for _, p, _, _ in HOSTILE}  # every original, byte for byte


def test_the_same_events_sent_again_add_no_event_rows(tmp_path, corpus):
    wh = tmp_path / "w.duckdb"
    process_files([corpus], wh)
    before = counts(wh)
    again = tmp_path / "again.jsonl"  # the same events in another file: a redelivery
    again.write_bytes(corpus.read_bytes() + b"\n")
    s = process_files([again], wh)
    assert s.events_stored == 0 and s.duplicates_skipped == 4 and s.balanced
    after = counts(wh)
    assert after["events"] == before["events"]
    assert after["user_features"] == before["user_features"]


def test_a_failed_commit_loses_nothing_and_the_next_run_recovers(tmp_path, corpus, monkeypatch):
    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    log = EventLog(log_dir)
    log.append(corpus.read_bytes().splitlines())

    def crash(self, files):
        raise RuntimeError("disk full during commit")

    monkeypatch.setattr(LocalWarehouseSink, "commit", crash)
    with pytest.raises(Exception, match="disk full"):
        process_log(log_dir, wh)
    assert counts(wh)["events"] == 0  # nothing half-loaded
    monkeypatch.undo()
    s = process_log(log_dir, wh)  # the restart reads from the old checkpoint
    assert s.events_stored == 3 and s.balanced
    again = process_log(log_dir, wh)  # and nothing is re-read after it
    assert again.events_read == 0 and counts(wh)["events"] == 3


def test_new_events_extend_history_across_runs(tmp_path):
    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    log = EventLog(log_dir)
    log.append([line(event_id="a", user_id="u", event_timestamp="2026-01-01T10:00:00Z")])
    process_log(log_dir, wh)
    log.append(
        [
            line(
                event_id="b",
                user_id="u",
                event_timestamp="2026-01-01T10:10:00Z",
                items=[{"item_id": "sku-2"}],
            )
        ]
    )
    s = process_log(log_dir, wh)
    assert s.events_read == 1
    con = duckdb.connect(str(wh), read_only=True)
    number, recent = con.execute(
        "SELECT user_event_number, user_recent_items FROM events WHERE event_id = 'b'"
    ).fetchone()
    pairs = con.execute(
        "SELECT item_id, other_item_id, sessions FROM item_cooccurrence ORDER BY 1"
    ).fetchall()
    con.close()
    assert number == 2 and recent == ["sku-1"]
    assert pairs == [("sku-1", "sku-2", 1), ("sku-2", "sku-1", 1)]


def test_missing_input_fails_before_anything_is_ingested(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        process_files([tmp_path / "nope.jsonl"], tmp_path / "w.duckdb")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no"):
        process_files([empty], tmp_path / "w.duckdb")


def test_a_log_cut_below_the_checkpoint_is_refused_and_nothing_changes(tmp_path):
    """A log truncated (or replaced) below the warehouse's checkpoint would
    have new appends land where the next run never reads: refused by name."""
    from pipeline_code.streams.eventlog import EventLogError

    log = EventLog(tmp_path / "log")
    log.append([line(event_id=f"e-{i}") for i in range(5)])
    warehouse = tmp_path / "w.duckdb"
    assert process_log(log.path, warehouse).events_stored == 5
    (segment,) = sorted(log.path.glob("*.log"))
    data = segment.read_bytes()
    segment.write_bytes(data[: data.index(b"\n") + 1])  # only the first record is left
    with pytest.raises(EventLogError, match="past the end of the log"):
        process_log(log.path, warehouse)
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (5,)


def runs_add_up(warehouse) -> None:
    """Every committed run is in _dataflow_runs and the runs add up to the tables."""
    with duckdb.connect(str(warehouse)) as con:
        stored, dead, read, dups = con.execute(
            "SELECT sum(events_stored), sum(dead_lettered), sum(events_read), sum(duplicates_skipped) "
            "FROM _dataflow_runs"
        ).fetchone()
        assert stored == con.execute("SELECT count(*) FROM events").fetchone()[0]
        assert dead == con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        assert read == stored + dead + dups


def test_a_crash_right_after_the_commit_keeps_the_runs_summary(tmp_path, corpus, monkeypatch):
    """The summary is committed with the rows and the checkpoint: a kill after
    the commit (here: the engine's counters cannot even be read) loses nothing."""
    import pipeline_code.local.run as run

    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    EventLog(log_dir).append(corpus.read_bytes().splitlines())

    def killed(result, name):
        raise KeyboardInterrupt("killed after the commit")

    monkeypatch.setattr(run, "_counter", killed)
    with pytest.raises(KeyboardInterrupt):
        process_log(log_dir, wh)
    monkeypatch.undo()
    assert counts(wh)["events"] == 3
    runs_add_up(wh)
    assert process_log(log_dir, wh).events_read == 0  # nothing is read twice
    runs_add_up(wh)


def test_the_engines_counts_and_the_commits_agree_on_the_hostile_corpus(tmp_path, corpus):
    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    EventLog(log_dir).append(corpus.read_bytes().splitlines() * 2)  # every event twice: duplicates too
    summary = process_log(log_dir, wh)
    assert summary.balanced and summary.duplicates_skipped > 0 and summary.dead_lettered > 0
    runs_add_up(wh)


def enospc(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_the_commit_is_one_line_naming_it(tmp_path, corpus, monkeypatch):
    """Beam wraps the commit's error in its own traceback; the user gets the real cause."""
    from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError

    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    EventLog(log_dir).append(corpus.read_bytes().splitlines())
    monkeypatch.setattr(Warehouse, "load", enospc)
    with pytest.raises(WarehouseError) as failed:
        process_log(log_dir, wh)
    message = str(failed.value)
    assert "No space left on device" in message and "\n" not in message and "nothing was stored" in message
    monkeypatch.undo()
    assert counts(wh)["events"] == 0 and process_log(log_dir, wh).events_stored == 3  # resumes


def test_a_failure_that_ends_the_transaction_is_not_masked_by_the_rollback(tmp_path, corpus, monkeypatch):
    """DuckDB ends a transaction on some errors; the ROLLBACK after them then
    fails with "no transaction is active", which hid the cause."""
    import pipeline_code.warehouses.duckdb as duck
    from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError

    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    EventLog(log_dir).append(corpus.read_bytes().splitlines())
    opened: list[Warehouse] = []
    real_init = Warehouse.__init__

    def remember(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        opened.append(self)

    def ends_the_transaction(**counts):  # stands in for LoadResult, after the merges, before COMMIT
        opened[-1].con.execute("ROLLBACK")  # as DuckDB does on an I/O error
        enospc()

    monkeypatch.setattr(Warehouse, "__init__", remember)
    monkeypatch.setattr(duck, "LoadResult", ends_the_transaction)
    with pytest.raises(WarehouseError, match="No space left on device"):
        process_log(log_dir, wh)


def test_a_full_disk_under_the_log_is_the_logs_error_not_the_inputs(tmp_path, corpus, monkeypatch):
    from pipeline_code.streams.eventlog import EventLogError

    monkeypatch.setattr(EventLog, "append", enospc)
    with pytest.raises(EventLogError, match=r"event log .* cannot be written: No space left on device"):
        process_files([corpus], tmp_path / "w.duckdb")


def log_lines(log_dir) -> int:
    return sum(1 for _ in EventLog(log_dir).read())


def test_a_file_processed_again_is_not_appended_again(tmp_path, corpus):
    """Rerunning the documented command after a crash, or by mistake, must not
    double the dead letters (before: 287 -> 574)."""
    wh = tmp_path / "w.duckdb"
    first = process_files([corpus], wh)
    lines = log_lines(tmp_path / "w.eventlog")
    second = process_files([corpus], wh)
    assert log_lines(tmp_path / "w.eventlog") == lines and second.events_read == 0
    assert counts(wh)["dead_letters"] == first.dead_lettered


def test_an_ingest_cut_by_a_crash_resumes_where_it_stopped(tmp_path, corpus, monkeypatch):
    """Killed right after an append wrote its lines and before it was
    recorded: the rerun reads back what landed and appends nothing twice."""
    import pipeline_code.local.run as run

    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    total = len([x for x in corpus.read_bytes().splitlines() if x.strip()])
    monkeypatch.setattr(run, "INGEST_BATCH", 2)
    real = EventLog.append
    appends = []

    def killed_after_the_second_write(self, payloads, received_at_us=None, before_write=None):
        result = real(self, payloads, received_at_us, before_write)
        appends.append(len(payloads))
        if len(appends) == 2:
            raise KeyboardInterrupt("killed between the write and its record")
        return result

    monkeypatch.setattr(EventLog, "append", killed_after_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        process_files([corpus], wh, log_dir)
    assert log_lines(log_dir) == 4
    monkeypatch.setattr(EventLog, "append", real)
    summary = process_files([corpus], wh, log_dir)
    assert log_lines(log_dir) == total and summary.events_read == total  # each line once


def test_a_killed_runs_staging_is_removed_by_the_next_run_and_a_live_ones_is_not(tmp_path, corpus):
    """kill -9 runs no ``finally``: the staging folder stays. The next run
    removes the folders of runs that died and leaves a live run's alone."""
    import fcntl

    wh, log_dir = tmp_path / "w.duckdb", tmp_path / "log"
    EventLog(log_dir).append(corpus.read_bytes().splitlines())
    staging = tmp_path / "w.staging"
    (staging / "killed-run" / "events").mkdir(parents=True)
    (staging / "killed-run" / "events" / "part.parquet").write_bytes(b"x" * 1000)
    (staging / "killed-run.lock").touch()
    (staging / "live-run").mkdir()
    with open(staging / "live-run.lock", "w") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        assert process_log(log_dir, wh).events_stored == 3
        left = sorted(p.name for p in staging.iterdir())
    assert left == ["live-run", "live-run.lock"]  # the run's own folder went too


def chain_tables(warehouse) -> dict[str, list[tuple]]:
    """Every chain table's rows, sorted, without the one column that says
    when (not what): ``dead_lettered_at``."""
    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name in TABLES:
            cols = [c for c, *_ in con.execute(f"DESCRIBE {name}").fetchall() if c != "dead_lettered_at"]
            out[name] = sorted(map(repr, con.execute(f"SELECT {', '.join(cols)} FROM {name}").fetchall()))
    return out


@pytest.fixture
def store_log(tmp_path, corpus):
    """One log with a synthetic store's 3,000 events, the hostile corpus and
    a retry, ingested once (so every warehouse reads the same offsets and
    arrival times)."""
    data = tmp_path / "store.jsonl"
    with open(data, "wb") as f:
        write(StoreSpec(events=3_000), f)
    log = EventLog(tmp_path / "log")
    log.append(data.read_bytes().splitlines())
    log.append(corpus.read_bytes().splitlines())
    return log


def test_a_long_log_is_processed_in_committed_runs_that_give_the_tables_of_one(tmp_path, store_log):
    one = process_log(store_log.path, tmp_path / "one.duckdb")
    heard = []
    runs = process_log(store_log.path, tmp_path / "runs.duckdb", run_bytes=500_000, on_run=heard.append)
    ranges = local_run.run_ranges(store_log, 0, store_log.end_offset(), 500_000)
    assert [(r.from_offset, r.to_offset) for r in heard] == ranges
    assert sum(r.events_read for r in heard) == runs.events_read and heard[-1].run_id == runs.run_id
    assert one.runs == 1 and runs.runs == len(ranges) > 4
    counts = ("events_read", "events_stored", "duplicates_skipped", "dead_lettered")
    assert [getattr(runs, k) for k in counts] == [getattr(one, k) for k in counts]
    assert runs.balanced and (runs.from_offset, runs.to_offset) == (0, store_log.end_offset())
    assert chain_tables(tmp_path / "runs.duckdb") == chain_tables(tmp_path / "one.duckdb")
    with duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM _dataflow_runs").fetchone()[0] == runs.runs


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_between_runs_keeps_the_committed_ones_and_the_rest_follows(
    tmp_path, store_log, monkeypatch, workers
):
    """With workers, the fourth run's parts are at work when the third run's
    commit fails: they store nothing, and leave nothing staged."""
    real = Warehouse._load
    calls = []

    def third_commit_fails(self, staged, log_id, from_offset, *args, **kwargs):
        calls.append(from_offset)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(self, staged, log_id, from_offset, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "_load", third_commit_fails)
    with pytest.raises(Exception, match="power cut"):
        process_log(store_log.path, tmp_path / "w.duckdb", run_bytes=500_000, workers=workers)
    monkeypatch.undo()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        (checkpoint,) = con.execute("SELECT log_offset FROM _dataflow_checkpoints").fetchone()
    assert checkpoint == calls[2]  # two runs committed; the third stored nothing
    assert list((tmp_path / "w.staging").rglob("*.parquet")) == []
    rest = process_log(store_log.path, tmp_path / "w.duckdb", run_bytes=500_000, workers=workers)
    assert rest.from_offset == checkpoint and rest.balanced
    process_log(store_log.path, tmp_path / "whole.duckdb")
    assert chain_tables(tmp_path / "w.duckdb") == chain_tables(tmp_path / "whole.duckdb")


def test_a_runs_snapshot_holds_only_the_ids_and_users_its_lines_name(tmp_path, store_log):
    process_log(store_log.path, tmp_path / "w.duckdb")
    with Warehouse(tmp_path / "w.duckdb") as wh:
        stored = wh.con.execute("SELECT event_id, user_key FROM events ORDER BY event_id LIMIT 3").fetchall()
        ids, hist = wh.export_snapshot(
            tmp_path / "snap", ({stored[0][0], stored[1][0], "never-stored"}, {stored[2][1], "anon:nobody"})
        )
        whole = wh.export_snapshot(tmp_path / "whole")
    assert sorted(pq.read_table(ids).column("event_id").to_pylist()) == [stored[0][0], stored[1][0]]
    assert pq.read_table(hist).column("user_key").to_pylist() == [stored[2][1]]
    assert pq.read_table(whole[0]).num_rows == counts(tmp_path / "w.duckdb")["events"]


RUN_COUNTS = ("events_read", "events_stored", "duplicates_skipped", "dead_lettered")


def test_a_snapshot_with_a_pending_runs_staged_files_is_the_one_its_commit_gives(tmp_path, store_log):
    """What the next run's parts start from while a run is committed
    (``export_snapshot``'s ``pending``): the staged ids count as stored and
    the staged histories replace the stored ones, as the commit makes them."""
    wh_path = tmp_path / "w.duckdb"
    process_log(store_log.path, wh_path)
    with Warehouse(wh_path) as wh:
        stored = (
            wh.con.sql("SELECT * FROM user_features ORDER BY user_key LIMIT 2").to_arrow_table().to_pylist()
        )
        event = wh.con.sql("SELECT * FROM events LIMIT 1").to_arrow_table().to_pylist()[0]
    changed = {**stored[0], "lifetime_events": 999, "recent_items": ["sku-new"]}
    new_user = {**stored[1], "user_key": "u-new"}
    new_event = {**event, "event_id": "e-new", "user_key": "u-new", "source_offset": 10**9}
    rows = {"user_features": [changed, new_user], "events": [new_event]}
    sink = LocalWarehouseSink(str(wh_path), str(tmp_path / "stage"), "pending", 0, 1)
    staged = {table: [sink.stage(table, table_rows)] for table, table_rows in rows.items()}
    keys = ({"e-new", "never-stored"}, {changed["user_key"], "u-new", stored[1]["user_key"]})
    with Warehouse(wh_path) as wh:
        before = wh.export_snapshot(tmp_path / "before", keys, pending=staged)
        wh.load(staged, "pending", 0, 1)
        after = wh.export_snapshot(tmp_path / "after", keys)
    for early, late in zip(before, after, strict=True):
        key = pq.read_table(late).column_names[0]
        assert pq.read_table(early).sort_by(key).to_pylist() == pq.read_table(late).sort_by(key).to_pylist()
    assert pq.read_table(before[0]).column("event_id").to_pylist() == ["e-new"]
    history = {r["user_key"]: r for r in pq.read_table(before[1]).to_pylist()}
    assert history[changed["user_key"]]["lifetime_events"] == 999 and len(history) == 3


def test_a_part_failing_in_a_later_run_keeps_the_runs_committed_before_it(tmp_path, store_log, monkeypatch):
    """Run 2 is committed while run 3's parts work; one of them fails: run 3
    stores nothing and leaves nothing staged, and the next process resumes
    at run 3 to the tables of one process."""
    starts = [lo for lo, _ in local_run.run_ranges(store_log, 0, store_log.end_offset(), 500_000)]
    real = LocalWarehouseSink.stage

    def third_run_fails(self, table, rows):
        if self.from_offset == starts[2] and table == "sessions":
            raise OSError(5, "Input/output error")
        return real(self, table, rows)

    monkeypatch.setattr(LocalWarehouseSink, "stage", third_run_fails)  # the workers fork with it
    with pytest.raises(WarehouseError, match="Input/output error"):
        process_log(store_log.path, tmp_path / "w.duckdb", run_bytes=500_000, workers=2)
    monkeypatch.undo()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT log_offset FROM _dataflow_checkpoints").fetchone()[0] == starts[2]
        assert con.execute("SELECT count(*) FROM _dataflow_runs").fetchone()[0] == 2
    assert list((tmp_path / "w.staging").rglob("*.parquet")) == []
    rest = process_log(store_log.path, tmp_path / "w.duckdb", run_bytes=500_000, workers=2)
    assert rest.from_offset == starts[2] and rest.balanced
    process_log(store_log.path, tmp_path / "one.duckdb", run_bytes=500_000, workers=1)
    assert chain_tables(tmp_path / "w.duckdb") == chain_tables(tmp_path / "one.duckdb")


def _part_says_it_started(job, index, count):
    (Path(job.warehouse).parent / f"part-of-{job.from_offset}").touch()
    return local_run._run_part_unpatched(job, index, count)


def test_the_next_runs_parts_work_while_a_run_commits(tmp_path, store_log, monkeypatch):
    """A run is committed while the next run's parts work, from a snapshot
    that counts it as stored: the same tables as one process, run by run."""
    starts = [lo for lo, _ in local_run.run_ranges(store_log, 0, store_log.end_offset(), 700_000)]
    real = Warehouse._load

    def commit_once_the_next_run_works(self, staged, log_id, from_offset, *args, **kwargs):
        later = [lo for lo in starts if lo > from_offset]
        deadline = time.monotonic() + 60
        while later and not (tmp_path / f"part-of-{later[0]}").exists():
            assert time.monotonic() < deadline, f"run {from_offset} was committed with no run at work"
            time.sleep(0.01)
        return real(self, staged, log_id, from_offset, *args, **kwargs)

    monkeypatch.setattr(local_run, "_run_part_unpatched", local_run._run_part, raising=False)
    monkeypatch.setattr(local_run, "_run_part", _part_says_it_started)
    monkeypatch.setattr(Warehouse, "_load", commit_once_the_next_run_works)
    shared = process_log(store_log.path, tmp_path / "shared.duckdb", run_bytes=700_000, workers=2)
    monkeypatch.undo()
    one = process_log(store_log.path, tmp_path / "one.duckdb", run_bytes=700_000, workers=1)
    assert shared.runs == one.runs == len(starts) > 2
    assert [getattr(shared, k) for k in RUN_COUNTS] == [getattr(one, k) for k in RUN_COUNTS]
    assert chain_tables(tmp_path / "shared.duckdb") == chain_tables(tmp_path / "one.duckdb")


def test_processes_sharing_a_log_with_nothing_new_read_nothing_and_commit(tmp_path, store_log):
    """Nothing past the checkpoint: workers given still make one (empty) run."""
    first = process_log(store_log.path, tmp_path / "w.duckdb", workers=2)
    again = process_log(store_log.path, tmp_path / "w.duckdb", workers=2)
    assert first.events_read > 0 and again.balanced
    assert (again.events_read, again.events_stored, again.runs) == (0, 0, 1)
    assert again.from_offset == again.to_offset == first.to_offset


@pytest.mark.parametrize("workers", [2, 3])
def test_runs_shared_by_processes_give_the_tables_of_one_process(tmp_path, store_log, workers):
    # Several runs: later ones meet ids and users the earlier ones stored.
    one = process_log(store_log.path, tmp_path / "one.duckdb", run_bytes=700_000, workers=1)
    shared = process_log(store_log.path, tmp_path / "shared.duckdb", run_bytes=700_000, workers=workers)
    assert shared.runs == one.runs > 2
    assert [getattr(shared, k) for k in RUN_COUNTS] == [getattr(one, k) for k in RUN_COUNTS]
    assert shared.balanced and one.duplicates_skipped > 0 and one.dead_lettered >= len(HOSTILE)
    assert chain_tables(tmp_path / "shared.duckdb") == chain_tables(tmp_path / "one.duckdb")


def test_runs_with_more_shards_than_routes_hold_read_their_keys_in_each_process(tmp_path, store_log):
    """Past ``MAX_ROUTED_SHARDS`` a line's shard does not fit its route: each
    process reads every line's keys instead, with the same tables."""
    many = ProcessingSettings(shards=MAX_ROUTED_SHARDS + 44)
    one = process_log(store_log.path, tmp_path / "one.duckdb", run_bytes=700_000, workers=1)
    shared = process_log(store_log.path, tmp_path / "shared.duckdb", many, run_bytes=700_000, workers=2)
    assert shared.runs == one.runs > 2
    assert [getattr(shared, k) for k in RUN_COUNTS] == [getattr(one, k) for k in RUN_COUNTS]
    assert chain_tables(tmp_path / "shared.duckdb") == chain_tables(tmp_path / "one.duckdb")


def test_the_graph_dataflow_runs_gives_the_tables_of_the_local_one(tmp_path, store_log, monkeypatch):
    """A local run reads each user shard whole (``ReadPartOfRun``), in one
    process too; the graph Dataflow and replays run shuffles instead
    (``DeduplicateEvents``, ``ShardByUser``): the same tables and counts,
    over runs that meet what earlier ones stored."""
    local = process_log(store_log.path, tmp_path / "local.duckdb", run_bytes=700_000, workers=1)
    monkeypatch.setattr(local_run, "Part", lambda *args: None)  # no part: the shuffled graph
    shuffled = process_log(store_log.path, tmp_path / "shuffled.duckdb", run_bytes=700_000, workers=1)
    assert local.runs == shuffled.runs > 2
    assert [getattr(local, k) for k in RUN_COUNTS] == [getattr(shuffled, k) for k in RUN_COUNTS]
    assert chain_tables(tmp_path / "local.duckdb") == chain_tables(tmp_path / "shuffled.duckdb")


def test_ids_reused_across_processes_keep_the_first_valid_copy_in_log_order(tmp_path):
    """Users owned by different processes share ids: the first valid copy in
    log order wins wherever it is, a rejected first copy does not count, and
    an id stored by an earlier run is a duplicate in whichever process meets it."""
    users = [f"u{i}" for i in range(40)]
    a = next(u for u in users if shard_of(u, 32) % 2 == 0)
    b = next(u for u in users if shard_of(u, 32) % 2 == 1)
    at = "2026-01-01T10:00:00Z"
    first = [
        line(event_id="stored", user_id=a, event_timestamp=at),
        line(event_id="x", user_id=b, event_timestamp="1971-01-01T00:00:00Z"),  # rejected
        line(event_id="x", user_id=a, event_timestamp=at),  # the first valid copy
        line(event_id="x", user_id=b, event_timestamp=at),
        line(event_id="y", user_id=b, event_timestamp=at),
        line(event_id="y", user_id=a, event_timestamp=at),
    ]
    later = [
        line(event_id="stored", user_id=b, event_timestamp=at),
        line(event_id="z", user_id=b, event_timestamp=at),
    ]
    log = EventLog(tmp_path / "log")  # one log: both warehouses read the same arrivals
    results = {}
    for lines in (first, later):
        log.append(lines)
        for workers in (1, 2):
            results[workers] = process_log(log.path, tmp_path / f"w{workers}.duckdb", workers=workers)
    for workers in (1, 2):
        with duckdb.connect(str(tmp_path / f"w{workers}.duckdb"), read_only=True) as con:
            kept = con.execute("SELECT event_id, user_key FROM events ORDER BY event_id").fetchall()
        assert kept == [("stored", a), ("x", a), ("y", b), ("z", b)]
    assert results[2].duplicates_skipped == results[1].duplicates_skipped == 1
    assert chain_tables(tmp_path / "w2.duckdb") == chain_tables(tmp_path / "w1.duckdb")


@pytest.mark.slow
def test_where_workers_cannot_fork_they_are_spawned_with_the_same_tables(tmp_path, store_log, monkeypatch):
    """Not on Linux (macOS): one process unless workers are asked for; then
    spawned processes, each importing the pipeline anew."""
    monkeypatch.setattr(local_run, "sys", types.SimpleNamespace(platform="darwin"))
    assert local_run.default_workers() == 1
    spawned = process_log(store_log.path, tmp_path / "spawned.duckdb", run_bytes=1_000_000, workers=2)
    monkeypatch.undo()
    one = process_log(store_log.path, tmp_path / "one.duckdb", run_bytes=1_000_000, workers=1)
    assert [getattr(spawned, k) for k in RUN_COUNTS] == [getattr(one, k) for k in RUN_COUNTS]
    assert chain_tables(tmp_path / "spawned.duckdb") == chain_tables(tmp_path / "one.duckdb")


def test_a_failing_worker_stores_nothing_and_says_why(tmp_path, store_log, monkeypatch):
    def disk_full(self, table, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalWarehouseSink, "stage", disk_full)  # the workers fork with it
    with pytest.raises(WarehouseError, match="the run failed, nothing was stored: No space left on device"):
        process_log(store_log.path, tmp_path / "w.duckdb", workers=2)
    assert counts(tmp_path / "w.duckdb")["events"] == 0


def _first_part_fails_while_the_other_stages(job, index, count):
    started = Path(job.warehouse).parent / "part-1-is-staging"
    if index == 0:
        while not started.exists():
            time.sleep(0.01)
        raise WarehouseError("part 0 failed")
    real = LocalWarehouseSink.stage

    def slow(self, table, rows):  # in this worker only: it stages for a few seconds
        started.touch()
        time.sleep(0.05)
        return real(self, table, rows)

    LocalWarehouseSink.stage = slow
    return local_run._run_part_unpatched(job, index, count)


@pytest.mark.slow
def test_a_failed_part_leaves_nothing_staged_by_the_others(tmp_path, store_log, monkeypatch):
    monkeypatch.setattr(local_run, "_run_part_unpatched", local_run._run_part, raising=False)
    monkeypatch.setattr(local_run, "_run_part", _first_part_fails_while_the_other_stages)
    with pytest.raises(WarehouseError, match="part 0 failed"):
        process_log(store_log.path, tmp_path / "w.duckdb", workers=2)
    staging = tmp_path / "w.staging"
    assert not staging.exists() or list(staging.rglob("*.parquet")) == []
    assert counts(tmp_path / "w.duckdb")["events"] == 0


def test_a_killed_worker_stores_nothing_and_the_next_run_completes(tmp_path, store_log, monkeypatch):
    real = LocalWarehouseSink.stage

    def killed(self, table, rows):
        if table == "sessions":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, table, rows)

    monkeypatch.setattr(LocalWarehouseSink, "stage", killed)
    with pytest.raises(WarehouseError, match="a worker process died"):
        process_log(store_log.path, tmp_path / "w.duckdb", workers=2)
    assert counts(tmp_path / "w.duckdb")["events"] == 0
    monkeypatch.undo()
    assert process_log(store_log.path, tmp_path / "w.duckdb", workers=2).balanced
    process_log(store_log.path, tmp_path / "one.duckdb", workers=1)
    assert chain_tables(tmp_path / "w.duckdb") == chain_tables(tmp_path / "one.duckdb")


def _state(pid: int) -> tuple[str, int] | None:
    """``(state, parent)`` of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state[0] != "Z"  # a zombie is dead, waiting to be reaped


def _children(pid: int) -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (state := _state(int(entry))) and state[1] == pid and _alive(int(entry))
    ]


@pytest.mark.slow
def test_workers_die_with_a_run_killed_outright(tmp_path, store_log):
    """SIGKILL runs no cleanup: the workers must not outlive the run and
    stage into a folder the next run removes."""
    code = (
        "import sys; from pipeline_code.local.run import process_log; "
        "process_log(sys.argv[1], sys.argv[2], workers=2)"
    )
    run = subprocess.Popen([sys.executable, "-c", code, str(store_log.path), str(tmp_path / "w.duckdb")])
    deadline = time.monotonic() + 60
    while len(workers := _children(run.pid)) < 2:
        assert run.poll() is None and time.monotonic() < deadline, "the workers never started"
        time.sleep(0.01)
    run.kill()
    run.wait()
    deadline = time.monotonic() + 10
    while alive := [w for w in workers if _alive(w)]:
        assert time.monotonic() < deadline, f"workers {alive} outlived the run"
        time.sleep(0.05)


def test_a_bad_number_of_workers_is_refused_by_name(tmp_path, store_log):
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        process_log(store_log.path, tmp_path / "w.duckdb", workers=0)
    for flag in ("--direct_num_workers=2", "--direct_num_workers=0"):
        with pytest.raises(ValueError, match=f"--direct_num_workers must be 1 .*got {flag[-1]}.*--workers"):
            process_log(store_log.path, tmp_path / "w.duckdb", options=PipelineOptions([flag]))
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything is touched


def test_keys_read_while_ingesting_are_each_early_runs_keys(tmp_path):
    """``_EarlyKeys`` reads the first runs' keys a share per append, cutting
    where ``EventLog.slices`` does, from the first unread record on."""
    data = tmp_path / "store.jsonl"
    with open(data, "wb") as f:
        write(StoreSpec(events=2_000, duplicate_share=0.05), f)
    lines = data.read_bytes().splitlines()
    log = EventLog(tmp_path / "log", segment_bytes=250_000)
    log.append(lines[:150])  # unread before the ingest starts
    settings = ProcessingSettings()
    with local_run._start_pool(2) as pool:
        early = local_run._EarlyKeys(log, pool, 0, 300_000, settings.shards)
        early.appended(log.end_offset())
        for at in range(150, len(lines), 333):
            log.append(lines[at : at + 333])
            early.appended(log.end_offset())
        runs = log.slices(0, log.end_offset(), 300_000)
        assert len(runs) > 3
        for index, (lo, hi) in enumerate(runs):
            job = types.SimpleNamespace(from_offset=lo, to_offset=hi, settings=settings, warehouse="w")
            found = early.keys(job)
            if index < 2:
                assert found == local_run._keys_in(log, lo, hi, 1 << 20, settings.shards)
            else:
                assert found is None  # read as usual, while the run before works
        joined = types.SimpleNamespace(from_offset=0, to_offset=runs[1][1], settings=settings, warehouse="w")
        assert early.keys(joined) == local_run._keys_in(log, 0, runs[1][1], 1 << 20, settings.shards)
        cut_short = types.SimpleNamespace(
            from_offset=0, to_offset=runs[0][1] - 1, settings=settings, warehouse="w"
        )
        assert early.keys(cut_short) is None


def test_keys_read_while_ingesting_give_the_tables_of_one_process(tmp_path, corpus, monkeypatch):
    data = tmp_path / "store.jsonl"
    with open(data, "wb") as f:
        write(StoreSpec(events=3_000), f)
    log_dir = tmp_path / "log"
    # Inputs that fill a shared run, here: their first two runs' keys are read while they are ingested.
    monkeypatch.setattr(local_run, "SHARDED_MIN_BYTES", 100_000)
    read_after = []

    def counted(read):
        return lambda *args: read_after.append(args) or read(*args)

    for name in ("_keys_of", "_keys_shared"):
        monkeypatch.setattr(local_run, name, counted(getattr(local_run, name)))
    shared = process_files([data, corpus], tmp_path / "shared.duckdb", log_dir, run_bytes=700_000, workers=2)
    assert shared.runs > 2 and len(read_after) == shared.runs - 2
    # The same log (nothing is ingested again), in one process.
    one = process_files([data, corpus], tmp_path / "one.duckdb", log_dir, run_bytes=700_000, workers=1)
    assert one.runs == shared.runs and len(read_after) == 2 * shared.runs - 2
    assert [getattr(shared, k) for k in RUN_COUNTS] == [getattr(one, k) for k in RUN_COUNTS]
    assert chain_tables(tmp_path / "shared.duckdb") == chain_tables(tmp_path / "one.duckdb")


def test_a_short_last_run_joins_the_one_before(tmp_path):
    """A last run under a quarter of the run length costs more in fixed work
    (a pipeline per process, a snapshot, a commit) than its events: it joins
    the run before."""
    log = EventLog(tmp_path / "log")
    log.append([b"x" * 99] * 25, received_at_us=1_000)  # 25 records of 105 bytes
    end = log.end_offset()
    assert local_run.run_ranges(log, 0, end, 1_000) == [(0, 1_050), (1_050, 2_100), (2_100, end)]
    # 105 bytes past 2,520 (under 300): they join the run before.
    assert log.slices(0, end, 1_200)[-1] == (2_520, end)
    assert local_run.run_ranges(log, 0, end, 1_200) == [(0, 1_260), (1_260, end)]
    assert local_run.run_ranges(log, 0, end, 2_400) == [(0, end)]  # 210 bytes past 2,415
    assert local_run.run_ranges(log, end, end, 1_000) == [(end, end)]
