"""Segment's own Python client, pointed at the collector over real HTTP: its
events arrive in DuckDB after processing, mapped to the contract, nothing lost."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from contextlib import suppress

import duckdb
import httpx
import pytest
from segment.analytics import Client

from pipeline_code.local.run import process_log
from pipeline_code.streams.eventlog import EventLog
from tests.pipeline_code.serving.servers import free_port

KEY = "wk_segment_test"
AT = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def collector(tmp_path):
    port = free_port()
    log_dir = tmp_path / "log"
    env = {**os.environ, "COLLECTOR_SINK": f"eventlog:{log_dir}", "DATAFLOW_WRITE_KEYS": KEY}
    env |= {"PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_code.collector"], env=env, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            with suppress(httpx.TransportError):
                if httpx.get(base + "/live", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "collector not ready"
            time.sleep(0.1)
        yield base, log_dir
    finally:
        proc.terminate()
        proc.wait(10)


def send_store(client: Client) -> dict[str, int]:
    """A small store's traffic through Segment's calls; returns what was sent."""
    sent = {"commerce": 0, "kept": 0}
    for u in range(10):
        user = f"user-{u}"
        ctx = {"userAgent": "Mozilla/5.0", "page": {"url": f"https://shop/u/{u}"}}
        home = {"url": "https://shop/"}
        client.page(user, name="Home", properties=home, context=ctx, timestamp=AT, message_id=f"{user}-page")
        client.track(user, "Products Searched", {"query": "shoes"}, timestamp=AT, message_id=f"{user}-search")
        for p in range(3):
            product = {"product_id": f"sku-{p}", "name": f"Shoe {p}", "price": 20.0 + p, "category": "shoes"}
            when = AT + dt.timedelta(minutes=p)
            client.track(
                user, "Product Viewed", product, context=ctx, timestamp=when, message_id=f"{user}-view-{p}"
            )
        added = {**product, "quantity": 1}
        when = AT + dt.timedelta(minutes=5)
        client.track(user, "Product Added", added, timestamp=when, message_id=f"{user}-add")
        order = {
            "order_id": f"o-{u}",
            "revenue": 22.0,
            "currency": "EUR",
            "products": [{**product, "quantity": 1}],
        }
        client.track(
            user, "Order Completed", order, timestamp=AT + dt.timedelta(minutes=9), message_id=f"{user}-buy"
        )
        sent["commerce"] += 1 + 1 + 3 + 1 + 1
        client.identify(user, {"email": f"{user}@example.com"}, timestamp=AT, message_id=f"{user}-identify")
        sent["kept"] += 1
    # A retry of a message the collector already has: the pipeline keeps one.
    client.track(
        "user-0", "Product Viewed", {"product_id": "sku-0"}, timestamp=AT, message_id="user-0-view-0"
    )
    sent["retries"] = 1
    client.flush()
    return sent


@pytest.mark.parametrize("gzip", [False, True])
def test_segment_client_events_land_in_the_warehouse_mapped_and_complete(collector, tmp_path, gzip):
    base, log_dir = collector
    failures = []
    client = Client(
        write_key=KEY,
        host=base,
        sync_mode=True,
        gzip=gzip,
        max_retries=0,
        on_error=lambda e, b: failures.append(e),
    )
    sent = send_store(client)
    assert failures == []
    warehouse = tmp_path / "w.duckdb"
    run = process_log(log_dir, warehouse)
    total = sent["commerce"] + sent["kept"] + sent["retries"]
    assert run.events_read == total and run.balanced
    assert (run.events_stored, run.duplicates_skipped, run.dead_lettered) == (
        sent["commerce"],
        1,
        sent["kept"],
    )
    con = duckdb.connect(str(warehouse), read_only=True)
    names = dict(con.execute("SELECT event_name, count(*) FROM events GROUP BY 1").fetchall())
    purchases = con.execute(
        "SELECT transaction_id, value, currency FROM events WHERE event_name = 'purchase' ORDER BY 1 LIMIT 1"
    ).fetchone()
    con.close()
    assert names == {"page_view": 10, "search": 10, "view_item": 30, "add_to_cart": 10, "purchase": 10}
    assert purchases == ("o-0", 22.0, "EUR")


def test_a_wrong_write_key_is_refused_and_nothing_is_stored(collector):
    base, log_dir = collector
    failures = []
    client = Client(
        write_key="not-the-key",
        host=base,
        sync_mode=True,
        max_retries=0,
        on_error=lambda e, b: failures.append(e),
    )
    with suppress(Exception):
        client.track("u", "Product Viewed", {"product_id": "sku-1"}, message_id="x-1")
    answer = httpx.post(base + "/v1/track", json={"event": "Product Viewed"}, auth=("not-the-key", ""))
    assert answer.status_code == 401 and answer.json()["message"] == "unknown write key"
    assert list(EventLog(log_dir).read()) == []


def rejected(base: str, reason: str) -> float:
    """Requests the collector refused for ``reason``, from its own metrics."""
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith(f'dataflow_collector_rejected_requests_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_the_sdks_give_a_4xx_up_at_once_with_their_default_retries(collector, sdk):
    """Both SDKs parse our error body (top-level ``code`` and ``message``) and
    treat a 401 as final; an unparsed body made them retry it with backoff,
    10 times over minutes, while their queue dropped new events."""
    base, log_dir = collector
    if sdk == "segment":
        make = Client
    else:
        from rudderstack.analytics.client import Client as make
    errors: list[Exception] = []
    client = make(write_key="not-the-key", host=base, on_error=lambda e, batch: errors.append(e))
    started = time.monotonic()
    client.track("u", "Product Viewed", {"product_id": "sku-1"}, message_id=f"{sdk}-1")
    client.flush()  # waits for the consumer thread, retries and all
    took = time.monotonic() - started
    client.join()
    assert [getattr(e, "status", None) for e in errors] == [401], errors
    assert errors[0].code == "unauthorized" and errors[0].message == "unknown write key"
    assert rejected(base, "auth") == 1.0 and took < 10
    assert list(EventLog(log_dir).read()) == []
