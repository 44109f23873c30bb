"""The live monitoring page of ``dataflow up``: a snapshot of the chain, pushed
to browsers with server-sent events, drawn with uPlot.

    GET /                    the page (static/monitor.html)
    GET /static/NAME         its script and style (uPlot, vendored: no CDN at run time)
    GET /events              text/event-stream: the snapshot now, then each time it changes
    GET /api/snapshot        the snapshot as JSON
    GET /dead-letters/OFFSET one recent dead letter with its payload
    GET /shop                the demo storefront (static/shop.html): pick a user, see their
                             list, click products; analytics.js (vendored) tracks the clicks
                             to the collector, as the README tells shops to set it up
    GET /api/shop            what the storefront needs: the collector's address, users, products
    GET /api/recommendations/USER   the API's answer for USER (the page's origin is this server);
                             with ?changed_from=ID,ID,...&wait_ms=N it waits (polling the API
                             every 50 ms, up to N ms) until the list differs, and adds ``waited_ms``
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
import urllib.error
import urllib.parse
import urllib.request
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
JS = b"text/javascript; charset=utf-8"
ASSETS = {
    "uPlot.iife.min.js": JS,
    "uPlot.min.css": b"text/css; charset=utf-8",
    "monitor.js": JS,
    "shop.js": JS,
    # Segment's analytics.js (@segment/analytics-next, MIT), with the chunks it loads beside it.
    **{f"analytics-next/{p.name}": JS for p in sorted((STATIC / "analytics-next").glob("*.js"))},
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

    def __init__(
        self,
        state: MonitorState,
        poll_s: float = 0.25,
        api_url: str | None = None,
        collector_url: str | None = None,
    ) -> None:
        self.state = state
        self.poll_s = poll_s
        self.api_url, self.collector_url = api_url, collector_url
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
        if path == "/shop":
            await respond(send, 200, (STATIC / "shop.html").read_bytes(), b"text/html; charset=utf-8")
            return "shop", 200
        if path == "/api/shop":
            snapshot = self.state.snapshot()
            shop = {"collector": self.collector_url, "users": snapshot.get("shop_users", [])}
            await respond_json(send, 200, {**shop, "items": snapshot.get("shop_items", [])})
            return "shop", 200
        if path.startswith("/api/recommendations/"):
            user = urllib.parse.unquote(path.removeprefix("/api/recommendations/"))
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode())
            return "recommendations", await self._recommendations(user, query, send)
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

    async def _recommendations(self, user: str, query: dict[str, list[str]], send: Send) -> int:
        """The API's answer for ``user``, passed through; or, asked to wait,
        the first answer whose list differs from ``changed_from``."""
        if self.api_url is None:
            await respond_error(send, 503, "the API is not running yet: no model has been promoted")
            return 503
        try:
            wait_ms = int(query.get("wait_ms", ["0"])[0])
        except ValueError:
            await respond_error(send, 400, f"wait_ms must be an integer, got {query['wait_ms'][0]!r}")
            return 400
        if not 0 <= wait_ms <= 30_000:
            await respond_error(send, 400, f"wait_ms must be from 0 to 30000, got {wait_ms}")
            return 400
        before = query.get("changed_from", [""])[0].split(",") if "changed_from" in query else None
        url = f"{self.api_url}/recommendations/{urllib.parse.quote(user, safe=':')}?k=10"

        def fetch() -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        started = time.perf_counter()
        while True:
            try:
                status, body = await asyncio.to_thread(fetch)
            except OSError as exc:
                await respond_error(send, 502, f"the API at {self.api_url} did not answer: {exc}")
                return 502
            waited = (time.perf_counter() - started) * 1000
            if status != 200 or before is None:
                break
            answer = msgspec.json.decode(body)
            if [i["item_id"] for i in answer["items"]] != before or waited >= wait_ms:
                await respond_json(send, 200, {**answer, "waited_ms": round(waited, 1)})
                return 200
            await asyncio.sleep(0.05)
        await respond(send, status, body)
        return status

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
