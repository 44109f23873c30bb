"""The monitoring page's server: its routes, its event stream, and the latency
quantiles it reads from the servers' Prometheus histograms."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import generate_latest

from pipeline_code.web.metrics import ServerMetrics
from pipeline_code.web.monitor import MonitorApp, MonitorState, latency_quantiles


def call(
    app, path: str, method: str = "GET", disconnect_after: int = 1, query: bytes = b""
) -> tuple[int, dict, bytes]:
    """One request to the ASGI app; the client leaves after ``disconnect_after`` body parts."""
    sent: list[dict] = []

    async def receive():
        while sum(1 for m in sent if m["type"] == "http.response.body") < disconnect_after:
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": query}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_the_stream_sends_the_snapshot_as_a_server_sent_event():
    state = MonitorState(points=3)
    for i in range(5):
        state.record({"t": float(i), "ingest_per_s": 10.0 * i}, totals={"stored": i})
    status, headers, body = call(MonitorApp(state, poll_s=0.01), "/events")
    assert status == 200 and headers[b"content-type"].startswith(b"text/event-stream")
    event, data = body.decode().split("\n", 1)
    assert event == "event: snapshot" and data.startswith("data: ") and data.endswith("\n\n")
    snapshot = json.loads(data.removeprefix("data: "))
    # The last `points` samples; unknown series are null, not missing.
    assert snapshot["series"]["t"] == [2.0, 3.0, 4.0] and snapshot["series"]["ingest_per_s"] == [
        20.0,
        30.0,
        40.0,
    ]
    assert snapshot["series"]["freshness_ms"] == [None, None, None] and snapshot["totals"] == {"stored": 4}


def test_the_routes_answer_and_bad_requests_are_named():
    state = MonitorState()
    payload = {"offset": 7, "stage": "validate", "reason": "bad", "payload_text": "{}"}
    state.record({}, dead_letter_payloads={7: payload}, dead_newest=[])
    app = MonitorApp(state)
    status, _, body = call(app, "/")
    assert status == 200 and b"/static/uPlot.iife.min.js" in body and b"/static/monitor.js" in body
    status, _, body = call(app, "/static/uPlot.iife.min.js")
    assert status == 200 and body.startswith(b"/*! https://github.com/leeoniya/uPlot")
    assert call(app, "/static/../monitor.py")[0] == 404
    assert json.loads(call(app, "/dead-letters/7")[2]) == payload
    status, _, body = call(app, "/dead-letters/seven")
    assert status == 400 and "(an integer), got 'seven'" in json.loads(body)["message"]
    assert call(app, "/dead-letters/8")[0] == 404
    assert "dead_letter_payloads" not in json.loads(call(app, "/api/snapshot")[2])
    assert call(app, "/events", method="POST")[0] == 405


def test_latency_quantiles_are_over_the_requests_between_two_scrapes():
    metrics = ServerMetrics("dataflow_test")
    for _ in range(98):
        metrics.observe("predict", 200, 0.0004)
    before = generate_latest(metrics.registry).decode()
    for seconds in [0.0004] * 90 + [0.004] * 9 + [0.2]:
        metrics.observe("predict", 200, seconds)
    after = generate_latest(metrics.registry).decode()
    q = latency_quantiles(
        before, after, "dataflow_test_request_duration_seconds", "predict", (0.5, 0.95, 0.99)
    )
    assert q == {0.5: 0.5, 0.95: 5.0, 0.99: 5.0}
    assert latency_quantiles(after, after, "dataflow_test_request_duration_seconds", "predict")[0.5] is None
    assert latency_quantiles(None, after, "dataflow_test_request_duration_seconds", "other")[0.99] is None


def test_the_shops_proxy_names_what_is_wrong_and_never_answers_5xx_for_bad_input():
    from tests.pipeline_code.serving.servers import free_port

    app = MonitorApp(MonitorState(), api_url=f"http://127.0.0.1:{free_port()}", collector_url="127.0.0.1:1")
    status, _, body = call(app, "/api/recommendations/u1", query=b"wait_ms=soon")
    assert status == 400 and json.loads(body)["message"] == "wait_ms must be an integer, got 'soon'"
    status, _, body = call(app, "/api/recommendations/u1", query=b"wait_ms=99999")
    assert status == 400 and "from 0 to 30000, got 99999" in json.loads(body)["message"]
    # Nothing listens on the API's port: the upstream's failure, named.
    status, _, body = call(app, "/api/recommendations/u1")
    assert status == 502 and "did not answer" in json.loads(body)["message"]
    assert json.loads(call(app, "/api/shop")[2]) == {"collector": "127.0.0.1:1", "users": [], "items": []}
    status, _, body = call(MonitorApp(MonitorState()), "/api/recommendations/u1")
    assert status == 503 and "no model has been promoted" in json.loads(body)["message"]
