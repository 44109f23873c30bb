"""The collector: the HTTP front door existing trackers send to unchanged.

    dataflow collect --warehouse .dataflow/warehouse.duckdb --write-key KEY   # local event log
    python -m pipeline_code.collector                                         # container (env config)

Routes:

- Segment's HTTP tracking API: ``POST /v1/batch``, ``/v1/track``,
  ``/v1/page``, ``/v1/screen``, ``/v1/identify``, ``/v1/alias``,
  ``/v1/group``, and the short routes analytics.js posts to (``/v1/b``,
  ``/v1/t``, ``/v1/p``, ``/v1/s``, ``/v1/i``, ``/v1/a``, ``/v1/g``, with
  ``Content-Type: text/plain`` bodies of JSON). Browsers get CORS: a
  preflight (``OPTIONS``) is answered 204 and every answer, errors
  included, carries ``Access-Control-Allow-Origin`` for an allowed origin
  (any, unless ``COLLECTOR_ALLOWED_ORIGINS`` names them; others get 403).
  The write key is the HTTP basic-auth user name (or the body's
  ``writeKey``); bodies may be gzipped. Calls map onto the event
  contract (``pipeline_code.collector.segment``).
- ``POST /v1/events``: events already in our contract, one JSON object or a
  JSON array of them, forwarded unchanged (bytes per event).
- ``GET /metrics`` (Prometheus), ``GET /live``.

Answers, as Segment documents them where it has an answer:

| case | status |
|---|---|
| accepted (durably appended or published) | 200 ``{"success": true}`` |
| body not JSON, not gzip though it says so, not the expected shape, or nested over 254 levels | 400 |
| one event over 32 KB, or a request over 500 KB (after gunzip) | 400 |
| no write key, one not configured, or a ``writeKey`` that is not a string | 401 |
| any other method or route | 405 / 404 |
| the broker is down and the spill is full, or the log cannot be written (full disk) | 503 (retry later) |

Bad input never gets a 5xx; every 4xx says what was wrong, as ``{"code", "message",
"status"}`` at the top level (the shape Segment's and RudderStack's SDKs parse,
so they give a 4xx up at once). The answer is sent
only after ``publish`` returned, so an acknowledged event is never lost.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import time
import zlib

import orjson
from prometheus_client import Counter

from pipeline_code.collector import segment
from pipeline_code.streams.publish import Publisher, PublishError
from pipeline_code.web.http import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    lifespan,
    read_body,
    respond,
    respond_error,
    respond_fallback,
    respond_json,
)
from pipeline_code.web.metrics import ServerMetrics

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
SEGMENT_ROUTES = {f"/v1/{kind}": kind for kind in (*segment.CALL_TYPES, "batch")}
# analytics.js (Segment's browser library) posts to the first letter of each call.
SEGMENT_ROUTES |= {f"/v1/{kind[0]}": kind for kind in (*segment.CALL_TYPES, "batch")}
CORS_MAX_AGE = b"86400"
OK = {"success": True}


class BadRequest(Exception):
    """The request is malformed; the message says how (answered with ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _gunzip(body: bytes) -> bytes:
    try:
        # Bounded: a small gzip bomb must not expand past the request limit.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = inflater.decompress(body, MAX_REQUEST_BYTES + 1)
        if len(out) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
            raise BadRequest(f"request over {MAX_REQUEST_BYTES // 1024} KB after gunzip")
        if not inflater.eof:
            raise BadRequest("body is not valid gzip (truncated)")
        return out
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None


def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None


def _dumps(value, what: str) -> bytes:
    """JSON bytes of one call or event; ``BadRequest`` where orjson cannot
    write it back (it reads 1024 levels of nesting but writes only 254)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"{what} cannot be stored: {exc}") from None


def _basic_user(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if not value or not value.lower().startswith(b"basic "):
        return None
    try:
        return base64.b64decode(value[6:].strip(), validate=True).decode().split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return None


class GroupCommit:
    """Concurrent requests share one durable append: while one ``publish``
    runs (an fsync, a broker round trip), the requests that arrive queue up
    and go together in the next one. Each request is answered only when its
    own events are in a publish that returned; if that publish fails, every
    request in it gets the error (none of them was acknowledged)."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.pending: list[tuple[list[bytes], asyncio.Future]] = []
        self.flushing = False

    async def publish(self, payloads: list[bytes]) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((payloads, future))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                group, self.pending = self.pending, []
                try:
                    # The broker call blocks (fsync, network): off the event loop.
                    await asyncio.to_thread(
                        self.publisher.publish, [p for payloads, _ in group for p in payloads]
                    )
                except Exception as exc:
                    for _, future in group:
                        future.set_exception(exc)
                else:
                    for _, future in group:
                        future.set_result(None)
        finally:
            self.flushing = False


def _with_cors(send: Send, origin: bytes) -> Send:
    """``send`` that puts the CORS headers on every answer, errors included:
    a browser hides any answer without them from the page."""

    async def send_with_cors(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin),
                    (b"access-control-allow-credentials", b"true"),
                    (b"vary", b"Origin"),
                ],
            }
        await send(message)

    return send_with_cors


