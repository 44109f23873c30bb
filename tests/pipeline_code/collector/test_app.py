"""The collector over ASGI: Segment calls, our contract, and every hostile case."""

from __future__ import annotations

import asyncio
import base64
import errno
import gzip
import json
import os
import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_code.collector.app import MAX_EVENT_BYTES, Collector
from pipeline_code.core.parse import parse_batch
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.streams.publish import EventLogPublisher, PublishError, SpillingPublisher
from tests.conftest import event

KEY = "wk_test"
DEEP = json.loads("[" * 600 + "]" * 600)  # deeper than orjson writes, shallower than it reads
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def post(app, path: str, body: bytes, headers: dict | None = None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post(path, content=body, headers={**AUTH, **(headers or {})})

    return asyncio.run(go())


@pytest.fixture
def collector(tmp_path):
    log = EventLog(tmp_path / "log")
    return Collector(EventLogPublisher(log.path), {KEY}), log


def product_viewed(i: int = 1) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"m-{i}",
        "userId": "u-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"product_id": "sku-1", "name": "Shoe", "price": 10.0, "category": "shoes"},
        "context": {"userAgent": "Mozilla/5.0", "page": {"url": "https://shop/p/sku-1"}},
    }


def test_a_segment_batch_lands_in_the_log_as_contract_events(collector):
    app, log = collector
    batch = {
        "batch": [product_viewed(1), {**product_viewed(2), "type": "identify", "traits": {"plan": "pro"}}]
    }
    answer = post(app, "/v1/batch", json.dumps(batch).encode())
    assert answer.status_code == 200 and answer.json() == {"success": True}
    raws = list(log.read())
    records, dead = parse_batch(raws)
    assert [r["event_id"] for r in records] == ["m-1"] and records[0]["event_name"] == "view_item"
    assert records[0]["items"][0]["item_id"] == "sku-1"
    # The identify call is kept, with every field, and dead-lettered by the pipeline with a reason.
    assert len(dead) == 1 and json.loads(dead[0]["payload"])["traits"] == {"plan": "pro"}
    assert dead[0]["failed_stage"] == "validate"


def test_single_calls_gzip_and_our_own_contract_are_accepted(collector):
    app, log = collector
    zipped = gzip.compress(json.dumps(product_viewed(3)).encode())
    assert post(app, "/v1/track", zipped, {"Content-Encoding": "gzip"}).status_code == 200
    page = {"messageId": "p-1", "anonymousId": "a-1", "timestamp": "2026-11-24T10:00:00Z"}
    page["properties"] = {"url": "https://shop/"}
    assert post(app, "/v1/page", json.dumps(page).encode()).status_code == 200
    ours = [event(event_id="e-9"), event(event_id="e-10")]
    assert post(app, "/v1/events", json.dumps(ours).encode()).status_code == 200
    records, dead = parse_batch(list(log.read()))
    assert sorted(r["event_id"] for r in records) == ["e-10", "e-9", "m-3", "p-1"] and not dead


