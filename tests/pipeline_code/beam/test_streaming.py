"""The streaming job's composites on the local streaming runner.

The proof: a store's second half of traffic streamed through
``build_streaming_graph`` (Pub/Sub messages from ``TestStream``, history from
the warehouse through ``DuckDBLookup``) gives the same rows as the batch
chain's second run over the same log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import shutil
import uuid
from pathlib import Path

import apache_beam as beam
import duckdb
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from pipeline_code.beam.pipeline import local_runner
from pipeline_code.beam.streaming import (
    _load_failure,
    build_streaming_graph,
    split_dataset,
    to_raw_event,
)
from pipeline_code.core.parse import RawEvent, parse_event
from pipeline_code.host import ProcessingSettings
from pipeline_code.local.run import process_log
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.streams.pubsub import pubsub_offset
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import TABLES
from pipeline_code.warehouses.duckdb import DuckDBLookup
from tests.conftest import line

# Beam's streaming runner over TestStream takes seconds per test.
pytestmark = pytest.mark.slow

SETTINGS = ProcessingSettings(shards=4)


class _CaptureFn(beam.DoFn):
    """Pickles each row batch of a table into its own file."""

    def __init__(self, out_dir: str, table: str) -> None:
        self.out_dir = out_dir
        self.table = table

    def process(self, rows):
        if rows:
            path = Path(self.out_dir) / self.table / f"{uuid.uuid4().hex}.pkl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(rows))


def captured(out_dir: Path, table: str) -> list[dict]:
    return [row for f in sorted((out_dir / table).glob("*.pkl")) for row in pickle.loads(f.read_bytes())]


def message(raw: RawEvent) -> TimestampedValue:
    published = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=raw.received_at_us)
    msg = PubsubMessage(raw.payload, {}, message_id=str(raw.offset), publish_time=published)
    return TimestampedValue(msg, raw.received_at_us / 1e6)


def stream(raws: list[RawEvent], warehouse: Path, out_dir: Path) -> None:
    """Run the streaming chain over ``raws`` delivered as Pub/Sub messages."""
    opts = PipelineOptions()
    opts.view_as(StandardOptions).streaming = True
    events = TestStream().add_elements([message(r) for r in raws]).advance_watermark_to_infinity()
    with beam.Pipeline(runner=local_runner(streaming=True), options=opts) as p:
        raw = p | "Messages" >> events | "ToRawEvent" >> beam.Map(to_raw_event)
        tables = build_streaming_graph(raw, DuckDBLookup(str(warehouse)), SETTINGS)
        for name, pcoll in tables.items():
            _ = pcoll | f"Capture_{name}" >> beam.ParDo(_CaptureFn(str(out_dir), name))


def stored(warehouse: Path, sql: str) -> list[dict]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def _us(value) -> int:
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def normalise(row: dict, table: str) -> dict:
    """A stored row in the core's units, for comparison with captured rows."""
    out = {}
    for col in TABLES[table].columns:
        v = row.get(col.name)
        if col.type == "TIMESTAMP" and isinstance(v, dt.datetime):
            v = _us(v)
        elif col.type == "DATE" and isinstance(v, dt.date):
            v = (v - dt.date(1970, 1, 1)).days
        out[col.name] = v
    return out