class Collector:
    """The ASGI app."""

    def __init__(
        self,
        publisher: Publisher,
        write_keys: set[str] | None = None,
        allowed_origins: set[str] | None = None,
    ) -> None:
        self.publisher = publisher
        # Browsers call from the shop's own origin. None: any origin may (the
        # write key is the check); a set: only those (exact scheme://host[:port]).
        self.allowed_origins = allowed_origins
        self.commit = GroupCommit(publisher)
        # None: no auth (a private local collector). Empty set: nothing is accepted.
        self.write_keys = write_keys
        self.metrics = ServerMetrics("dataflow_collector")
        self.accepted = Counter(
            "dataflow_collector_events_total",
            "Events accepted, by kind: contract (mapped or sent as such) or kept (no contract name).",
            ("kind",),
            registry=self.metrics.registry,
        )
        self.rejected = Counter(
            "dataflow_collector_rejected_requests_total",
            "Requests refused, by reason.",
            ("reason",),
            registry=self.metrics.registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        origin = header(scope, b"origin")
        if origin is not None and not self._origin_allowed(origin):
            await respond_error(send, 403, f"origin {origin.decode(errors='replace')} is not allowed")
            self.metrics.observe("cors", 403, time.perf_counter() - started)
            return
        if origin is not None:
            send = _with_cors(send, origin)
        if scope["method"] == "OPTIONS":
            route, code = await self._preflight(scope, send)
        else:
            route, code = await self._route(scope, receive, send)
        self.metrics.observe(route, code, time.perf_counter() - started)

    def _origin_allowed(self, origin: bytes) -> bool:
        return self.allowed_origins is None or origin.decode(errors="replace") in self.allowed_origins

    async def _preflight(self, scope: Scope, send: Send) -> tuple[str, int]:
        """A browser's CORS preflight: which methods and headers a POST may carry."""
        requested = header(scope, b"access-control-request-headers") or b"authorization, content-type"
        await respond(
            send,
            204,
            b"",
            headers=[
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", requested),
                (b"access-control-max-age", CORS_MAX_AGE),
            ],
        )
        return "preflight", 204

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        path = scope["path"].rstrip("/") or "/"
        if path in SEGMENT_ROUTES or path == "/v1/events":
            route = "segment" if path in SEGMENT_ROUTES else "events"
            if scope["method"] != "POST":
                await respond_error(send, 405, f"{path} takes POST")
                return route, 405
            try:
                payloads, kinds = await self._payloads(scope, receive, path)
                await self.commit.publish(payloads)
            except BadRequest as exc:
                self.rejected.labels("auth" if exc.status == 401 else "bad_request").inc()
                await respond_error(send, exc.status, str(exc))
                return route, exc.status
            except ClientGone:
                return route, 499  # nobody to answer; nothing was published
            except PublishError as exc:
                self.rejected.labels("unavailable").inc()
                await respond_error(send, 503, f"events not accepted, retry later: {exc}")
                return route, 503
            for kind in kinds:
                self.accepted.labels(kind).inc()
            await respond_json(send, 200, OK)
            return route, 200
        if scope["method"] not in ("GET", "HEAD"):
            await respond_error(send, 405, f"{scope['method']} is not served on {path}")
            return "other", 405
        return await respond_fallback(
            send, path, self.metrics.exposition, "; POST to /v1/batch or /v1/events"
        )

    async def _payloads(self, scope: Scope, receive: Receive, path: str) -> tuple[list[bytes], list[str]]:
        try:
            body = await read_body(scope, receive, MAX_REQUEST_BYTES)
        except BodyTooLarge:
            raise BadRequest(f"request over {MAX_REQUEST_BYTES // 1024} KB") from None
        if (header(scope, b"content-encoding") or b"").lower() == b"gzip":
            body = _gunzip(body)
        doc = _json(body)
        key = _basic_user(scope) or (doc.get("writeKey") if isinstance(doc, dict) else None)
        if key is not None and not isinstance(key, str):
            raise BadRequest(f"writeKey must be a string, got {type(key).__name__}", 401)
        if self.write_keys is not None and key not in self.write_keys:
            raise BadRequest(
                "missing write key (HTTP basic auth user name)" if not key else "unknown write key", 401
            )
        received = dt.datetime.now(dt.UTC)
        if path == "/v1/events":
            events = doc if isinstance(doc, list) else [doc]
            if not events or not all(isinstance(e, dict) for e in events):
                raise BadRequest("/v1/events takes an event object or a non-empty array of them")
            payloads = [_dumps(e, f"event {i}") for i, e in enumerate(events)]
            kinds = ["contract"] * len(payloads)
        else:
            messages = self._messages(doc, SEGMENT_ROUTES[path])
            sent = [_dumps(m, f"call {i}") for i, m in enumerate(messages)]
            for i, raw in enumerate(sent):  # Segment's limit is on each call as sent
                if len(raw) > MAX_EVENT_BYTES:
                    limit = MAX_EVENT_BYTES // 1024
                    raise BadRequest(f"event {i} is {len(raw)} bytes; the limit is {limit} KB")
            try:
                payloads = [segment.encode(m, received, raw) for m, raw in zip(messages, sent, strict=True)]
            except orjson.JSONEncodeError as exc:
                raise BadRequest(f"a call cannot be stored: {exc}") from None
            kinds = ["contract" if segment.event_name(m) else "kept" for m in messages]
        for i, p in enumerate(payloads):
            if len(p) > MAX_EVENT_BYTES:
                raise BadRequest(f"event {i} is {len(p)} bytes; the limit is {MAX_EVENT_BYTES // 1024} KB")
        return payloads, kinds

    @staticmethod
    def _messages(doc, kind: str) -> list[dict]:
        if not isinstance(doc, dict):
            raise BadRequest(f"body must be a JSON object, got {type(doc).__name__}")
        if kind != "batch":
            return [{**doc, "type": kind}]
        batch = doc.get("batch")
        if not isinstance(batch, list) or not batch:
            raise BadRequest("/v1/batch needs a non-empty 'batch' array")
        for i, m in enumerate(batch):
            if not isinstance(m, dict) or m.get("type") not in segment.CALL_TYPES:
                raise BadRequest(
                    f"batch[{i}].type must be one of {', '.join(segment.CALL_TYPES)}, got "
                    f"{m.get('type') if isinstance(m, dict) else m!r}"
                )
        # Segment's context and integrations on the batch apply to each message.
        shared = {k: doc[k] for k in ("context", "integrations") if k in doc}
        return [{**shared, **m} for m in batch]
