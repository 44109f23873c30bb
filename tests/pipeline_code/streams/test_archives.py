"""The raw archives as each cloud writes them, read back into the core's
``RawEvent`` with the offsets the streaming jobs stored for the same
records: the Cloud Storage subscription's Avro (written here with fastavro
in its documented schema), Firehose's GZIP objects of the transform's lines,
and Event Hubs Capture's Avro."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io

import fastavro

from pipeline_code.streams import eventhubs, firehose, kinesis, pubsub
from tests.conftest import line

# The Cloud Storage subscription's Avro schema with write_metadata on.
GCS_SUBSCRIPTION_SCHEMA = {
    "type": "record",
    "name": "PubsubMessage",
    "fields": [
        {"name": "subscription_name", "type": "string"},
        {"name": "message_id", "type": "string"},
        {"name": "publish_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "data", "type": "bytes"},
    ],
}


def test_the_cloud_storage_subscriptions_avro_gives_the_streaming_jobs_offsets() -> None:
    published = dt.datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt.UTC)
    records = [
        {
            "subscription_name": "projects/shop/subscriptions/dataflow-archive",
            "message_id": str(2070443601311540 + i),
            "publish_time": published,
            "attributes": {},
            "data": payload,
        }
        for i, payload in enumerate([line(event_id="a"), b"\xff not json", b""])
    ]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(GCS_SUBSCRIPTION_SCHEMA), records)
    buf.seek(0)
    raws = [pubsub.archive_to_raw(r) for r in fastavro.reader(buf)]
    assert [r.offset for r in raws] == [pubsub.pubsub_offset(r["message_id"]) for r in records]
    assert {r.received_at_us for r in raws} == {1_796_040_000_123_456}
    assert [r.payload for r in raws] == [r["data"] for r in records]


def firehose_event(payloads: list[bytes]) -> dict:
    """A data-transformation invocation for a Kinesis source, as Firehose sends it."""
    return {
        "invocationId": "00540a87-5050-496a-84e4-e7d92bbaf5e2",
        "deliveryStreamArn": "arn:aws:firehose:eu-west-1:123456789012:deliverystream/dataflow-archive",
        "sourceKinesisStreamArn": "arn:aws:kinesis:eu-west-1:123456789012:stream/dataflow-ingest-events",
        "region": "eu-west-1",
        "records": [
            {
                "recordId": f"4959{i:04d}",
                "approximateArrivalTimestamp": 1796040000123 + i,
                "data": base64.b64encode(p).decode(),
                "kinesisRecordMetadata": {
                    "sequenceNumber": f"4959033827149025660855969253836157109592157598913658{i:04d}",
                    "subsequenceNumber": 0,
                    "partitionKey": f"{i:032x}",
                    "shardId": "shardId-000000000001",
                    "approximateArrivalTimestamp": 1796040000123 + i,
                },
            }
            for i, p in enumerate(payloads)
        ],
    }


def test_firehoses_archive_objects_give_the_glue_jobs_offsets() -> None:
    payloads = [line(event_id="a"), b"{broken", b'{"nested": "\\n"}']
    event = firehose_event(payloads)
    answer = firehose.handler(event)
    assert [r["result"] for r in answer["records"]] == ["Ok"] * 3
    assert [r["recordId"] for r in answer["records"]] == [r["recordId"] for r in event["records"]]
    # Firehose concatenates the transformed records and GZIPs the object.
    obj = gzip.compress(b"".join(base64.b64decode(r["data"]) for r in answer["records"]))
    raws = firehose.archive_object_to_raw(obj)
    assert [r.payload for r in raws] == payloads
    # What the Glue job's Kinesis connector row gives for the same records.
    for raw, rec in zip(raws, event["records"], strict=True):
        meta = rec["kinesisRecordMetadata"]
        row = {
            "data": base64.b64decode(rec["data"]),
            "sequenceNumber": meta["sequenceNumber"],
            "approximateArrivalTimestamp": dt.datetime.fromtimestamp(
                meta["approximateArrivalTimestamp"] / 1000, dt.UTC
            ),
        }
        assert tuple(raw) == kinesis.to_raw(row)


def test_a_line_that_is_not_the_archives_names_itself() -> None:
    import pytest

    with pytest.raises(ValueError, match="not a line of the Firehose archive"):
        firehose.archive_to_raw(b'{"seq": "1"}')


def test_captures_avro_records_read_as_the_synapse_job_reads_them() -> None:
    schema = {
        "type": "record",
        "name": "EventData",
        "namespace": "Microsoft.ServiceBus.Messaging",
        "fields": [
            {"name": "SequenceNumber", "type": "long"},
            {"name": "Offset", "type": "string"},
            {"name": "EnqueuedTimeUtc", "type": "string"},
            {
                "name": "SystemProperties",
                "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
            },
            {
                "name": "Properties",
                "type": {"type": "map", "values": ["long", "double", "string", "bytes", "null"]},
            },
            {"name": "Body", "type": ["null", "bytes"]},
        ],
    }
    records = [
        {
            "SequenceNumber": 7,
            "Offset": "4096",
            "EnqueuedTimeUtc": "11/30/2026 12:00:00 PM",
            "SystemProperties": {},
            "Properties": {},
            "Body": line(event_id="c"),
        }
    ]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records)
    buf.seek(0)
    (rec,) = list(fastavro.reader(buf))
    offset, at_us, body = eventhubs.to_raw({**rec, "partition": "3"})
    assert body == records[0]["Body"] and at_us == 1_796_040_000_000_000
    # The same record in another partition is another arrival: another offset.
    assert offset != eventhubs.to_raw({**rec, "partition": "4"})[0]
