"""The Beam composites on the pinned local runners."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from pipeline_code.beam.io import ReadPartOfRun
from pipeline_code.beam.pipeline import local_runner
from pipeline_code.beam.transforms import (
    DEAD_LETTERS,
    USER_FEATURES,
    CountItemPopularity,
    DeduplicateEvents,
    EnrichWithHistory,
    ParseEvents,
    Part,
    ShardByUser,
)
from pipeline_code.core.history import shard_of
from pipeline_code.core.parse import RawEvent, line_keys, routed_keys
from tests.conftest import RECEIVED_US, line

HOUR_US = 3_600_000_000
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, seconds


def batch_pipeline() -> TestPipeline:
    return TestPipeline(runner=local_runner())


def streaming_pipeline() -> TestPipeline:
    opts = PipelineOptions()
    opts.view_as(StandardOptions).streaming = True
    return TestPipeline(runner=local_runner(streaming=True), options=opts)


def raws(*payloads: bytes) -> list[RawEvent]:
    return [RawEvent(i, RECEIVED_US, p) for i, p in enumerate(payloads)]


def test_parse_events_routes_rejects_to_dead_letters():
    with batch_pipeline() as p:
        parsed = p | beam.Create([raws(line(event_id="a"), b"{oops", line(event_id="b", user_id=None))])
        ids = parsed | ParseEvents()
        assert_that(
            ids.events | "Ids" >> beam.FlatMap(lambda b: [r["event_id"] for r in b]),
            equal_to(["a"]),
            label="accepted",
        )
        assert_that(
            ids[DEAD_LETTERS]
            | "Why" >> beam.FlatMap(lambda b: [(d["failed_stage"], d["payload"]) for d in b]),
            equal_to([("parse", b"{oops"), ("validate", line(event_id="b", user_id=None))]),
            label="dead letters",
        )


def _records(*lines_: bytes):
    from pipeline_code.core.parse import parse_batch

    records, dead = parse_batch(raws(*lines_))
    assert not dead
    return records


def test_dedup_and_enrichment_use_the_warehouse_snapshot():
    new = _records(
        line(event_id="old", user_id="u1", event_timestamp="2026-01-01T10:00:00Z"),
        line(event_id="n1", user_id="u1", event_timestamp="2026-01-01T10:05:00Z"),
        line(event_id="n1", user_id="u1", event_timestamp="2026-01-01T10:05:00Z"),
        line(event_id="n2", user_id="u2", event_timestamp="2026-01-01T10:06:00Z"),
    )
    from pipeline_code.core.history import shard_of

    history_row = {
        "user_key": "u1",
        "first_seen_at": 0,
        "last_seen_at": 0,
        "lifetime_events": 5,
        "lifetime_purchases": 2,
        "lifetime_revenue": 30.0,
        "recent_items": ["x"],
        "last_session_key": None,
        "last_session_items": [],
        "is_bot": False,
    }
    with batch_pipeline() as p:
        known = p | "Known" >> beam.Create([(shard_of("old", 4), ["old"])])
        history = p | "History" >> beam.Create([(shard_of("u1", 4), [history_row])])
        events = p | beam.Create([new[:2], new[2:]])
        losers = events | DeduplicateEvents(known, shards=4)
        enriched = events | ShardByUser(history, losers, shards=4) | EnrichWithHistory()
        assert_that(
            enriched.events
            | "Summary" >> beam.FlatMap(lambda b: [(r["event_id"], r["user_event_number"]) for r in b]),
            equal_to([("n1", 6), ("n2", 1)]),
            label="events",
        )
        assert_that(
            enriched[USER_FEATURES]
            | "Users" >> beam.FlatMap(lambda b: [(h["user_key"], h["lifetime_events"]) for h in b]),
            equal_to([("u1", 6), ("u2", 1)]),
            label="user features",
        )


def _run_lines() -> list[bytes]:
    at = "2026-01-01T10:00:00Z"
    lines = [line(event_id=f"e{i}", user_id=f"u{i}", event_timestamp=at) for i in range(12)]
    return [
        *lines,
        line(event_id="dup", user_id="u1", event_timestamp=at),
        line(event_id="dup", user_id="u2", event_timestamp=at),  # loses
        line(event_id="stored", user_id="u3", event_timestamp=at),  # loses
        line(event_id="bad", user_id="u4", event_timestamp="1971-01-01T00:00:00Z"),  # rejected
        line(event_id="bad", user_id="u5", event_timestamp=at),  # the first valid copy
        line(event_id="nobody", user_id=None),  # no user: the first part's, in shard 0
    ]


def _routed_part(index: int, count: int, lines: list[bytes], shards: int, known: set[str]) -> Part:
    """The part as the local runner gives it: routed by the keys it read first."""
    keys, routes = routed_keys(lines, shards)
    contested = routes.contested(keys.repeated | known)
    return Part(index, count, frozenset(keys.repeated), routes.shards, contested)


@pytest.mark.parametrize("routed", [False, True], ids=["by keys", "routed"])
def test_the_parts_of_a_run_hold_each_line_once_and_each_user_whole(tmp_path, routed):
    """``ReadPartOfRun``: each part's shards, whole, and the run's losing
    copies, settled from every part's lines: an id stored before loses, a
    rejected first copy does not count, and the first valid copy wins
    whoever owns it. The same whether the part reads every line's keys or
    takes the routes the run's key pass gave it."""
    from pipeline_code.streams.eventlog import EventLog

    lines = _run_lines()
    log = EventLog(tmp_path / "log")
    log.append(lines)
    read = log.read_range(0, log.end_offset())
    losers = [(read[13].offset, "dup"), (read[14].offset, "stored")]
    users = [line_keys(raw.payload)[1] for raw in read]
    shard_of_line = [0 if user is None else shard_of(user, 8) for user in users]
    owned = [[raw.offset for raw, s in zip(read, shard_of_line, strict=True) if s % 3 == i] for i in range(3)]
    assert sorted(o for offsets in owned for o in offsets) == [raw.offset for raw in read] and all(owned)
    for index in range(3):
        part = Part(index, 3, frozenset({"dup", "bad"}))
        if routed:
            part = _routed_part(index, 3, lines, 8, {"stored", "never-in-the-run"})
            assert part.repeated == {"dup", "bad"} and len(part.disputed) == 5
        with batch_pipeline() as p:
            known = p | "Known" >> beam.Create([(0, ["stored", "never-in-the-run"])])
            shards = p | ReadPartOfRun(str(log.path), 0, log.end_offset(), part, 8, known, chunk_bytes=200)
            summary = shards | beam.MapTuple(
                lambda shard, raws, lost: (
                    shard,
                    [(r.offset, line_keys(r.payload)[1]) for r in raws],
                    sorted((o, i) for i, o in lost),
                )
            )
            assert_that(summary, _part_is(index, owned[index], losers))


