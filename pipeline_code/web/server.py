"""The uvicorn server every HTTP app runs on: uvloop and httptools, no
access log, and a drain on SIGTERM (readiness fails first, then requests in
flight get ``DRAIN_SECONDS`` to finish).

Connections are guarded (``GuardedProtocol``): uvicorn times out a
keep-alive connection between requests, but not one that never sends a
request, nor one whose headers or body trickle in, and httptools takes
headers of any size; so each would hold a socket (and a file descriptor)
for as long as the client likes. Here a request's headers must arrive
within ``HEADER_TIMEOUT_S`` of the connection (or of its first byte) and
within ``MAX_HEADER_BYTES``, and its body within ``BODY_TIMEOUT_S`` of the
headers; else the client gets a 408 or 431 and the connection is closed.
The app's own time is not counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipeline_code.web.http import error_body

DRAIN_SECONDS = 30
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_HEADER_BYTES = 64 * 1024


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header-size bound."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self._guard: asyncio.TimerHandle | None = None
        self._in_headers = True
        self._in_body = False
        self._header_bytes = 0
        self._arm(self.header_timeout_s, "request headers not received in time")

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._refuse, 408, reason)

    def _disarm(self) -> None:
        if getattr(self, "_guard", None) is not None:
            self._guard.cancel()  # type: ignore[union-attr]
            self._guard = None

    def _refuse(self, status: int, reason: str) -> None:
        """Answer what the client was too slow or too big for, then close."""
        self._guard = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started:
            self.transport.close()  # the app is answering already: only cut the connection
            return
        phrase = HTTPStatus(status).phrase.encode()
        body = json.dumps(error_body(status, reason)).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """httptools could not parse the request: the same JSON error as every other answer."""
        self._refuse(400, msg)

    def data_received(self, data: bytes) -> None:
        in_headers = self._in_headers
        super().data_received(data)
        if in_headers and self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, f"request headers over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._arm(self.header_timeout_s, "request headers not received in time")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._in_body = True
        self._arm(self.body_timeout_s, "request body not received in time")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def eof_received(self) -> bool | None:
        """The client stopped sending mid-request (its headers, or a body
        shorter than its Content-Length): it still gets an answer."""
        if getattr(self, "_in_body", False) or (self._in_headers and self._header_bytes):
            self._refuse(400, "the request ended before its headers or its Content-Length body")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded(header_timeout_s: float, body_timeout_s: float, max_header_bytes: int) -> type[GuardedProtocol]:
    """``GuardedProtocol`` with other bounds (the tests use short ones)."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_header_bytes": max_header_bytes,
        },
    )


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app to fail readiness when a signal asks
    it to stop, before uvicorn closes the socket and waits for requests."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down, so the process
        # dies by it (exit 143). A completed drain is a clean stop: exit 0.
        getattr(self, "_captured_signals", []).clear()


def make_server(
    app: Any,
    host: str,
    port: int,
    on_exit: Callable[[], None] = lambda: None,
    log_level: str = "warning",
    protocol: type[GuardedProtocol] = GuardedProtocol,
) -> uvicorn.Server:
    """A uvicorn server for an ASGI app, on the fast stack, guarded, draining on signals."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        server_header=False,
    )
    return _DrainingServer(config, on_exit)
