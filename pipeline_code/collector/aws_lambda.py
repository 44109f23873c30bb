"""The collector on AWS Lambda, behind a function URL.

The same ``Collector`` ASGI app, through the function-URL bridge the API uses
(``pipeline_code.serving.aws_lambda.invoke``). At a cold start it reads the
write keys from the Secrets Manager secret named by
``COLLECTOR_WRITE_KEYS_SECRET`` (a comma-separated string) and publishes to
``COLLECTOR_SINK`` (``kinesis:<stream>``); ``COLLECTOR_SPILL_MB=0`` (Lambda's
disk does not outlive the instance): when Kinesis stays down the collector
answers 503 and trackers resend.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pipeline_code.collector.__main__ import publisher_for
from pipeline_code.collector.app import Collector
from pipeline_code.serving.aws_lambda import invoke

_loop: asyncio.AbstractEventLoop | None = None
_app: Collector | None = None


def write_keys(secret_id: str) -> set[str]:
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    keys = {k.strip() for k in value.split(",") if k.strip()}
    if not keys:
        raise ValueError(f"secret {secret_id} holds no write keys")
    return keys


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``pipeline_code.collector.aws_lambda.handler``)."""
    global _loop, _app
    if _app is None:
        _loop = asyncio.new_event_loop()
        publisher = publisher_for(
            os.environ["COLLECTOR_SINK"], spill_mb=int(os.environ.get("COLLECTOR_SPILL_MB", "0"))
        )
        _app = Collector(publisher, write_keys(os.environ["COLLECTOR_WRITE_KEYS_SECRET"]))
    return _loop.run_until_complete(invoke(_app, event))  # type: ignore[union-attr]
