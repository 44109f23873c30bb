"""Replays and the archive: the same pipeline over input the warehouse already counted.

    dataflow replay --dead-letters [--stage validate] [--since 2026-11-01]   # after a fix
    dataflow replay --archive --from 2026-11-01 --to 2026-11-02             # a backfill
    dataflow archive --from 2026-11-01 --to 2026-11-02 --out archive/       # export a range

Locally the event log is the archive. ``replay_archive`` runs the Beam
pipeline over the log records that arrived in ``[start, end)`` (or over the
Avro files ``archive_range`` wrote); ``replay_dead_letters`` over the stored
dead letters (their original bytes, arrival time and offset). Both commit
with ``Warehouse.replay``: no checkpoint moves, and the run is recorded in
``_dataflow_replays``, so the runs of ``_dataflow_runs`` still add up to the
log. What makes a replay safe to repeat:

- events are keyed by ``event_id``: one already stored is a duplicate, and
  only new events reach the derived tables;
- a dead letter is keyed by its arrival (``source_offset``): replaying a
  range keeps its one row; replaying dead letters removes each re-run row
  first, so an input that now passes is stored once and leaves
  ``dead_letters``, and one that still fails keeps one row with the new reason;
- the commit refuses if another run or replay committed since the replay
  took its snapshot.

The archive files: ``<out>/YYYY/MM/DD/HH/events-<first offset>.avro``, by
arrival hour (UTC), Avro (deflate) records of ``offset``, ``received_at``
(microseconds) and ``payload`` (the original bytes).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam

from pipeline_code.beam.io import ReadEventLog, ReadWarehouseSnapshot
from pipeline_code.beam.pipeline import LocalRunOptions, build_graph, local_runner
from pipeline_code.core.parse import RawEvent, now_us
from pipeline_code.core.ports import Replay, RunSummary, to_us
from pipeline_code.host import ProcessingSettings
from pipeline_code.streams import eventlog
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.warehouses.duckdb import (
    DuckDBLookup,
    LocalWarehouseSink,
    Warehouse,
    check_run,
    run_staging,
)

BATCH = 2000
"""Records per input batch of a replay that is not read from the log."""


class ReplayError(Exception):
    """A replay that cannot run as asked: the message names the option and value."""


def _us(when: dt.datetime) -> int:
    return to_us(when)  # type: ignore[return-value]


def _batches(raws: Iterator[RawEvent], size: int = BATCH) -> Iterator[list[RawEvent]]:
    batch: list[RawEvent] = []
    for raw in raws:
        batch.append(raw)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _in_window(batch: list[RawEvent], start_us: int, end_us: int) -> list[RawEvent]:
    return [r for r in batch if start_us <= r.received_at_us < end_us]


def log_range(log: EventLog, start_us: int, end_us: int) -> tuple[int, int, int]:
    """The byte range of the log holding every record that arrived in
    ``[start_us, end_us)``, and how many records did (arrival is nearly
    monotone in the log; the pipeline filters by time within the range)."""
    lo = hi = None
    count = 0
    end = log.durable_end()
    for raw, next_offset in _with_ends(log, end):
        if start_us <= raw.received_at_us < end_us:
            count += 1
            lo = raw.offset if lo is None else lo
            hi = next_offset
    return (lo or 0, hi or 0, count)


def _with_ends(log: EventLog, end: int) -> Iterator[tuple[RawEvent, int]]:
    previous: RawEvent | None = None
    for raw in log.read(0, end):
        if previous is not None:
            yield previous, raw.offset
        previous = raw
    if previous is not None:
        yield previous, end


def archive_range(log: EventLog, start_us: int, end_us: int, out: Path) -> int:
    """Write the records that arrived in ``[start_us, end_us)`` as Avro files
    by arrival hour under ``out``; returns how many records were written."""
    import fastavro

    schema = fastavro.parse_schema(eventlog.ARCHIVE_SCHEMA)
    written = 0
    hour_batch: list[dict] = []
    current: tuple[int, int, int, int] | None = None

    def flush() -> None:
        if not hour_batch:
            return
        y, m, d, h = current  # type: ignore[misc]
        folder = out / f"{y:04d}/{m:02d}/{d:02d}/{h:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"events-{hour_batch[0]['offset']:016d}.avro"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            fastavro.writer(f, schema, hour_batch, codec="deflate")
        tmp.replace(path)
        hour_batch.clear()

    for raw in log.read(0, log.durable_end()):
        if not start_us <= raw.received_at_us < end_us:
            continue
        at = dt.datetime.fromtimestamp(raw.received_at_us / 1e6, dt.UTC)
        hour = (at.year, at.month, at.day, at.hour)
        if hour != current:
            flush()
            current = hour
        hour_batch.append(eventlog.archive_record(raw))
        written += 1
        if len(hour_batch) >= 100_000:
            flush()
    flush()
    return written


def read_archive(directory: Path, start_us: int, end_us: int) -> Iterator[RawEvent]:
    """The records of ``archive_range``'s files that arrived in ``[start_us, end_us)``."""
    import fastavro

    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.avro")):
        y, m, d, h = (int(p) for p in path.parent.relative_to(directory).parts)
        hour_us = _us(dt.datetime(y, m, d, h, tzinfo=dt.UTC))
        if hour_us + 3_600_000_000 <= start_us or hour_us >= end_us:
            continue
        with open(path, "rb") as f:
            for rec in fastavro.reader(f):
                raw = eventlog.archive_to_raw(rec)
                if start_us <= raw.received_at_us < end_us:
                    yield raw


