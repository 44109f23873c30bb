"""What ``dataflow status`` shows: the local chain's health at a glance.

Read-only: it opens the warehouse read-only, reads the event log's tail
and the newest model's metadata, and changes nothing.

- ingest: the log's size, and how many events are not yet processed (the
  lag), with the age of the oldest of them (like Pub/Sub's oldest unacked
  age);
- processing: runs, events stored, duplicates, dead letters, last run;
- model: the version served by ``dataflow serve``, when it was trained,
  its holdout metrics next to the popularity baseline.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_code.core.parse import now_us
from pipeline_code.ml.model import METADATA_FILE, find_model
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.warehouses.duckdb import Warehouse


@dataclass(frozen=True)
class ChainStatus:
    log_bytes: int
    unprocessed_events: int
    oldest_unprocessed_age_seconds: float | None
    runs: int
    events_read: int
    events_stored: int
    duplicates_skipped: int
    dead_letters: int
    last_run_at: dt.datetime | None
    model: dict[str, Any] | None  # the served model's metadata
    model_dir: Path | None


def _count_records(log: EventLog, start: int, end: int) -> tuple[int, int | None]:
    """Records in ``[start, end)`` and the received_at (us) of the first."""
    count, first = 0, None
    for lo, hi in log.ranges(start, end, 8 * 1024 * 1024):
        raws = log.read_range(lo, hi)
        if raws and first is None:
            first = raws[0].received_at_us
        count += len(raws)
    return count, first


def chain_status(warehouse: Path, log_dir: Path, model_dir: Path | None) -> ChainStatus:
    with Warehouse(warehouse, read_only=True) as wh:
        con = wh.con
        runs, read, stored, dups, last = con.execute(
            "SELECT count(*), coalesce(sum(events_read), 0), coalesce(sum(events_stored), 0), "
            "coalesce(sum(duplicates_skipped), 0), max(finished_at) FROM _dataflow_runs"
        ).fetchone()
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        log = EventLog(log_dir) if log_dir.exists() else None
        checkpoint = wh.checkpoint(log.log_id) if log is not None else 0
    if log is not None:
        end = log.end_offset()
        unprocessed, first_us = _count_records(log, checkpoint, end)
    else:
        end, unprocessed, first_us = 0, 0, None
    model, found = None, None
    if model_dir is not None and model_dir.exists():
        try:
            found = find_model(model_dir)
            model = json.loads((found / METADATA_FILE).read_text())
        except (FileNotFoundError, ValueError):
            model, found = None, None
    return ChainStatus(
        log_bytes=end,
        unprocessed_events=unprocessed,
        oldest_unprocessed_age_seconds=(now_us() - first_us) / 1e6 if first_us is not None else None,
        runs=runs,
        events_read=read,
        events_stored=stored,
        duplicates_skipped=dups,
        dead_letters=dead,
        last_run_at=last,
        model=model,
        model_dir=found,
    )
