"""Event Hubs: the collector's publisher, and Capture's records in raw form.

Capture writes Avro (``Body`` bytes, ``EnqueuedTimeUtc``, ``SequenceNumber``,
``Offset``, properties) into the lake; ``CAPTURE_SCHEMA`` is what the Synapse
job reads them with and ``to_raw`` turns one record into the core's
``RawEvent``, ordered by enqueue time across partitions. The Event Hubs and
identity SDKs are imported on use.
"""

from __future__ import annotations

from typing import Any

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import to_us
from pipeline_code.streams.publish import PublishError
from pipeline_code.streams.records import stream_offset

# Event Hubs Capture's Avro record.
CAPTURE_SCHEMA = (
    "SequenceNumber long, Offset string, EnqueuedTimeUtc string, "
    "SystemProperties map<string,string>, Properties map<string,string>, Body binary"
)


def to_raw(row: Any) -> tuple[int, int, bytes]:
    """A capture record -> a ``RawEvent`` tuple. The offset orders by
    enqueue time; the partition (from the file path) and sequence number
    separate events enqueued in the same millisecond."""
    import datetime as dt

    enqueued = dt.datetime.strptime(row["EnqueuedTimeUtc"], "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=dt.UTC)
    at_us = to_us(enqueued)
    offset = stream_offset(f"{row['partition']}:{row['SequenceNumber']}", at_us // 1000)
    return tuple(RawEvent(offset, at_us, bytes(row["Body"])))  # type: ignore[return-value]


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
