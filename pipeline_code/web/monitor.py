"""The live monitoring page of ``dataflow up``: a snapshot of the chain, pushed
to browsers with server-sent events, drawn with uPlot.

    GET /                    the page (static/monitor.html)
    GET /static/NAME         its script and style (uPlot, vendored: no CDN at run time)
    GET /events              text/event-stream: the snapshot now, then each time it changes
    GET /api/snapshot        the snapshot as JSON
    GET /dead-letters/OFFSET one recent dead letter with its payload
    GET /live, /metrics

``MonitorState`` is written by the chain's loop (``pipeline_code.local.up``)
after each micro-batch and read by the server's event loop; it keeps the
last ``points`` samples of each series. ``latency_quantiles`` turns two
scrapes of a server's Prometheus histogram into p50/p95/p99 over the time
between them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from pipeline_code.web.http import (
    Receive,
    RoutedApp,
    Scope,
    Send,
    respond,
    respond_error,
    respond_fallback,
    respond_json,
)
from pipeline_code.web.metrics import ServerMetrics

STATIC = Path(__file__).with_name("static")
ASSETS = {
    "uPlot.iife.min.js": b"text/javascript; charset=utf-8",
    "uPlot.min.css": b"text/css; charset=utf-8",
    "monitor.js": b"text/javascript; charset=utf-8",
}
SERIES = (
    "ingest_per_s",
    "processed_per_batch",
    "lag_events",
    "lag_seconds",
    "freshness_ms",
    "api_p50_ms",
    "api_p99_ms",
    "model_p50_ms",
    "model_p99_ms",
)
_encode = msgspec.json.Encoder().encode


class MonitorState:
    """The chain's picture, shared between the loop (writes) and the server (reads)."""

    def __init__(self, points: int = 300) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.series: dict[str, deque] = {name: deque(maxlen=points) for name in ("t", *SERIES)}
        self.facts: dict[str, Any] = {}

    def record(self, sample: dict[str, float | None], **facts: Any) -> None:
        """One sample of every series (None where it is not known) and the latest facts."""
        with self._lock:
            self.series["t"].append(sample.get("t", time.time()))
            for name in SERIES:
                self.series[name].append(sample.get(name))
            self.facts.update(facts)
            self.version += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": self.version,
                "series": {name: list(values) for name, values in self.series.items()},
                **{k: v for k, v in self.facts.items() if k != "dead_letter_payloads"},
            }

    def dead_letter(self, offset: int) -> dict[str, Any] | None:
        with self._lock:
            return self.facts.get("dead_letter_payloads", {}).get(offset)


def _buckets(exposition: str, histogram: str, route: str) -> dict[float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != histogram:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                out[float(sample.labels["le"])] = sample.value
    return out


def latency_quantiles(
    before: str | None, after: str, histogram: str, route: str, quantiles=(0.5, 0.99)
) -> dict[float, float | None]:
    """Quantiles (ms) of the requests between two scrapes of ``histogram``
    (its ``route``), each the upper bound of the bucket it falls in; None
    when no request was answered in between."""
    now = _buckets(after, histogram, route)
    then = _buckets(before, histogram, route) if before else {}
    counts = sorted((le, now[le] - then.get(le, 0.0)) for le in now)
    total = counts[-1][1] if counts else 0.0
    out: dict[float, float | None] = {}
    for q in quantiles:
        if total <= 0:
            out[q] = None
            continue
        bound = next((le for le, n in counts if n >= q * total), float("inf"))
        out[q] = None if bound == float("inf") else round(bound * 1000, 3)
    return out


class MonitorApp(RoutedApp):
    """The page, its assets, the event stream and the snapshot (see the module doc)."""

    def __init__(self, state: MonitorState, poll_s: float = 0.25) -> None:
        self.state = state
        self.poll_s = poll_s
        self.metrics = ServerMetrics("dataflow_monitor")

    async def route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        path = scope["path"]
        if scope["method"] != "GET":
            await respond_error(send, 405, f"{path} takes GET, got {scope['method']}")
            return "other", 405
        if path in ("/", "/index.html"):
            await respond(send, 200, (STATIC / "monitor.html").read_bytes(), b"text/html; charset=utf-8")
            return "page", 200
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            if name not in ASSETS:
                await respond_error(send, 404, f"no asset {name!r}; there are {sorted(ASSETS)}")
                return "static", 404
            await respond(send, 200, (STATIC / name).read_bytes(), ASSETS[name])
            return "static", 200
        if path == "/api/snapshot":
            await respond_json(send, 200, self.state.snapshot())
            return "snapshot", 200
        if path.startswith("/dead-letters/"):
            raw = path.removeprefix("/dead-letters/")
            if not raw.lstrip("-").isdigit():
                await respond_error(
                    send, 400, f"a dead letter is named by its offset (an integer), got {raw!r}"
                )
                return "dead_letter", 400
            found = self.state.dead_letter(int(raw))
            if found is None:
                await respond_error(send, 404, f"no recent dead letter at offset {raw}")
                return "dead_letter", 404
            await respond_json(send, 200, found)
            return "dead_letter", 200
        if path == "/events":
            await self._stream(receive, send)
            return "events", 200
        return await respond_fallback(send, path, self.metrics.exposition, "; try / or /events")

    async def _stream(self, receive: Receive, send: Send) -> None:
        """Server-sent events: the snapshot now, then each new version, until the browser leaves."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        sent = -1
        ticks = 0
        while True:
            snapshot = None
            if self.state.version != sent:
                snapshot = self.state.snapshot()
                sent = snapshot["version"]
            if snapshot is not None:
                body = b"event: snapshot\ndata: " + _encode(snapshot) + b"\n\n"
            elif ticks % 60 == 0:
                body = b": keep-alive\n\n"  # proxies close idle streams
            else:
                body = b""
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            ticks += 1
            try:
                message = await asyncio.wait_for(receive(), self.poll_s)
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return
