"""Users' newest activity, read from the local event log as it arrives.

A model knows each user up to the event-log offset its training data had
reached (kept in its metadata). ``RecentActivity`` tails the log from that
offset, so an item a user viewed a second ago reaches the model server as
``recent_items`` and changes their recommendations without retraining. In
the clouds the same role falls to the stream (Pub/Sub, Kinesis, Event Hubs)
and a feature store; locally the log is the stream.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from pipeline_code.core.features import INTERACTION_WEIGHTS
from pipeline_code.core.parse import RawEvent, parse_event
from pipeline_code.ml.model import MAX_RECENT
from pipeline_code.streams.eventlog import EventLog

CHUNK_BYTES = 8 * 1024 * 1024


class RecentActivity:
    """Per user key, the items of their events after ``start_offset``,
    oldest first, at most ``MAX_RECENT``. Bots and removals are skipped,
    as in training."""

    def __init__(self, log: EventLog, start_offset: int = 0, min_refresh_seconds: float = 0.5) -> None:
        self.log = log
        self.offset = start_offset
        self.min_refresh_seconds = min_refresh_seconds
        self._items: dict[str, deque[str]] = {}
        self._checked = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, log: EventLog, metadata: dict, min_refresh_seconds: float = 0.5) -> RecentActivity:
        """Start where the model's training data stopped in this log."""
        start = metadata.get("event_log_checkpoints", {}).get(log.log_id, 0)
        return cls(log, start, min_refresh_seconds)

    def refresh(self) -> int:
        """Read what was appended since the last call; returns events read.
        Checks the log at most every ``min_refresh_seconds``."""
        now = time.monotonic()
        if now - self._checked < self.min_refresh_seconds:
            return 0
        with self._lock:
            self._checked = now
            end = self.log.end_offset()
            if end <= self.offset:
                return 0
            read = 0
            for lo, hi in self.log.ranges(self.offset, end, CHUNK_BYTES):
                raws = self.log.read_range(lo, hi)
                read += len(raws)
                self._add(raws)
            self.offset = end
            return read

    def _add(self, raws: list[RawEvent]) -> None:
        for raw in raws:
            record, _ = parse_event(raw)
            if record is None or record["is_bot"]:
                continue
            if INTERACTION_WEIGHTS.get(record["event_name"], 0.0) <= 0:
                continue
            seq = self._items.get(record["user_key"])
            if seq is None:
                seq = self._items[record["user_key"]] = deque(maxlen=MAX_RECENT)
            for item in record["items"]:
                if item["item_id"] in seq:
                    seq.remove(item["item_id"])
                seq.append(item["item_id"])

    def recent(self, user_key: str) -> list[str]:
        self.refresh()
        return list(self._items.get(user_key, ()))
