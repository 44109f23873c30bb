"""The fast path on AWS: a Lambda behind a Kinesis event source mapping.

Handler ``pipeline_code.fastpath.aws_lambda.handler`` (the serving image, run
through ``awslambdaric``), with ``USER_STATE=dynamodb:<table>``. Lambda
delivers a batch of one shard's records, in order::

    {"Records": [{"kinesis": {"data": "<base64>", "sequenceNumber": "4959...",
                              "partitionKey": "...", "approximateArrivalTimestamp": 1764504000.123,
                              "kinesisSchemaVersion": "1.0"},
                  "eventSource": "aws:kinesis", "eventID": "shardId-000000000000:4959...",
                  "eventSourceARN": "arn:aws:kinesis:...", ...}]}

The mapping has ``ReportBatchItemFailures``: the answer names the records
whose user's write failed (``batchItemFailures``), Lambda retries from the
earliest of them (``bisect_batch_on_function_error`` halves a batch that
keeps failing) and, past its retries, sends the batch's description to the
on-failure destination, the chain's dead-letter bucket. Rejected events are
acknowledged (see ``pipeline_code.fastpath``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from typing import Any

from pipeline_code import host
from pipeline_code.core.parse import RawEvent
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.streams.kinesis import kinesis_offset

_fast: FastPath | None = None


def raw_event(record: dict[str, Any]) -> RawEvent:
    """A Kinesis event record -> ``RawEvent`` (arrival from
    ``approximateArrivalTimestamp``, seconds). Undecodable data becomes an
    empty payload, which the parse rejects with its reason."""
    kinesis = record["kinesis"]
    arrived_us = round(float(kinesis["approximateArrivalTimestamp"]) * 1_000_000)
    try:
        payload = base64.b64decode(kinesis["data"], validate=True)
    except binascii.Error:
        payload = b""
    return RawEvent(kinesis_offset(kinesis["sequenceNumber"], arrived_us // 1000), arrived_us, payload)


def apply(fast: FastPath, event: dict[str, Any]) -> dict[str, Any]:
    """One invocation: the batch applied, the failed records named by sequence number."""
    records = event.get("Records", [])
    outcome = fast.apply([raw_event(r) for r in records])
    return {
        "batchItemFailures": [
            {"itemIdentifier": records[i]["kinesis"]["sequenceNumber"]} for i in outcome.failed
        ]
    }


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point; the store is opened once per instance."""
    global _fast
    if _fast is None:
        from pipeline_code.userstate import store_from_env

        logging.getLogger().setLevel(os.environ.get(host.ENV_LOG_LEVEL, "INFO"))
        _fast = FastPath(store_from_env(os.environ))
    return apply(_fast, event)