def test_a_routed_part_refuses_a_run_whose_lines_are_not_the_routed_ones(tmp_path):
    """Routes are per line: a part whose run holds other lines than its
    routes (the log changed under the run) stops, naming the range."""
    from pipeline_code.streams.eventlog import EventLog

    lines = _run_lines()
    log = EventLog(tmp_path / "log")
    log.append(lines)
    for routed in (lines[:-1], [*lines, lines[0]]):  # fewer lines routed than the run holds, and more
        part = _routed_part(0, 2, routed, 8, set())
        with (
            pytest.raises(Exception, match=rf"holds other lines than were routed \({len(routed)}\)"),
            batch_pipeline() as p,
        ):
            known = p | "Known" >> beam.Create([(0, [])])
            p | ReadPartOfRun(str(log.path), 0, log.end_offset(), part, 8, known, chunk_bytes=200)


def _part_is(index: int, offsets: list[int], losers):
    def check(got) -> None:
        for shard, lines_, lost in got:
            assert shard % 3 == index and lost == losers
            assert all(shard == (0 if user is None else shard_of(user, 8)) for _, user in lines_)
        assert sorted(offset for _, lines_, _ in got for offset, _ in lines_) == offsets

    return check


def view(minute: int, item: str = "a") -> dict:
    return {
        "event_name": "view_item",
        "event_timestamp": (T0 + minute * 60) * 1_000_000,
        "items": [{"item_id": item, "price": 1.0, "quantity": 1}],
        "is_bot": False,
    }


