"""The uvicorn server every HTTP app runs on: uvloop and httptools, no
access log, and a drain on SIGTERM (readiness fails first, then requests in
flight get ``DRAIN_SECONDS`` to finish)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn

DRAIN_SECONDS = 30


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
    app: Any, host: str, port: int, on_exit: Callable[[], None] = lambda: None, log_level: str = "warning"
) -> uvicorn.Server:
    """A uvicorn server for an ASGI app, on the fast stack, draining on signals."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        server_header=False,
    )
    return _DrainingServer(config, on_exit)
