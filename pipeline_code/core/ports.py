"""The ports: what the engines ask of a warehouse and hand to a sink, engine-free.

Every engine (Beam locally and on Dataflow, Spark on Glue, Synapse and
locally) meets the stores here, and every store implements these:

- ``WarehouseLookup``: asked once per user shard and micro-batch which event
  ids are stored and what is known about these users (one per warehouse in
  ``pipeline_code.warehouses``);
- ``Sink``: where a batch's rows go, staged on the workers and committed once;
- ``RunSummary``: what one processing run did, with the conservation rule;
- ``UserState``: the fast path's online store of each user's recent
  activity (one per store in ``pipeline_code.userstate``), and
  ``apply_touches``, the one read-merge-write loop every store runs.

``history_row`` turns a stored ``user_features`` row, from any warehouse,
into the core's units.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pipeline_code.core.history import UserHistory
from pipeline_code.core.userstate import Activity, Touch, merge

if TYPE_CHECKING:
    import pyarrow as pa

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
    as the Beam chain's sink (``pipeline_code.warehouses.duckdb.LocalWarehouseSink``).
    ``stage`` takes rows (dicts) or an Arrow table with the table's columns
    (``core.arrow_features``' output; timestamps as Arrow timestamps or UTC
    microseconds)."""

    def stage(self, table: str, rows: list[dict[str, Any]] | pa.Table) -> str: ...

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
    runs: int = 1
    """How many committed runs it took: a long range of the log is processed
    in several, each with its checkpoint."""

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        return self.events_read == self.events_stored + self.duplicates_skipped + self.dead_lettered


class StateConflict(Exception):
    """A user's state kept changing under us: another writer won every retry."""


class UserState(Protocol):
    """An online store of ``Activity`` per user key, with conditional writes.

    ``read`` returns the state and an opaque version (None when the user has
    none); ``write`` stores ``state`` only if the user's version is still
    ``version`` and returns False when another writer got there first
    (``apply_touches`` then reads and merges again). ``get`` is the API's one
    read per request."""

    def read(self, user_key: str) -> tuple[Activity | None, Any]: ...

    def write(self, state: Activity, version: Any) -> bool: ...

    def get(self, user_key: str) -> Activity | None: ...

    def close(self) -> None: ...


def apply_touches(store: UserState, touches: dict[str, list[Touch]], now_us: int, attempts: int = 8) -> int:
    """Merge each user's touches into ``store``: one read and at most one
    conditional write per user, again on a conflict. Returns the users
    written. Safe to repeat: merging is idempotent (``core.userstate``)."""
    written = 0
    for user_key, new in touches.items():
        for attempt in range(attempts):
            state, version = store.read(user_key)
            merged = merge(state, user_key, new, now_us)
            if merged is None or store.write(merged, version):
                written += merged is not None
                break
            # Lost the race: back off a random while so that two writers of
            # one user stop colliding.
            time.sleep(random.uniform(0, 0.002 * 2**attempt))
        else:
            raise StateConflict(f"user {user_key!r}: state changed under {attempts} attempts to write it")
    return written


@dataclass(frozen=True)
class Replay:
    """A batch committed as a replay (an archive range, or dead letters re-run).

    Its dead letters are inserted only where no row has the same arrival and
    bytes: on Kinesis and Event Hubs an offset alone can collide (arrival time and a hash),
    and a range replayed twice must keep one row per input. A dead-letter
    replay (``rerun_before_us``) first deletes the rows it re-ran: those
    dead-lettered at or before its snapshot, of its ``stage`` and ``since``.
    """

    rerun_before_us: int | None = None
    stage: str | None = None
    since_us: int | None = None


class ReplayLookup(WarehouseLookup, Protocol):
    """A lookup that also reads back the dead letters a re-run takes: those
    dead-lettered at or before ``replay.rerun_before_us``, of its ``stage``,
    since its ``since_us``, as ``(offset, received_at_us, payload)`` in
    offset order (the same rows the replay's commit removes)."""

    def dead_letters(self, replay: Replay) -> list[Any]: ...
