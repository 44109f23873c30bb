"""The ports: what the engines ask of a warehouse and hand to a sink, engine-free.

Every engine (Beam locally and on Dataflow, Spark on Glue, Synapse and
locally) meets the stores here, and every store implements these:

- ``WarehouseLookup``: asked once per user shard and micro-batch which event
  ids are stored and what is known about these users (one per warehouse in
  ``pipeline_code.warehouses``);
- ``Sink``: where a batch's rows go, staged on the workers and committed once;
- ``RunSummary``: what one processing run did, with the conservation rule.

``history_row`` turns a stored ``user_features`` row, from any warehouse,
into the core's units.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline_code.core.history import UserHistory

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
USER_FEATURES = "user_features"
"""The table the lookups read user histories from."""


def to_us(value: dt.datetime | int | None) -> int | None:
    """A warehouse timestamp (a datetime, or microseconds already) -> the
    core's microseconds."""
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def history_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored ``user_features`` row (Parquet, DuckDB, BigQuery or Redshift)
    in the core's units: microsecond timestamps, plain lists."""
    row = {k: row[k] for k in UserHistory.__dataclass_fields__}
    row["first_seen_at"] = to_us(row["first_seen_at"])
    row["last_seen_at"] = to_us(row["last_seen_at"])
    for name in ("recent_items", "last_session_items"):
        value = row[name]
        # Redshift returns SUPER arrays as JSON text.
        row[name] = json.loads(value) if isinstance(value, str) else list(value or [])
    return row


class WarehouseLookup(Protocol):
    """What the streaming job asks the warehouse: which of these ids are
    stored, and what is known about these users. Picklable: it connects in
    ``open``, on the worker."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]: ...

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]: ...


class Sink(Protocol):
    """Where a micro-batch's rows go: staged per batch of rows on the
    executors (picklable), committed once on the driver. The same protocol
    as the Beam chain's sink (``pipeline_code.warehouses.duckdb.LocalWarehouseSink``)."""

    def stage(self, table: str, rows: list[dict[str, Any]]) -> str: ...

    def commit(self, files: dict[str, list[str]]) -> Any: ...


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    log_id: str
    from_offset: int
    to_offset: int
    events_read: int
    events_stored: int
    duplicates_skipped: int
    dead_lettered: int
    started_at: float
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        return self.events_read == self.events_stored + self.duplicates_skipped + self.dead_lettered