OVERSIZE = {**product_viewed(), "properties": {"x": "y" * MAX_EVENT_BYTES}}


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragment"),
    [
        ("/v1/batch", b"{not json", {}, 400, "body is not JSON"),
        ("/v1/batch", b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        ("/v1/batch", b'{"batch": []}', {}, 400, "non-empty 'batch' array"),
        ("/v1/batch", b'{"batch": [{"type": "teleport"}]}', {}, 400, "batch[0].type must be one of"),
        ("/v1/track", b"[1, 2]", {}, 400, "must be a JSON object, got list"),
        ("/v1/batch", json.dumps({"batch": [OVERSIZE]}).encode(), {}, 400, "event 0 is"),
        ("/v1/batch", b'{"batch": [' + b",".join([json.dumps(product_viewed()).encode()] * 2000) + b"]}",
         {}, 400, "request over 500 KB"),
        ("/v1/batch", gzip.compress(b" " * (600 * 1024)), {"Content-Encoding": "gzip"}, 400, "after gunzip"),
        ("/v1/track", json.dumps(product_viewed()).encode(), {"Authorization": ""}, 401, "missing write key"),
        ("/v1/track", json.dumps(product_viewed()).encode(),
         {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}, 401, "unknown write key"),
        ("/v1/events", b"[]", {}, 400, "non-empty array"),
        # orjson reads 1024 levels of nesting but writes only 254: a 500 before.
        ("/v1/track", json.dumps({**product_viewed(), "properties": {"x": DEEP}}).encode(), {}, 400,
         "cannot be stored"),
        ("/v1/batch", json.dumps({"batch": [{**product_viewed(), "context": {"x": DEEP}}]}).encode(), {}, 400,
         "cannot be stored"),
        ("/v1/events", json.dumps([{**event(), "extra": DEEP}]).encode(), {}, 400, "cannot be stored"),
        # An unhashable writeKey: a 500 before.
        ("/v1/batch", json.dumps({"writeKey": ["K"], "batch": [product_viewed()]}).encode(),
         {"Authorization": ""}, 401, "writeKey must be a string, got list"),
        ("/v1/batch", json.dumps({"writeKey": {"k": 1}, "batch": [product_viewed()]}).encode(),
         {"Authorization": ""}, 401, "writeKey must be a string, got dict"),
    ],
)  # fmt: skip
def test_hostile_requests_get_a_4xx_that_says_why_and_store_nothing(
    collector, path, body, headers, status, fragment
):
    app, log = collector
    answer = post(app, path, body, headers)
    assert answer.status_code == status and fragment in answer.json()["message"]
    assert list(log.read()) == []


def test_the_body_write_key_is_accepted_as_segment_clients_send_it(collector):
    app, _ = collector
    body = json.dumps({"batch": [product_viewed()], "writeKey": KEY}).encode()
    assert post(app, "/v1/batch", body, {"Authorization": ""}).status_code == 200


def test_metrics_count_accepted_events_and_rejections(collector):
    app, _ = collector
    post(app, "/v1/batch", json.dumps({"batch": [product_viewed(1), product_viewed(2)]}).encode())
    post(app, "/v1/batch", b"{")

    async def get():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.get("/metrics")

    text = asyncio.run(get()).text
    assert 'dataflow_collector_events_total{kind="contract"} 2.0' in text
    assert 'dataflow_collector_rejected_requests_total{reason="bad_request"} 1.0' in text


class Down:
    """A broker that refuses every publish until it is brought back."""

    def __init__(self, inner) -> None:
        self.inner, self.up = inner, False

    def publish(self, payloads):
        if not self.up:
            raise PublishError("broker unreachable")
        self.inner.publish(payloads)


def test_a_broker_outage_spills_locally_and_loses_nothing_acknowledged(tmp_path):
    log = EventLog(tmp_path / "log")
    broker = Down(EventLogPublisher(log.path))
    spilling = SpillingPublisher(broker, tmp_path / "spill", attempts=2, backoff_s=0, sleep=lambda s: None)
    app = Collector(spilling, {KEY})
    for i in range(3):
        assert post(app, "/v1/track", json.dumps(product_viewed(i)).encode()).status_code == 200
    assert list(log.read()) == [] and spilling.spilled_bytes() > 0
    broker.up = True
    assert post(app, "/v1/track", json.dumps(product_viewed(9)).encode()).status_code == 200
    ids = [json.loads(r.payload)["event_id"] for r in log.read()]
    assert ids == ["m-0", "m-1", "m-2", "m-9"] and spilling.spilled_bytes() == 0


def test_a_full_spill_is_a_503_not_a_silent_drop(tmp_path):
    broker = Down(EventLogPublisher(tmp_path / "log"))
    spilling = SpillingPublisher(
        broker, tmp_path / "spill", max_spill_bytes=10, attempts=1, sleep=lambda s: None
    )
    answer = post(Collector(spilling, {KEY}), "/v1/track", json.dumps(product_viewed()).encode())
    assert answer.status_code == 503 and "retry later" in answer.json()["message"]


