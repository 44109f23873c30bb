"""The collector on AWS Lambda, behind a function URL.

The same ``Collector`` ASGI app, through the function-URL bridge the API uses
(``pipeline_code.web.aws_lambda.invoke``). At a cold start it reads the
write keys from the Secrets Manager secret named by
``DATAFLOW_WRITE_KEYS_SECRET`` (a comma-separated string) and publishes to
``COLLECTOR_SINK`` (``kinesis:<stream>``); ``COLLECTOR_SPILL_MB=0`` (Lambda's
disk does not outlive the instance): when Kinesis stays down the collector
answers 503 and trackers resend.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pipeline_code.collector.app import Collector
from pipeline_code.collector.settings import collector_from_env
from pipeline_code.web.aws_lambda import invoke

_loop: asyncio.AbstractEventLoop | None = None
_app: Collector | None = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``pipeline_code.collector.aws_lambda.handler``)."""
    global _loop, _app
    if _app is None:
        _loop = asyncio.new_event_loop()
        _app = collector_from_env(dict(os.environ), default_spill_mb=0)
    return _loop.run_until_complete(invoke(_app, event))  # type: ignore[union-attr]
