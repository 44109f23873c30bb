"""Pub/Sub: the collector's publisher, a message's offset, and the raw archive's records.

The archive is a Cloud Storage subscription writing Avro with metadata
(``write_metadata``): one record per message with ``subscription_name``,
``message_id``, ``publish_time`` (timestamp-micros), ``attributes`` and
``data``. ``archive_to_raw`` turns one into the same ``RawEvent`` the
streaming job builds from the live message (``pubsub_offset`` of the
message id, the publish time), so a replay of a range the stream already
stored finds the same offsets. google-cloud-pubsub is imported on use.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import to_us
from pipeline_code.streams.publish import PublishError

ARCHIVE_HOUR_FORMAT = "YYYY/MM/DD/hh/"
"""The subscription's ``filename_datetime_format``: one folder per arrival hour (UTC)."""


def pubsub_offset(message_id: str) -> int:
    """``source_offset`` for a Pub/Sub message. Pub/Sub has no offsets; its
    message ids are decimal strings in practice, which keep log order within a
    publisher. Anything else gets a stable 63-bit hash, so the column stays
    a non-null INT64 either way."""
    if message_id.isdigit() and int(message_id) < 2**63:
        return int(message_id)
    return zlib.crc32(message_id.encode()) << 31 | zlib.adler32(message_id.encode()) >> 1


def archive_to_raw(record: dict[str, Any]) -> RawEvent:
    """A Cloud Storage subscription's Avro record -> ``RawEvent``."""
    published = record["publish_time"]
    at_us = to_us(published) if isinstance(published, dt.datetime) else int(published)
    return RawEvent(pubsub_offset(record["message_id"] or ""), at_us, bytes(record["data"] or b""))


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
