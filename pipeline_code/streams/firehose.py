"""The AWS raw archive: Kinesis Data Firehose from the stream to S3, through one transform.

Firehose alone would write the records' bytes concatenated, without their
sequence numbers or arrival times, so a replay could not find the offsets
the Glue streaming job stored. Its data transformation Lambda (``handler``,
run from the serving image) turns each record into one line::

    {"seq": "<sequence number>", "arrival_ms": 1764504000123, "shard": "shardId-...", "data": "<base64>"}

and Firehose writes GZIP objects of those lines under
``raw/YYYY/MM/DD/HH/`` (arrival hour, UTC). ``archive_to_raw`` reads a line
back into the ``RawEvent`` the streaming job built (``kinesis_offset`` of
the same sequence number and arrival), so a replayed range finds what the
stream stored.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pipeline_code.core.parse import RawEvent
from pipeline_code.streams.kinesis import kinesis_offset

PREFIX = "raw/!{timestamp:yyyy/MM/dd/HH}/"
ERROR_PREFIX = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
HANDLER = "pipeline_code.streams.firehose.handler"


def transform(event: dict[str, Any]) -> dict[str, Any]:
    """A Firehose data-transformation invocation (Kinesis source) -> its answer:
    every record ``Ok``, its data one JSON line with its metadata."""
    out = []
    for record in event["records"]:
        meta = record.get("kinesisRecordMetadata") or {}
        line = {
            "seq": meta.get("sequenceNumber", ""),
            "arrival_ms": int(
                meta.get("approximateArrivalTimestamp") or record["approximateArrivalTimestamp"]
            ),
            "shard": meta.get("shardId", ""),
            "data": record["data"],  # already base64: kept as Firehose gave it
        }
        encoded = base64.b64encode(json.dumps(line, separators=(",", ":")).encode() + b"\n").decode()
        out.append({"recordId": record["recordId"], "result": "Ok", "data": encoded})
    return {"records": out}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The transform Lambda's entry point."""
    return transform(event)


def archive_to_raw(line: bytes) -> RawEvent:
    """One line of an archive object -> ``RawEvent`` (``ValueError`` names what is wrong)."""
    try:
        rec = json.loads(line)
        arrival_ms = int(rec["arrival_ms"])
        payload = base64.b64decode(rec["data"], validate=True)
        seq = rec["seq"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a line of the Firehose archive: {line[:200]!r}: {exc!r}") from None
    return RawEvent(kinesis_offset(seq, arrival_ms), arrival_ms * 1000, payload)


def archive_object_to_raw(body: bytes) -> list[RawEvent]:
    """A whole archive object (GZIP of lines, as Firehose writes it) -> its records."""
    import gzip

    return [archive_to_raw(line) for line in gzip.decompress(body).splitlines() if line.strip()]