class Counting:
    """Counts publishes; fails them while ``fail`` is set."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail = False

    def publish(self, payloads):
        import time

        time.sleep(0.02)  # a broker round trip, so requests pile up behind it
        if self.fail:
            raise PublishError("broker down")
        self.calls.append(len(payloads))


def concurrent_posts(app, n: int) -> list[int]:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/track", content=json.dumps(product_viewed(i)).encode(), headers=AUTH)
                    for i in range(n)
                )
            )
        return [a.status_code for a in answers]

    return asyncio.run(go())


def test_concurrent_requests_share_durable_appends():
    broker = Counting()
    assert concurrent_posts(Collector(broker, {KEY}), 40) == [200] * 40
    assert sum(broker.calls) == 40 and len(broker.calls) < 40  # grouped, none lost


def test_a_failed_group_answers_every_request_in_it_with_a_503():
    broker = Counting()
    broker.fail = True
    assert concurrent_posts(Collector(broker, {KEY}), 10) == [503] * 10 and broker.calls == []


def test_the_functions_image_serves_the_collector(tmp_path, monkeypatch):
    """``DATAFLOW_APP=collector``: the Azure Functions worker's ASGI path into the event log."""
    import runpy

    import azure.functions as func

    monkeypatch.setenv("DATAFLOW_APP", "collector")
    monkeypatch.setenv("COLLECTOR_SINK", f"eventlog:{tmp_path / 'log'}")
    monkeypatch.setenv("DATAFLOW_WRITE_KEYS", KEY)
    # The image's entry file, as the Functions host loads it, picks the collector.
    entry = runpy.run_path("pipeline_code/serving/azure/function_app.py")
    (function,) = entry["app"].get_functions()
    body = json.dumps(product_viewed(5)).encode()
    request = func.HttpRequest("POST", "https://c.example/v1/track", headers=AUTH, params={}, body=body)
    context = type("Context", (), {"invocation_id": "1", "function_name": "c", "function_directory": "/"})()
    answer = function.get_user_function()(request, context)
    answer = asyncio.run(answer) if asyncio.iscoroutine(answer) else answer
    assert answer.status_code == 200
    assert [json.loads(r.payload)["event_id"] for r in EventLog(tmp_path / "log").read()] == ["m-5"]


def test_a_lambda_function_url_event_reaches_the_collector(tmp_path):
    """A function-URL event (base64 body, as Lambda sends POSTs) through the same bridge the API uses."""
    from pipeline_code.web.aws_lambda import invoke

    log = EventLog(tmp_path / "log")
    app = Collector(EventLogPublisher(log.path), {KEY})
    payload = gzip.compress(json.dumps({"batch": [product_viewed(7)]}).encode())
    event = {
        "rawPath": "/v1/batch",
        "rawQueryString": "",
        "headers": {**{k.lower(): v for k, v in AUTH.items()}, "content-encoding": "gzip"},
        "requestContext": {"http": {"method": "POST", "path": "/v1/batch", "sourceIp": "203.0.113.1"}},
        "body": base64.b64encode(payload).decode(),
        "isBase64Encoded": True,
    }
    answer = asyncio.run(invoke(app, event))
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"success": True}
    assert [json.loads(r.payload)["event_id"] for r in log.read()] == ["m-7"]


