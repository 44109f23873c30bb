"""Where the collector puts accepted events: one small interface, per broker.

``publish(payloads)`` returns only once the events are durable (appended and
fsynced, or acknowledged by the broker); the collector acknowledges the HTTP
request after that, so an acknowledged event is never lost.

- ``EventLogPublisher``: the local event log (the local chain's ingest);
- ``PubSubPublisher``, ``KinesisPublisher``, ``EventHubsPublisher`` (in
  ``pubsub``, ``kinesis``, ``eventhubs``): the clouds' streams, batched to
  each broker's limits (SDKs imported on use: the collector image installs
  only its cloud's);
- ``SpillingPublisher``: wraps any of them with retries and backoff, and when
  the broker stays down writes the batch to a bounded local spill
  (fsynced files) instead, then re-publishes the spill, oldest first, once
  the broker answers again. Only a full spill refuses events (503).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pipeline_code import host
from pipeline_code.streams.eventlog import EventLog

log = logging.getLogger("dataflow.collector")


class PublishError(Exception):
    """The broker did not take the events."""


class SpillFull(PublishError):
    """The broker is down and the local spill is at its bound."""


class Publisher(Protocol):
    def publish(self, payloads: list[bytes]) -> None: ...


class EventLogPublisher:
    """The local event log: appended and fsynced before ``publish`` returns."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log = EventLog(log_dir)

    def publish(self, payloads: list[bytes]) -> None:
        try:
            self.log.append(payloads)
        except OSError as exc:
            # A full disk or a failing device: nothing was acknowledged, the
            # client may retry (the collector answers 503), a torn tail is
            # repaired by the next append.
            raise PublishError(f"event log {self.log.path}: {exc.strerror or exc}") from exc


def chunks(payloads: list[bytes], max_count: int, max_bytes: int):
    chunk: list[bytes] = []
    size = 0
    for p in payloads:
        if chunk and (len(chunk) >= max_count or size + len(p) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(p)
        size += len(p)
    if chunk:
        yield chunk


class SpillingPublisher:
    """Retries with backoff, then a bounded local spill; drains it when the broker is back."""

    def __init__(
        self,
        inner: Publisher,
        spill_dir: str | os.PathLike,
        max_spill_bytes: int = 1 << 30,
        attempts: int = 3,
        backoff_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.dir = Path(spill_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_spill_bytes
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.lock = threading.Lock()

    def spilled_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.dir.glob("*.spill"))

    def _try(self, payloads: list[bytes]) -> Exception | None:
        error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                self.inner.publish(payloads)
                return None
            except Exception as exc:
                error = exc
                if attempt + 1 < self.attempts:
                    self.sleep(self.backoff_s * 2**attempt)
        return error

    def _spill(self, payloads: list[bytes]) -> None:
        body = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
        if self.spilled_bytes() + len(body) > self.max_bytes:
            raise SpillFull(
                f"the broker is down and the spill at {self.dir} holds {self.max_bytes} bytes already"
            )
        path = self.dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.spill"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _read(path: Path) -> list[bytes]:
        data, out, i = path.read_bytes(), [], 0
        while i < len(data):
            n = int.from_bytes(data[i : i + 4], "big")
            out.append(data[i + 4 : i + 4 + n])
            i += 4 + n
        return out

    def drain(self) -> int:
        """Re-publish spilled batches, oldest first; stops at the first failure. Returns events sent."""
        sent = 0
        with self.lock:
            for path in sorted(self.dir.glob("*.spill")):
                payloads = self._read(path)
                if self._try(payloads) is not None:
                    break
                path.unlink()
                sent += len(payloads)
        return sent

    def publish(self, payloads: list[bytes]) -> None:
        if any(self.dir.glob("*.spill")):
            self.drain()  # keep the order: older spilled events go first
        error = self._try(payloads)
        if error is None:
            return
        log.warning("broker unavailable (%s); spilling %d events to %s", error, len(payloads), self.dir)
        with self.lock:
            self._spill(payloads)


def publisher_for(sink: str, spill_dir: str | None = None, spill_mb: int = 1024) -> Publisher:
    """``COLLECTOR_SINK`` -> the publisher (cloud ones behind a local spill)."""
    kind, target = host.parse_sink(sink)
    if kind == "eventlog":
        return EventLogPublisher(target)  # already durable and local: no spill in front of it
    if kind == "pubsub":
        from pipeline_code.streams.pubsub import PubSubPublisher

        inner: Publisher = PubSubPublisher(target)
    elif kind == "kinesis":
        from pipeline_code.streams.kinesis import KinesisPublisher

        inner = KinesisPublisher(target, os.environ.get("AWS_REGION"))
    elif kind == "eventhubs":
        from pipeline_code.streams.eventhubs import EventHubsPublisher

        namespace, hub = host.eventhubs_target(target)
        inner = EventHubsPublisher(namespace, hub)
    spill = spill_dir or str(Path(tempfile.gettempdir()) / "dataflow-collector-spill")
    return SpillingPublisher(inner, spill, spill_mb << 20)
