"""The few HTTP pieces the servers share, over bare ASGI.

The servers are plain ASGI callables run by uvicorn (httptools + uvloop):
no web framework, because the model server's budget is a few hundred
microseconds per request and a router would be most of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

import msgspec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
_encoder = msgspec.json.Encoder()


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected (or was cut off by a timeout) before its body
    arrived: there is nobody left to answer."""


DRAIN_BYTES = 16 << 20
"""How much of an oversize body is read and dropped before the 4xx, so the
client is still reading when it arrives: closing with unread bytes in the
socket sends a reset, which clients take for a network fault and retry."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def discard_body(receive: Receive) -> None:
    """Drop a body the answer does not need (up to ``DRAIN_BYTES``), so a 4xx
    sent before it was read still reaches the client."""
    await _drain(receive, DRAIN_BYTES)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a body, up to ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body. Past ``limit`` bytes (from Content-Length when
    the client sent one) the rest is drained, up to ``DRAIN_BYTES``, and
    ``BodyTooLarge`` raised; ``ClientGone`` when the client left mid-body."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        if int(length) <= DRAIN_BYTES:
            await _drain(receive, int(length))
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive, DRAIN_BYTES - size)
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def is_json(scope: Scope) -> bool:
    """No Content-Type, ``*/*`` or ``application/json`` (any parameters).
    SageMaker and some clients omit the header; anything else named is not JSON."""
    value = header(scope, b"content-type")
    if value is None:
        return True
    media = value.split(b";", 1)[0].strip().lower()
    return media in (b"application/json", b"*/*", b"") or media.endswith(b"+json")


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, status: int, obj: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await respond(send, status, _encoder.encode(obj), JSON, headers)


def error_body(status: int, message: str) -> dict[str, Any]:
    """Every server's error answer: ``code`` and ``message`` at the top, the
    shape Segment's and RudderStack's SDKs parse (they read ``payload["code"]``
    and give a 4xx up at once instead of retrying it), and the status again."""
    try:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = f"http_{status}"
    return {"code": code, "message": message, "status": status}


async def respond_error(send: Send, status: int, message: str) -> None:
    await respond_json(send, status, error_body(status, message))


async def respond_fallback(
    send: Send, path: str, exposition: Callable[[], bytes], hint: str = ""
) -> tuple[str, int]:
    """The routes every server has, ``/live`` and ``/metrics``, else a 404.
    Returns the route name and status for the request metrics."""
    if path == "/live":
        await respond_json(send, 200, {"status": "live"})
        return "live", 200
    if path == "/metrics":
        await respond(send, 200, exposition(), PROMETHEUS)
        return "metrics", 200
    await respond_error(send, 404, f"no route {path}{hint}")
    return "unknown", 404


async def lifespan(receive: Receive, send: Send, startup: Callable[[], None] | None = None) -> None:
    """Answer ASGI lifespan messages, running ``startup`` before startup completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class RoutedApp:
    """The ASGI shape every server but the collector shares: lifespan
    answered (``startup`` runs before it completes, ``shutdown`` after), and
    every HTTP request timed into ``self.metrics`` under the route name and
    status that ``route`` returns."""

    metrics: Any

    def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.startup)
            await self.shutdown()
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route, code = await self.route(scope, receive, send)
        self.metrics.observe(route, code, time.perf_counter() - started)