def test_a_full_disk_is_a_503_to_retry_and_nothing_is_acknowledged(tmp_path, monkeypatch):
    """A failing write at the file layer (ENOSPC on fsync): 503, as the README promises, not a 500."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    app = Collector(EventLogPublisher(tmp_path / "log"), {KEY})
    answer = post(app, "/v1/track", json.dumps(product_viewed()).encode())
    assert answer.status_code == 503, answer.text
    assert "retry later" in answer.json()["message"] and "No space left on device" in answer.json()["message"]


def call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.request(method, path, content=body, headers=headers or {})

    return asyncio.run(go())


SHOP = "https://shop.example"


def test_a_browsers_preflight_is_answered_for_the_post_it_announces(collector):
    app, _ = collector
    answer = call(
        app,
        "OPTIONS",
        "/v1/t",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == "authorization,content-type"


@pytest.mark.parametrize(
    ("route", "kind"), [("t", "track"), ("p", "page"), ("i", "identify"), ("b", "batch")]
)
def test_analytics_js_short_routes_take_text_plain_json_with_the_body_write_key(collector, route, kind):
    """analytics.js posts ``text/plain`` (no preflight for the body type) with the write key in the body."""
    app, log = collector
    message = {**product_viewed(7), "type": kind, "writeKey": KEY}
    body = {"batch": [product_viewed(7)], "writeKey": KEY} if kind == "batch" else message
    answer = call(
        app, "POST", f"/v1/{route}", json.dumps(body).encode(), {"Content-Type": "text/plain", "Origin": SHOP}
    )
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == SHOP
    stored = [json.loads(r.payload) for r in log.read()]
    # Contract calls become events; the others are kept as sent.
    assert [d.get("event_id", d.get("messageId")) for d in stored] == ["m-7"]


def test_errors_carry_cors_headers_so_the_page_can_read_them(collector):
    app, log = collector
    answer = call(app, "POST", "/v1/t", b"{not json", {"Content-Type": "text/plain", "Origin": SHOP})
    assert answer.status_code == 400
    assert answer.headers["access-control-allow-origin"] == SHOP and answer.headers["vary"] == "Origin"
    assert list(log.read()) == []


def test_only_the_configured_origins_may_send_when_some_are(tmp_path):
    log = EventLog(tmp_path / "log")
    app = Collector(EventLogPublisher(log.path), {KEY}, allowed_origins={SHOP})
    other = call(app, "OPTIONS", "/v1/t", headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    body = json.dumps({**product_viewed(8), "writeKey": KEY}).encode()
    refused = call(app, "POST", "/v1/t", body, {"Origin": "https://evil.example"})
    assert refused.status_code == 403 and list(log.read()) == []
    assert call(app, "POST", "/v1/t", body, {"Origin": SHOP}).status_code == 200
    # Servers and SDKs send no Origin: the write key is their check, as before.
    assert call(app, "POST", "/v1/t", body).status_code == 200


def test_allowed_origins_come_from_the_environment_and_bad_ones_are_named():
    from pipeline_code.collector.settings import allowed_origins_from_env

    assert allowed_origins_from_env({}) is None
    origins = allowed_origins_from_env({"COLLECTOR_ALLOWED_ORIGINS": f"{SHOP}/, http://localhost:3000"})
    assert origins == {SHOP, "http://localhost:3000"}
    with pytest.raises(ValueError, match=re.escape("COLLECTOR_ALLOWED_ORIGINS entry 'shop.example' must be")):
        allowed_origins_from_env({"COLLECTOR_ALLOWED_ORIGINS": "shop.example"})


# Segment-shaped calls with every field replaced by anything JSON can hold.
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_call_keys = st.sampled_from(
    ["type", "event", "messageId", "userId", "anonymousId", "timestamp", "properties", "context",
     "traits", "writeKey", "batch", "integrations", "name", "previousId", "groupId", "sentAt"]
)  # fmt: skip
_calls = st.dictionaries(_call_keys, _any_json | st.sampled_from(["track", "page", "identify"]), max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(
        ["/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/page", "/v1/identify", "/v1/events"]
    ),
    body=st.binary(max_size=120)
    | _any_json.map(lambda v: json.dumps(v).encode())
    | _calls.map(lambda c: json.dumps(c).encode())
    | st.lists(_calls, max_size=3).map(lambda b: json.dumps({"batch": b, "writeKey": KEY}).encode()),
    gzip_it=st.booleans(),
)
def test_fuzzed_calls_never_get_a_5xx(collector, route, body, gzip_it):
    """A fuzz of the HTTP edge: every answer is a 200 or a 4xx saying why
    (Segment's clients retry a 5xx forever)."""
    app, _ = collector
    headers = {"Content-Encoding": "gzip"} if gzip_it else {}
    answer = post(app, route, gzip.compress(body) if gzip_it else body, headers)
    assert answer.status_code in (200, 400, 401), answer.text
    if answer.status_code != 200:
        assert answer.json()["message"]
