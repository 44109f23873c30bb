"""Kinesis: the collector's publisher, and a record's offset and raw form.

Kinesis sequence numbers are ordered per shard only and up to 128 bits
wide, so the stored ``source_offset`` is built from the arrival time
(``kinesis_offset``). ``to_raw`` reads a row of the Spark Structured
Streaming connector (``format("aws-kinesis")``) that the Glue job streams.
boto3 is imported on use.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import to_us
from pipeline_code.streams.publish import PublishError, chunks
from pipeline_code.streams.records import stream_offset


class KinesisPublisher:
    """A Kinesis stream: ``PutRecords`` of at most 500 records / 5 MB, failed
    records retried (Kinesis can accept part of a call)."""

    def __init__(self, stream_name: str, region: str | None = None, attempts: int = 5) -> None:
        import boto3

        self.stream = stream_name
        self.client = boto3.client("kinesis", region_name=region)
        self.attempts = attempts

    def publish(self, payloads: list[bytes]) -> None:
        for chunk in chunks(payloads, 500, 4_500_000):
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


def kinesis_offset(sequence_number: str, arrival_ms: int) -> int:
    """``stream_offset`` of a Kinesis record (its sequence numbers are decimal
    strings of up to 128 bits, too wide for the column)."""
    if not sequence_number.isdigit():
        raise ValueError(f"Kinesis sequenceNumber must be decimal digits, got {sequence_number!r}")
    return stream_offset(sequence_number, arrival_ms)


def to_raw(row: Any) -> tuple[int, int, bytes]:
    """A connector row (``data``, ``sequenceNumber``,
    ``approximateArrivalTimestamp``) -> a ``RawEvent`` tuple."""
    arrived = to_us(row["approximateArrivalTimestamp"])
    return tuple(
        RawEvent(kinesis_offset(row["sequenceNumber"], arrived // 1000), arrived, bytes(row["data"]))
    )  # type: ignore[return-value]
