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
import base64
import os
from typing import Any

from pipeline_code.serving.api import RecommendationApi, endpoint_from_env

_loop: asyncio.AbstractEventLoop | None = None
_api: RecommendationApi | None = None


async def invoke(app, event: dict[str, Any]) -> dict[str, Any]:
    """One function-URL event through an ASGI app -> a Lambda response."""
    http = event["requestContext"]["http"]
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": http["method"],
        "scheme": "https",
        "path": event.get("rawPath") or http.get("path", "/"),
        "raw_path": (event.get("rawPath") or "/").encode(),
        "query_string": (event.get("rawQueryString") or "").encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (event.get("headers") or {}).items()],
        "client": (http.get("sourceIp", ""), 0),
        "server": (event.get("requestContext", {}).get("domainName", "lambda"), 443),
    }
    sent = False
    response: dict[str, Any] = {"statusCode": 500, "headers": {}, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response["statusCode"] = message["status"]
            response["headers"] = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            response["body"] += message.get("body", b"")

    await app(scope, receive, send)
    payload: bytes = response["body"]
    try:
        text, is_b64 = payload.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(payload).decode(), True
    return {**response, "body": text, "isBase64Encoded": is_b64}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``pipeline_code.serving.aws_lambda.handler``)."""
    global _loop, _api
    if _api is None:
        _loop = asyncio.new_event_loop()
        _api = RecommendationApi(endpoint_from_env(os.environ.get("MODEL_ENDPOINT")))
    return _loop.run_until_complete(invoke(_api, event))  # type: ignore[union-attr]