@pytest.fixture(scope="module")
def two_halves(tmp_path_factory):
    """One log; the warehouse after its first half, the batch chain's result
    after its second, and the streaming chain's rows for the second half."""
    root = tmp_path_factory.mktemp("streaming")
    lines = list(generate(StoreSpec(events=3000, days=4, seed=11)))
    half = len(lines) // 2
    log = EventLog(root / "log")
    log.append(lines[:half])
    first = root / "first.duckdb"
    process_log(log.path, first)
    split = log.end_offset()
    # The second half re-sends some of the first (retries), and a bad line.
    retries = lines[: half : max(1, half // 25)]
    log.append([*lines[half:], *retries, b"{not json"])
    batch = root / "batch.duckdb"
    shutil.copy(first, batch)
    process_log(log.path, batch)
    second = list(log.read(split))
    out = root / "stream"
    stream(second, first, out)
    return {"first": first, "batch": batch, "split": split, "out": out, "second": second, "retries": retries}


def test_streamed_events_equal_the_batch_chains(two_halves):
    split = two_halves["split"]
    want = [
        normalise(r, "events")
        for r in stored(two_halves["batch"], f"SELECT * FROM events WHERE source_offset >= {split}")
    ]
    got = [{c: r[c] for c in TABLES["events"].column_names()} for r in captured(two_halves["out"], "events")]
    key = lambda r: r["event_id"]  # noqa: E731
    assert len(want) > 1000
    assert sorted(got, key=key) == sorted(want, key=key)


def test_retries_of_stored_events_are_dropped_by_the_warehouse_lookup(two_halves):
    got_ids = {r["event_id"] for r in captured(two_halves["out"], "events")}
    first_ids = {r["event_id"] for r in stored(two_halves["first"], "SELECT event_id FROM events")}
    assert not got_ids & first_ids
    assert len(two_halves["retries"]) >= 20


def test_histories_continue_from_the_warehouse(two_halves):
    want = {
        r["user_key"]: normalise(r, "user_features")
        for r in stored(two_halves["batch"], "SELECT * FROM user_features")
    }
    got = captured(two_halves["out"], "user_features")
    assert len(got) > 50
    for row in got:
        assert normalise(row, "user_features") == want[row["user_key"]]


def test_every_input_is_an_event_a_duplicate_or_a_dead_letter(two_halves):
    events = captured(two_halves["out"], "events")
    dead = captured(two_halves["out"], "dead_letters")
    batch_dead = stored(
        two_halves["batch"], f"SELECT payload FROM dead_letters WHERE source_offset >= {two_halves['split']}"
    )
    assert sorted(d["payload"] for d in dead) == sorted(d["payload"] for d in batch_dead)
    assert b"{not json" in {d["payload"] for d in dead}
    # Events in = events stored + duplicates skipped + dead letters, exactly.
    seen = {r["event_id"] for r in stored(two_halves["first"], "SELECT event_id FROM events")}
    duplicates = 0
    for raw in sorted(two_halves["second"], key=lambda r: r.offset):
        rec, _ = parse_event(raw)
        if rec is not None:
            duplicates += rec["event_id"] in seen
            seen.add(rec["event_id"])
    assert duplicates >= len(two_halves["retries"])
    assert len(events) + duplicates + len(dead) == len(two_halves["second"])


def test_refused_rows_become_load_dead_letters_keeping_the_row():
    row = {"event_id": "e-9", "user_key": "u"}
    dead = _load_failure(("p:d.events", row, [{"reason": "invalid", "message": "no such field"}]), "events")
    assert dead["failed_stage"] == "load" and dead["event_id"] == "e-9"
    assert "no such field" in dead["error_message"] and "events" in dead["error_message"]
    assert json.loads(base64.b64decode(dead["payload"])) == row


def test_feature_tables_sum_to_the_batch_chains(two_halves):
    """Change rows folded the way the warehouse folds them give the batch result."""
    got = captured(two_halves["out"], "user_item_interactions")
    first = {
        (r["user_key"], r["item_id"]): r["events"]
        for r in stored(two_halves["first"], "SELECT * FROM user_item_interactions")
    }
    batch = {
        (r["user_key"], r["item_id"]): r["events"]
        for r in stored(two_halves["batch"], "SELECT * FROM user_item_interactions")
    }
    folded = dict(first)
    for r in got:
        folded[(r["user_key"], r["item_id"])] = folded.get((r["user_key"], r["item_id"]), 0) + r["events"]
    assert folded == batch


def test_message_ids_become_source_offsets():
    assert pubsub_offset("2070443601311540") == 2070443601311540
    odd = pubsub_offset("not-a-number")
    assert 0 <= odd < 2**63 and odd == pubsub_offset("not-a-number")
    raw = to_raw_event(
        PubsubMessage(line(), {}, message_id="7", publish_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    )
    assert raw == RawEvent(7, 1_767_225_600_000_000, line())


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("shop-1:events", ("shop-1", "events")),
        ("shop-1.events", ("shop-1", "events")),
        ("example.com:p:d", ("example.com:p", "d")),
    ],
)
def test_output_dataset_forms(value, want):
    assert split_dataset(value) == want


@pytest.mark.parametrize("value", ["dataset", ":d", "p:", "p:d-x", "P:d"])
def test_output_dataset_errors_name_the_flag_and_value(value):
    with pytest.raises(ValueError, match=rf"--output_dataset .*{value!r}"):
        split_dataset(value)


def test_an_id_reused_under_another_user_counts_once_in_the_stream(tmp_path) -> None:
    """Copies of an id meet by event id before the shuffle by user: within a
    micro-batch and across micro-batches, only the first copy reaches the
    events and the features."""
    from pipeline_code.warehouses.duckdb import Warehouse

    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    t0 = 1_767_268_800_000_000

    def view(event_id: str, user: str, item: str, offset: int, at_s: int) -> RawEvent:
        payload = line(event_id=event_id, user_id=user, items=[{"item_id": item}], session_id=f"s-{user}")
        return RawEvent(offset, t0 + at_s * 1_000_000, payload)

    raws = [
        view("e1", "A", "sku-1", 1, 0),
        view("e1", "B", "sku-8", 2, 1),  # same micro-batch, another user
        view("e2", "C", "sku-2", 3, 2),
        view("e1", "B", "sku-9", 4, 40),  # a later micro-batch
    ]
    out = tmp_path / "out"
    stream(raws, warehouse, out)
    events = captured(out, "events")
    assert sorted((e["event_id"], e["user_key"]) for e in events) == [("e1", "A"), ("e2", "C")]
    assert {r["user_key"] for r in captured(out, "user_features")} == {"A", "C"}
    assert {r["user_key"] for r in captured(out, "user_item_interactions")} == {"A", "C"}
    assert {r["item_id"] for r in captured(out, "item_features")} == {"sku-1", "sku-2"}
