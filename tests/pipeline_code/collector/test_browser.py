"""analytics.js in a real headless browser, on the shop's origin, sending to
the collector on another origin: the calls land in the event log.

Segment's browser library (``@segment/analytics-next`` from npm, locked in
``browser/package-lock.json``) runs in Debian's Chromium. The page and the
collector have different origins, so the browser sends CORS preflights and
``text/plain`` bodies to the short routes, one call at a time and batched.
Needs ``chromium`` and ``npm ci`` in ``browser/`` (``.ci/run`` does both, and
sets ``DATAFLOW_BROWSER_TESTS=1`` so that a missing one fails instead of skipping).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline_code.collector.app import Collector
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.streams.publish import EventLogPublisher
from pipeline_code.web.server import make_server

BROWSER = Path(__file__).with_name("browser")
BUNDLE = BROWSER / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
KEY = "wk_browser"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    missing = [what for what, ok in (("chromium", path), ("npm ci in browser/", BUNDLE.is_dir())) if not ok]
    if missing:
        if os.environ.get("DATAFLOW_BROWSER_TESTS") == "1":
            pytest.fail(f"browser test prerequisites missing: {missing}")
        pytest.skip(f"needs {missing} (.ci/run installs them)")
    return path


@pytest.fixture
def site(tmp_path) -> Path:
    """The shop page and the library's bundle (its lazy chunks beside it)."""
    root = tmp_path / "site"
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("*.map", "*.gz"))
    (root / "index.js").rename(root / "analytics-next.js")
    shutil.copy(BROWSER / "shop.html", root / "shop.html")
    return root


class Paths:
    """The collector, recording which routes it was called on."""

    def __init__(self, app) -> None:
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def visit(chromium: str, url: str, profile: Path) -> str:
    """Load ``url`` headless until the page settles; returns its DOM."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@pytest.mark.parametrize("batching", [False, True])
def test_analytics_js_on_the_shops_origin_reaches_the_event_log(chromium, site, tmp_path, batching):
    log = EventLog(tmp_path / "log")
    app = Paths(Collector(EventLogPublisher(log.path), {KEY}))
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    collector_port = server.servers[0].sockets[0].getsockname()[1]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    shop = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    try:
        # Another host name and port: another origin, as a shop and its collector are.
        url = (
            f"http://localhost:{shop.server_address[1]}/shop.html"
            f"?collector=127.0.0.1:{collector_port}&batching={int(batching)}"
        )
        dom = visit(chromium, url, tmp_path / "profile")
    finally:
        shop.shutdown()
        server.should_exit = True
    assert "<title>sent</title>" in dom, dom[:500]
    stored = [json.loads(r.payload) for r in log.read()]
    events = {d["event_name"]: d for d in stored if "event_name" in d}
    assert set(events) == {"view_item", "page_view"}
    assert (
        events["view_item"]["user_id"] == "user-7" and events["view_item"]["items"][0]["item_id"] == "sku-1"
    )
    assert [d["type"] for d in stored if "event_name" not in d] == ["identify"]  # kept as sent
    posts = {path for method, path in app.seen if method == "POST"}
    preflighted = {path for method, path in app.seen if method == "OPTIONS"}
    assert preflighted == posts  # the browser asked first, for each route it posted to
    assert posts == ({"/v1/b"} if batching else {"/v1/i", "/v1/t", "/v1/p"})


def test_a_wrong_write_key_from_the_browser_stores_nothing(chromium, site, tmp_path):
    log = EventLog(tmp_path / "log")
    server = make_server(Collector(EventLogPublisher(log.path), {"another-key"}), "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    shop = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    try:
        visit(
            chromium,
            f"http://localhost:{shop.server_address[1]}/shop.html?collector=127.0.0.1:{port}",
            tmp_path / "p",
        )
    finally:
        shop.shutdown()
        server.should_exit = True
    assert list(log.read()) == []
