"""The fast path's one handler: raw events in, users' states merged, outcome out.

    fast = FastPath(open_store("sqlite:state.sqlite"))
    outcome = fast.apply([RawEvent(offset, received_at_us, payload), ...])

Every event ends in exactly one of: applied (its touch merged, or already
there), skipped (a bot's: kept out as in training), rejected (parse or
validation failed: acknowledged, see the package docstring) or failed (its
user's write failed: the adapter reports it for redelivery). Writes are
grouped per user, one read and one conditional write each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline_code.core.parse import RawEvent, now_us, parse_event
from pipeline_code.core.ports import UserState, apply_touches
from pipeline_code.core.userstate import Touch, touch_of

log = logging.getLogger("dataflow.fresh")

OUTCOMES = ("applied", "skipped", "rejected", "failed")


@dataclass
class Outcome:
    """What one delivery did; ``failed`` holds the indexes of events to redeliver."""

    applied: int = 0
    skipped: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    users_written: int = 0

    @property
    def total(self) -> int:
        return self.applied + self.skipped + len(self.rejected) + len(self.failed)


class FastPath:
    """Applies deliveries to one store, with metrics on its own registry."""

    def __init__(self, store: UserState, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "dataflow_fresh_events_total",
            "Events the fast path took, by outcome (applied, skipped, rejected, failed).",
            ("outcome",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "dataflow_fresh_rejected_total",
            "Events that failed parse or validation, by stage.",
            ("stage",),
            registry=self.registry,
        )
        self.lag = Histogram(
            "dataflow_fresh_lag_seconds",
            "From an event's arrival on the stream to its user's state written.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )

    def apply(self, raws: list[RawEvent]) -> Outcome:
        outcome = Outcome()
        touches: dict[str, list[tuple[int, Touch]]] = {}
        for index, raw in enumerate(raws):
            record, dead = parse_event(raw)
            if record is None:
                outcome.rejected.append(dead)  # type: ignore[arg-type]
                self.rejected.labels(dead["failed_stage"]).inc()  # type: ignore[index]
                log.warning(
                    "rejected offset=%s stage=%s: %s", raw.offset, dead["failed_stage"], dead["error_message"]
                )
                continue
            touch = touch_of(record)
            if touch is None:
                outcome.skipped += 1
                continue
            touches.setdefault(record["user_key"], []).append((index, touch))
        now = now_us()
        for user_key, pairs in touches.items():
            try:
                outcome.users_written += apply_touches(self.store, {user_key: [t for _, t in pairs]}, now)
            except Exception as exc:  # any store failure (a StateConflict too): redeliver this user's events
                log.error("user state write failed for %d events of one user: %r", len(pairs), exc)
                outcome.failed.extend(i for i, _ in pairs)
                continue
            outcome.applied += len(pairs)
        done = now_us()
        failed = set(outcome.failed)
        for pairs in touches.values():
            for index, _ in pairs:
                if index not in failed:
                    self.lag.observe(max(0, done - raws[index].received_at_us) / 1e6)
        for name, n in zip(
            OUTCOMES,
            (outcome.applied, outcome.skipped, len(outcome.rejected), len(outcome.failed)),
            strict=True,
        ):
            if n:
                self.events.labels(name).inc(n)
        outcome.failed.sort()
        return outcome
