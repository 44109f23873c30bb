"""The recommendation API on AWS Lambda, behind a function URL.

Lambda hands the function an event, not a socket: ``handler`` turns a
function-URL event (payload format 2.0) into one ASGI request for the same
``RecommendationApi`` the container serves, and its answer into Lambda's
response. The model endpoint comes from ``MODEL_ENDPOINT``
(``sagemaker:<endpoint name>``). The image is the serving Dockerfile's with
this handler as its command; the API is built once per execution
environment and reused across invocations.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pipeline_code.serving.api import RecommendationApi, endpoint_from_env
from pipeline_code.web.aws_lambda import invoke

_loop: asyncio.AbstractEventLoop | None = None
_api: RecommendationApi | None = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``pipeline_code.serving.aws_lambda.handler``)."""
    global _loop, _api
    if _api is None:
        _loop = asyncio.new_event_loop()
        _api = RecommendationApi(endpoint_from_env(os.environ.get("MODEL_ENDPOINT")))
    return _loop.run_until_complete(invoke(_api, event))  # type: ignore[union-attr]
