"""Where the collector puts accepted events: one small interface, per broker.

``publish(payloads)`` returns only once the events are durable (appended and
fsynced, or acknowledged by the broker); the collector acknowledges the HTTP
request after that, so an acknowledged event is never lost.

- ``EventLogPublisher``: the local event log (the local chain's ingest);
- ``PubSubPublisher``, ``KinesisPublisher``, ``EventHubsPublisher``: the
  clouds' streams, batched to each broker's limits (SDKs imported on use:
  the collector image installs only its cloud's);
- ``SpillingPublisher``: wraps any of them with retries and backoff, and when
  the broker stays down writes the batch to a bounded local spill
  (fsynced files) instead, then re-publishes the spill, oldest first, once
  the broker answers again. Only a full spill refuses events (503).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pipeline_code.local.eventlog import EventLog

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
        self.log.append(payloads)


def _chunks(payloads: list[bytes], max_count: int, max_bytes: int):
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


class PubSubPublisher:
    """A Pub/Sub topic (``projects/P/topics/T``); the client batches, we wait for every id."""

    def __init__(self, topic: str) -> None:
        from google.cloud import pubsub_v1

        self.topic = topic
        self.client = pubsub_v1.PublisherClient()

    def publish(self, payloads: list[bytes]) -> None:
        futures = [self.client.publish(self.topic, p) for p in payloads]
        try:
            for f in futures:
                f.result(timeout=30)
        except Exception as exc:
            raise PublishError(f"Pub/Sub {self.topic}: {exc}") from exc


class KinesisPublisher:
    """A Kinesis stream: ``PutRecords`` of at most 500 records / 5 MB, failed
    records retried (Kinesis can accept part of a call)."""

    def __init__(self, stream_name: str, region: str | None = None, attempts: int = 5) -> None:
        import boto3

        self.stream = stream_name
        self.client = boto3.client("kinesis", region_name=region)
        self.attempts = attempts

    def publish(self, payloads: list[bytes]) -> None:
        for chunk in _chunks(payloads, 500, 4_500_000):
            records = [{"Data": p, "PartitionKey": uuid.uuid4().hex} for p in chunk]
            for attempt in range(self.attempts):
                try:
                    result = self.client.put_records(StreamName=self.stream, Records=records)
                except Exception as exc:
                    raise PublishError(f"Kinesis {self.stream}: {exc}") from exc
                records = [r for r, out in zip(records, result["Records"], strict=True) if "ErrorCode" in out]
                if not records:
                    break
                time.sleep(0.1 * 2**attempt)
            if records:
                raise PublishError(f"Kinesis {self.stream}: {len(records)} records still throttled")


class EventHubsPublisher:
    """An Event Hub, with Entra ID (the namespace has SAS keys off)."""

    def __init__(self, namespace_host: str, hub: str) -> None:
        from azure.eventhub import EventHubProducerClient
        from azure.identity import DefaultAzureCredential

        self.hub = hub
        self.client = EventHubProducerClient(namespace_host, hub, DefaultAzureCredential())

    def publish(self, payloads: list[bytes]) -> None:
        from azure.eventhub import EventData

        try:
            batch = self.client.create_batch()
            for p in payloads:
                try:
                    batch.add(EventData(p))
                except ValueError:  # the batch is full: send it, start the next
                    self.client.send_batch(batch)
                    batch = self.client.create_batch()
                    batch.add(EventData(p))
            self.client.send_batch(batch)
        except Exception as exc:
            raise PublishError(f"Event Hubs {self.hub}: {exc}") from exc


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
