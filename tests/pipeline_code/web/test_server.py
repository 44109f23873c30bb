"""The shared HTTP server over real sockets: every client gets its answer.

An oversize body gets its 4xx, not a connection reset; a client that sends
nothing, trickles its headers or its body, or sends headers without end is
answered (408, 431) and let go, instead of holding a socket forever.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipeline_code.collector.app import Collector
from pipeline_code.serving.model_server import MAX_BODY_BYTES, ModelServer
from pipeline_code.streams.publish import EventLogPublisher
from pipeline_code.web.server import guarded, make_server

HEADER_S, BODY_S, MAX_HEADER = 0.5, 0.5, 8 * 1024
# Real sockets and deliberate waits: seconds in all.
pytestmark = pytest.mark.slow


@contextmanager
def serving(app) -> Iterator[int]:
    """``app`` on the shared server (short bounds), in a thread; yields its port."""
    server = make_server(app, "127.0.0.1", 0, protocol=guarded(HEADER_S, BODY_S, MAX_HEADER))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def exchange(port: int, *parts: bytes, pause_s: float = 0.0, timeout_s: float = 5.0) -> bytes:
    """Send ``parts`` (pausing between them), then read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        for i, part in enumerate(parts):
            if i and pause_s:
                time.sleep(pause_s)
            s.sendall(part)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def collector(tmp_path):
    with serving(Collector(EventLogPublisher(tmp_path / "log"), {"k"})) as port:
        yield port


def test_an_oversize_batch_always_gets_its_400_never_a_reset(collector):
    body = b'{"batch": [' + b",".join([b'{"type": "track", "event": "x"}'] * 140_000) + b"]}"
    assert len(body) > 4_000_000
    # "connection: close" only so that reading to the end reads one answer.
    request = b"POST /v1/batch HTTP/1.1\r\nhost: c\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(
        body
    )
    for _ in range(30):
        answer = exchange(collector, request + body)  # a reset raises ConnectionResetError here
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"request over 500 KB" in answer


def test_an_oversize_prediction_always_gets_its_413_never_a_reset():
    never = threading.Event()
    app = ModelServer(lambda: never.wait())  # the size is refused before the model is needed
    body = b'{"instances": [' + b",".join([b'{"user_id": "u"}'] * 220_000) + b"]}"
    assert len(body) > MAX_BODY_BYTES * 2
    request = (
        b"POST /invocations HTTP/1.1\r\nhost: m\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
        % len(body)
    )
    with serving(app) as port:
        for _ in range(30):
            answer = exchange(port, request + body)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    never.set()


def test_a_connection_that_sends_nothing_is_answered_and_closed(collector):
    started = time.monotonic()
    answer = exchange(collector)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"headers not received in time" in answer
    assert time.monotonic() - started < HEADER_S + 2


def test_trickling_headers_are_cut_off(collector):
    answer = exchange(
        collector, b"POST /v1/batch HTTP/1.1\r\nhost: c\r\n", b"x-slow: 1\r\n", pause_s=HEADER_S + 0.3
    )
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_trickling_body_is_cut_off_and_nothing_is_stored(collector, tmp_path):
    head = b"POST /v1/batch HTTP/1.1\r\nhost: c\r\nauthorization: Basic aw==\r\ncontent-length: 100\r\n\r\n"
    answer = exchange(collector, head + b'{"batch": ', b"[]}", pause_s=BODY_S + 0.5)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"body not received in time" in answer
    assert not list((tmp_path / "log").glob("*.log")) or all(
        p.stat().st_size == 0 for p in (tmp_path / "log").glob("*.log")
    )


def test_headers_without_end_get_a_431(collector):
    answer = exchange(collector, b"GET /live HTTP/1.1\r\nhost: c\r\nx-big: " + b"a" * (MAX_HEADER * 4))
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_slow_app_is_not_cut_off_and_keep_alive_still_works(tmp_path):
    class Slow:
        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return
            import asyncio

            await asyncio.sleep(HEADER_S + BODY_S)  # the app's own time is not the client's
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    request = b"GET / HTTP/1.1\r\nhost: s\r\n\r\n"
    with serving(Slow()) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(2):
            s.sendall(request)
            answer = b""
            while not answer.endswith(b"ok"):
                answer += s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200 ")


# The model server of the test below, in a process of its own: the bound is
# the server's, so a pause of the pytest process (a full garbage collection
# after hundreds of tests) must not count against it. It prints its port.
_MODEL_SERVER = """
import sys, threading, time
from pipeline_code.ml.model import Recommender, find_model
from pipeline_code.serving.model_server import ModelServer
from pipeline_code.web.server import guarded, make_server
model = Recommender.load(find_model(sys.argv[1]))
server = make_server(ModelServer(lambda: model), "127.0.0.1", 0, protocol=guarded(0.5, 0.5, 8192))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.01)
print(server.servers[0].sockets[0].getsockname()[1], flush=True)
sys.stdin.read()  # serve until the test closes our stdin
"""


def test_health_answers_within_100_ms_while_a_big_request_scores(trained):
    """1,000 instances with 100 recent items each take seconds to score; the
    model server's /ping must still answer fast (SageMaker waits 2 s)."""
    items = [f"sku-{i:05d}" for i in range(100)]
    instances = [{"user_id": f"user-{i:06d}", "recent_items": items} for i in range(1000)]
    body = json.dumps({"instances": instances}).encode()
    server = subprocess.Popen(
        [sys.executable, "-c", _MODEL_SERVER, str(trained[1])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        port = int(server.stdout.readline())
        big: list[bytes] = []
        head = b"POST /invocations HTTP/1.1\r\nhost: m\r\nconnection: close\r\n"
        request = head + b"content-length: %d\r\n\r\n" % len(body) + body
        worker = threading.Thread(target=lambda: big.append(exchange(port, request, timeout_s=120)))
        started = time.monotonic()
        worker.start()
        pings = []
        while worker.is_alive():
            t = time.monotonic()
            answer = exchange(port, b"GET /ping HTTP/1.1\r\nhost: m\r\nconnection: close\r\n\r\n")
            pings.append((time.monotonic() - t, answer[:12]))
            time.sleep(0.02)
        took = time.monotonic() - started
    finally:
        server.stdin.close()
        server.wait(10)
    assert big[0].startswith(b"HTTP/1.1 200 "), big[0][:200]
    assert all(a == b"HTTP/1.1 200" for _, a in pings)
    assert max(s for s, _ in pings) < 0.1, sorted(s for s, _ in pings)[-5:]
    assert took > 0.5 and len(pings) >= 5, (took, len(pings))  # the big request really took a while


def test_bytes_that_are_not_http_get_the_same_json_400(collector):
    answer = exchange(collector, b"\x16\x03\x01 not a request line\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
    assert json.loads(body)["code"] == "bad_request"
