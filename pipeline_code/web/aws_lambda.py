"""Lambda function URLs to ASGI: one function-URL event (payload format 2.0)
through an ASGI app, its answer as Lambda's response. The API and the
collector both run on Lambda through it."""

from __future__ import annotations

import base64
from typing import Any


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
