"""The fast path locally: the same handler over the event log (``dataflow fresh``).

    dataflow fresh --warehouse .dataflow/warehouse.duckdb          # follow the log
    dataflow fresh --warehouse .dataflow/warehouse.duckdb --once   # apply what is there, exit

Reads the event log from the store's own checkpoint (kept in the SQLite
file beside the warehouse, ``userstate.local``), applies each chunk, then
moves the checkpoint; a crash between the two re-applies the chunk, which
changes nothing (merging is idempotent). The checkpoint never passes the
log's durable end, as processing's does not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pipeline_code.fastpath.handler import FastPath
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.userstate.local import LocalUserState

CHUNK_BYTES = 4 * 1024 * 1024


class FreshError(Exception):
    """The store refused writes: the checkpoint stays, the chunk is retried."""


@dataclass
class FreshTotals:
    read: int = 0
    applied: int = 0
    skipped: int = 0
    rejected: int = 0
    users_written: int = 0


class LogFastPath:
    """The fast path over one event log into one local store."""

    def __init__(self, log: EventLog, store: LocalUserState, fast: FastPath | None = None) -> None:
        self.log = log
        self.store = store
        self.fast = fast or FastPath(store)
        self.totals = FreshTotals()

    def step(self) -> int:
        """Apply everything durable past the checkpoint; returns events read."""
        start, end = self.log.unread_range(self.store.checkpoint(self.log.log_id))
        read = 0
        for lo, hi in self.log.ranges(start, end, CHUNK_BYTES):
            raws = self.log.read_range(lo, hi)
            outcome = self.fast.apply(raws)
            if outcome.failed:
                raise FreshError(
                    f"{len(outcome.failed)} events' user states could not be written to {self.store.path}; "
                    f"the fast path stays at byte {lo} of the log and will retry"
                )
            self.store.save_checkpoint(self.log.log_id, hi)
            read += len(raws)
            t = self.totals
            t.read += len(raws)
            t.applied += outcome.applied
            t.skipped += outcome.skipped
            t.rejected += len(outcome.rejected)
            t.users_written += outcome.users_written
        return read

    def lag_bytes(self) -> int:
        return self.log.durable_end() - self.store.checkpoint(self.log.log_id)

    def follow(self, stop: threading.Event, poll_seconds: float = 0.05) -> None:
        """Apply as the log grows until ``stop`` is set; polls when idle."""
        while not stop.is_set():
            if self.step() == 0:
                stop.wait(poll_seconds)