def _pane_rows(element):
    return [(r["item_id"], r["window_start"] // 1_000_000 - T0, r["views"]) for r in element]


def test_popularity_windows_fire_on_time_then_late_then_drop_too_late_data():
    stream = (
        TestStream()
        .advance_watermark_to(T0)
        .add_elements([window.TimestampedValue([view(1), view(2, "b")], T0 + 60)])
        .add_elements([window.TimestampedValue([view(70)], T0 + 70 * 60)])
        # The first hour closes: its on-time pane fires.
        .advance_watermark_to(T0 + 65 * 60)
        # Late, but within the 30 minutes allowed: a late pane with the delta.
        .add_elements([window.TimestampedValue([view(30)], T0 + 30 * 60)])
        .advance_watermark_to(T0 + 100 * 60)
        # Later than allowed lateness: Beam drops it from this aggregate.
        .add_elements([window.TimestampedValue([view(40)], T0 + 40 * 60)])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        rows = (
            p
            | stream
            | CountItemPopularity(window_us=HOUR_US, allowed_lateness_s=30 * 60)
            | beam.FlatMap(_pane_rows)
        )
        assert_that(
            rows,
            equal_to([("a", 0, 1), ("b", 0, 1), ("a", 0, 1), ("a", 3600, 1)]),
        )


@pytest.mark.parametrize("bounded", [False, True])
def test_popularity_in_batch_sums_every_window(bounded):
    """Windowed with triggers, or (``bounded``: the batch graph's way) keyed
    by window start: the same rows, late events included."""
    with batch_pipeline() as p:
        rows = (
            p
            | beam.Create([[view(1), view(2)], [view(3), view(61, "b")], [view(-500), view(59, "b")]])
            | CountItemPopularity(window_us=HOUR_US, allowed_lateness_s=0, bounded=bounded)
            | beam.FlatMap(_pane_rows)
        )
        assert_that(rows, equal_to([("a", 0, 3), ("b", 3600, 1), ("a", -32400, 1), ("b", 0, 1)]))


def test_pipeline_module_runs_from_its_own_flags(tmp_path):
    from pipeline_code.local.run import run
    from pipeline_code.streams.eventlog import EventLog

    EventLog(tmp_path / "log").append([line(event_id="a"), line(event_id="a"), b"{bad"])
    summary = run(["--event_log_dir", str(tmp_path / "log"), "--warehouse", str(tmp_path / "w.duckdb")])
    assert (
        summary.events_read,
        summary.events_stored,
        summary.duplicates_skipped,
        summary.dead_lettered,
    ) == (
        3,
        1,
        1,
        1,
    )


@pytest.mark.slow
def test_pipeline_runs_as_a_module(tmp_path):
    # As `python -m`, options classes must be defined once, or Beam sees every flag twice.
    import subprocess
    import sys

    from pipeline_code.streams.eventlog import EventLog

    EventLog(tmp_path / "log").append([line(event_id="a")])
    args = ["--event_log_dir", str(tmp_path / "log"), "--warehouse", str(tmp_path / "w.duckdb")]
    r = subprocess.run([sys.executable, "-m", "pipeline_code.local", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "events_stored=1" in r.stdout


def _staged_rows(staging) -> dict[str, list[int]]:
    """Rows per staged file, by table."""
    import pyarrow.parquet as pq

    return {
        d.name: sorted(pq.read_metadata(f).num_rows for f in d.iterdir()) for d in sorted(staging.iterdir())
    }


def test_staging_gathers_batches_into_files_of_at_most_max_rows(tmp_path):
    from pipeline_code.beam.transforms import _StageColumnarFn, _StageFn
    from pipeline_code.core.history import enrich_shard
    from pipeline_code.warehouses.duckdb import LocalWarehouseSink

    records = _records(
        *(
            line(event_id=f"e{i}", user_id=f"u{i}", event_timestamp=f"2026-01-01T10:{i:02d}:00Z")
            for i in range(7)
        )
    )
    batches = [enrich_shard(records[a:b], {})[0] for a, b in ((0, 3), (3, 5), (5, 7))]
    dead = {
        "payload": b"x",
        "error_message": "e",
        "failed_stage": "parse",
        "received_at": 0,
        "dead_lettered_at": 0,
        "source_offset": 0,
    }
    sink = LocalWarehouseSink("unused.duckdb", str(tmp_path / "staged"), "log", 0, 0)
    with batch_pipeline() as p:
        _ = (
            p
            | beam.Create(batches, reshuffle=False)
            | beam.ParDo(_StageColumnarFn(sink, HOUR_US, max_rows=4))
        )
        _ = (
            p
            | "Dead" >> beam.Create([[dead]] * 5, reshuffle=False)
            | "StageDead" >> beam.ParDo(_StageFn(sink, DEAD_LETTERS, max_rows=2))
        )
    staged_rows = _staged_rows(tmp_path / "staged")
    # 7 users' events in batches of 3, 2 and 2, at most 4 rows a file: the
    # first two batches (5 rows) make one file, the last one the bundle's rest.
    assert staged_rows["events"] == [2, 5]
    assert staged_rows["sessions"] == [2, 5]
    assert staged_rows[DEAD_LETTERS] == [1, 2, 2]