def _run(
    warehouse: Path,
    source,
    events_read: int,
    kind: str,
    detail: str,
    settings: ProcessingSettings,
    replaced: list[int] | None = None,
) -> RunSummary:
    """One replay: snapshot, the pipeline over ``source(pipeline)``, one replay commit."""
    started = time.time()
    run_id = uuid.uuid4().hex
    with run_staging(warehouse, run_id) as stage:
        with Warehouse(warehouse) as wh:
            snapshot = wh.export_snapshot(stage / "snapshot")
            generation = wh.generation()
        run = {
            "run_id": run_id,
            "started_at": started,
            "events_read": events_read,
            "generation": generation,
            "kind": kind,
            "detail": detail,
        }
        p = beam.Pipeline(runner=local_runner(), options=LocalRunOptions())
        raw = source(p)
        known_ids, history = p | "ReadWarehouseSnapshot" >> ReadWarehouseSnapshot(*snapshot, settings.shards)
        sink = LocalWarehouseSink(str(warehouse), str(stage), kind, 0, 0, run, replaced)
        build_graph(raw, known_ids, history, sink, settings, columnar=True)
        from pipeline_code.local.run import _counter, run_pipeline

        result = run_pipeline(p, warehouse)

        def counter(name: str) -> int:
            return _counter(result, name)

        present = counter("dead_letters_present")
        summary = RunSummary(
            run_id=run_id,
            log_id=kind,
            from_offset=0,
            to_offset=0,
            events_read=events_read,
            events_stored=counter("events_stored"),
            duplicates_skipped=counter("duplicates_skipped") + counter("duplicates_at_load") + present,
            dead_lettered=counter("dead_lettered") - present,
            started_at=started,
            seconds=time.time() - started,
        )
        check_run(warehouse, summary)
        return summary


def replay_archive(
    warehouse: str | Path,
    log_dir: str | Path,
    start: dt.datetime,
    end: dt.datetime,
    settings: ProcessingSettings | None = None,
    archive_dir: str | Path | None = None,
) -> RunSummary:
    """Reprocess what arrived in ``[start, end)``: from the event log, or from
    the Avro files under ``archive_dir``."""
    settings = settings or ProcessingSettings()
    if end <= start:
        raise ReplayError(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    start_us, end_us = _us(start), _us(end)
    detail = f"{start.isoformat()}..{end.isoformat()}"
    if archive_dir is not None:
        directory = Path(archive_dir)
        if not directory.is_dir():
            raise ReplayError(f"--archive-dir {directory} is not a directory")
        batches = list(_batches(read_archive(directory, start_us, end_us)))
        count = sum(len(b) for b in batches)
        return _run(
            Path(warehouse),
            lambda p: p | "ReadArchive" >> beam.Create(batches, reshuffle=False),
            count,
            "archive",
            f"{directory} {detail}",
            settings,
        )
    log = EventLog(log_dir)
    lo, hi, count = log_range(log, start_us, end_us)

    def source(p):
        return (
            p
            | "ReadEventLog" >> ReadEventLog(str(log.path), lo, hi)
            | "InWindow" >> beam.Map(_in_window, start_us, end_us)
            | "DropEmpty" >> beam.Filter(bool)
        )

    return _run(Path(warehouse), source, count, "archive", f"log {log.log_id} {detail}", settings)


def replay_dead_letters(
    warehouse: str | Path,
    stage: str | None = None,
    since: dt.datetime | None = None,
    settings: ProcessingSettings | None = None,
) -> RunSummary:
    """Re-run stored dead letters (of one ``stage``, dead-lettered since
    ``since``) through the current code."""
    settings = settings or ProcessingSettings()
    lookup = DuckDBLookup(str(warehouse))
    lookup.open()
    try:
        raws = lookup.dead_letters(
            Replay(rerun_before_us=now_us(), stage=stage, since_us=_us(since) if since else None)
        )
    finally:
        lookup.close()
    batches = list(_batches(iter(raws)))
    detail = f"stage={stage or 'any'} since={since.isoformat() if since else 'any'}"
    return _run(
        Path(warehouse),
        lambda p: p | "ReadDeadLetters" >> beam.Create(batches, reshuffle=False),
        len(raws),
        "dead_letters",
        detail,
        settings,
        replaced=[r.offset for r in raws],
    )
