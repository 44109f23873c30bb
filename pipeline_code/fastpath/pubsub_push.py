"""The fast path on GCP: a Cloud Run service behind a Pub/Sub push subscription.

    USER_STATE=firestore:projects/P/databases/D/user_state python -m pipeline_code.fastpath

Pub/Sub POSTs one message per request, as JSON::

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                 "publishTime": "2026-11-30T12:00:00.123Z"},
     "subscription": "projects/P/subscriptions/S", "deliveryAttempt": 1}

(``deliveryAttempt`` only where the subscription has a dead-letter policy).
Answers: 204 when the event is applied, skipped or rejected (a bad event is
acknowledged: it never blocks the subscription); 503 when the store failed,
so Pub/Sub redelivers with the subscription's retry policy and, past
``max_delivery_attempts``, forwards it to the chain's dead-letter topic; 400
for a body that is not a push envelope (redelivered the same way, so it
too ends in the dead-letter topic). Cloud Run checks the push's OIDC token
before the request reaches us (the service is private). Also ``GET /live``
and ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import time

import msgspec

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import UserState, to_us
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.streams.pubsub import pubsub_offset
from pipeline_code.web.http import (
    BodyTooLarge,
    ClientGone,
    Receive,
    RoutedApp,
    Scope,
    Send,
    read_body,
    respond,
    respond_error,
    respond_fallback,
)
from pipeline_code.web.metrics import ServerMetrics

MAX_PUSH_BYTES = 14 * 1024 * 1024
"""A Pub/Sub message is at most 10 MB, base64 adds a third."""


class PushMessage(msgspec.Struct):
    data: str = ""
    attributes: dict[str, str] = {}
    messageId: str = ""
    publishTime: dt.datetime | None = None


class PushEnvelope(msgspec.Struct):
    message: PushMessage
    subscription: str = ""
    deliveryAttempt: int | None = None


_decoder = msgspec.json.Decoder(PushEnvelope)


def raw_event(envelope: PushEnvelope) -> RawEvent:
    """The message as the core's ``RawEvent``: the offset from the message
    id (as the streaming job's), arrival from ``publishTime``. ``ValueError``
    on bad base64."""
    message = envelope.message
    try:
        payload = base64.b64decode(message.data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"message.data is not base64: {exc}") from None
    published = to_us(message.publishTime) if message.publishTime else time.time_ns() // 1000
    return RawEvent(pubsub_offset(message.messageId), published, payload)


class PushApp(RoutedApp):
    """The ASGI app."""

    def __init__(self, store: UserState) -> None:
        self.metrics = ServerMetrics("dataflow_fresh")
        self.fast = FastPath(store, registry=self.metrics.registry)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        if scope["method"] != "POST":
            return await respond_fallback(
                send, scope["path"], self.metrics.exposition, "; Pub/Sub pushes to POST /"
            )
        try:
            body = await read_body(scope, receive, MAX_PUSH_BYTES)
        except BodyTooLarge:
            await respond_error(send, 413, f"a push envelope is at most {MAX_PUSH_BYTES} bytes")
            return "push", 413
        except ClientGone:
            return "push", 400
        try:
            raw = raw_event(_decoder.decode(body))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
            await respond_error(send, 400, f"not a Pub/Sub push envelope: {exc}")
            return "push", 400
        # The store clients block: keep them off the event loop.
        outcome = await asyncio.to_thread(self.fast.apply, [raw])
        if outcome.failed:
            await respond_error(send, 503, "the user-state store failed; Pub/Sub will redeliver")
            return "push", 503
        await respond(send, 204, b"")
        return "push", 204
