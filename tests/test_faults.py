"""The fault suite: processes killed with SIGKILL (no ``finally`` runs) at
each phase, then the documented command run again, and the invariants
checked: nothing lost, nothing duplicated in any table, the runs add up to
the tables, nothing left in staging. And the collector killed under
concurrent load: every event it acknowledged is stored exactly once.

Slow (tens of seconds): ``pytest -m slow tests/test_faults.py``; CI runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from pipeline_code.core.parse import RawEvent, now_us, parse_batch
from pipeline_code.local.run import file_digest, process_log
from pipeline_code.streams.eventlog import EventLog
from tests.pipeline_code.serving.servers import free_port

pytestmark = pytest.mark.slow


def dataflow(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline_code.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def expected(data: Path) -> tuple[set[str], int]:
    """From the input alone: the distinct event ids that must be stored, and
    how many lines must be dead-lettered (each exactly once)."""
    lines = [x for x in data.read_bytes().splitlines() if x.strip()]
    now = now_us()  # what the log stamps as the arrival time
    records, dead = parse_batch([RawEvent(i, now, x) for i, x in enumerate(lines)])
    return {r["event_id"] for r in records}, len(dead)


def check_invariants(warehouse: Path, data: Path) -> None:
    ids, dead = expected(data)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.execute("SELECT event_id, count(*) FROM events GROUP BY 1").fetchall()
        assert {i for i, _ in stored} == ids, "events lost or invented"
        assert all(n == 1 for _, n in stored), "an event stored twice"
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == dead
        runs = con.execute(
            "SELECT sum(events_stored), sum(dead_lettered), sum(events_read), sum(duplicates_skipped) "
            "FROM _dataflow_runs"
        ).fetchone()
        assert runs[0] == len(ids) and runs[1] == dead and runs[2] == runs[0] + runs[1] + runs[3]
    staging = warehouse.with_suffix(".staging")
    assert not staging.exists() or list(staging.iterdir()) == [], list(staging.iterdir())


def kill_when(proc: subprocess.Popen, ready, timeout_s: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it finished first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    raise AssertionError("the phase never came")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A synthetic store with duplicates and malformed lines, two ingest batches long."""
    data = tmp_path_factory.mktemp("store") / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.cli", "generate", "--events", "60000", "--out", str(data)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return data


def test_killed_during_ingest_then_rerun(store, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    log = tmp_path / "w.eventlog"
    ledger = log / "ingested" / f"{file_digest(store)}.json"

    def ingesting() -> bool:
        grown = any(p.stat().st_size for p in log.glob("*.log")) if log.exists() else False
        return grown and (not ledger.exists() or not json.loads(ledger.read_text())["done"])

    assert kill_when(dataflow("process", "--input", str(store), "--warehouse", str(warehouse)), ingesting)
    rerun = dataflow("process", "--input", str(store), "--warehouse", str(warehouse))
    assert rerun.wait(300) == 0, rerun.stderr.read().decode()
    check_invariants(warehouse, store)


def test_killed_while_the_pipeline_stages_then_rerun(store, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    staging = tmp_path / "w.staging"

    def staging_files() -> bool:
        return staging.exists() and any(staging.glob("*/*/*.parquet"))

    assert kill_when(dataflow("process", "--input", str(store), "--warehouse", str(warehouse)), staging_files)
    assert any(staging.iterdir())  # SIGKILL ran no cleanup: the folder is the next run's to remove
    rerun = dataflow("process", "--input", str(store), "--warehouse", str(warehouse))
    assert rerun.wait(300) == 0, rerun.stderr.read().decode()
    check_invariants(warehouse, store)


def test_the_collector_killed_under_load_stores_every_acknowledged_event_once(tmp_path):
    log_dir = tmp_path / "log"
    port = free_port()
    env = {**os.environ, "COLLECTOR_SINK": f"eventlog:{log_dir}", "DATAFLOW_WRITE_KEYS": "k"}
    env |= {"PORT": str(port), "HOST": "127.0.0.1"}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline_code.collector"], env=env, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/live", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)

    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("k", ""), timeout=5) as http:
            for b in range(60):
                ids = [f"c{n}-b{b}-{i}-{uuid.uuid4().hex[:6]}" for i in range(10)]
                batch = [
                    {"type": "track", "event": "Product Viewed", "messageId": m, "userId": f"u{n}",
                     "timestamp": "2026-11-24T10:00:00Z", "properties": {"product_id": "sku-1", "price": 1}}
                    for m in ids
                ]  # fmt: skip
                while not stop.is_set():
                    try:
                        if http.post("/v1/batch", json={"batch": batch}).status_code == 200:
                            with lock:
                                acknowledged.extend(ids)
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)  # the collector is down: retry, as trackers do

    collector = start()
    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for c in clients:
        c.start()
    try:
        while len(acknowledged) < 300:
            time.sleep(0.01)
        os.kill(collector.pid, signal.SIGKILL)  # mid-load, with requests in flight
        collector.wait()
        collector = start()
        for c in clients:
            c.join(120)
    finally:
        stop.set()
        collector.terminate()
        collector.wait(10)
    assert len(acknowledged) == 4 * 60 * 10
    logged = [json.loads(r.payload)["event_id"] for r in EventLog(log_dir).read()]
    assert set(acknowledged) <= set(logged)  # acknowledged means durable
    warehouse = tmp_path / "w.duckdb"
    process_log(log_dir, warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = dict(con.execute("SELECT event_id, count(*) FROM events GROUP BY 1").fetchall())
    assert all(stored.get(i) == 1 for i in acknowledged)


def _malformed(rng, route: str) -> bytes:
    """One hostile request: garbage, a lying Content-Length, bad encodings, wrong shapes."""
    body = rng.choice(
        [
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))),
            b'{"batch": [' + b"[" * rng.randint(200, 1100) + b"]}",
            b'{"writeKey": ["k"], "batch": [{"type": "track"}]}',
            b'{"instances": [{"user_id": 7, "k": "ten"}]}',
            b"\x1f\x8b\x08" + bytes(rng.getrandbits(8) for _ in range(40)),
            json.dumps(
                {"instances": [{"user_id": "u", "recent_items": ["x"] * rng.randint(0, 300)}]}
            ).encode(),
        ]
    )
    kind = rng.randrange(6)
    if kind == 0:  # not HTTP at all
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) + b"\r\n\r\n"
    if kind == 1:  # a Content-Length larger than what follows, then the client stops writing
        return (
            b"POST %s HTTP/1.1\r\nhost: s\r\ncontent-length: %d\r\n\r\n" % (route.encode(), len(body) + 50)
            + body
        )
    if kind == 2:  # a strange method and header
        return b"BREW %s HTTP/1.1\r\nhost: s\r\nx-\xff: \x00\r\nconnection: close\r\n\r\n" % route.encode()
    encoding = b"content-encoding: gzip\r\n" if kind == 3 else b""
    kinds = [b"application/json", b"text/plain", b"image/png", b"application/json; charset=\xff"]
    return (
        b"POST %s HTTP/1.1\r\nhost: s\r\nconnection: close\r\n" % route.encode()
        + b"content-type: %s\r\n%scontent-length: %d\r\n\r\n" % (rng.choice(kinds), encoding, len(body))
        + body
    )


def _answer(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)  # the client has said all it will
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


HEALTH_WATCHER = """
import socket, sys, threading, time
port, ping = int(sys.argv[1]), sys.argv[2].encode().decode("unicode_escape").encode()
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not stop.is_set():
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(ping)
        s.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    print(time.monotonic() - t, flush=True)
    time.sleep(0.02)
"""


@contextlib.contextmanager
def _server(server: str, tmp_path: Path, models: Path):
    """The collector or the model server in its own process, as deployed (the
    test's client threads must not share its GIL); yields (port, routes, health)."""
    port = free_port()
    if server == "collector":
        env = {**os.environ, "COLLECTOR_SINK": f"eventlog:{tmp_path / 'log'}", "DATAFLOW_WRITE_KEYS": "k"}
        command, routes, health = ["pipeline_code.collector"], ["/v1/batch", "/v1/t"], "/live"
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "AZUREML_", "MODEL_DIR"))}
        env["MODEL_DIR"] = str(models)
        command, routes, health = ["pipeline_code.serving"], ["/invocations"], "/ping"
    env |= {"PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ping = b"GET %s HTTP/1.1\r\nhost: s\r\n\r\n" % health.encode()
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"{server} exited {proc.returncode}"
            try:
                if _answer(port, ping).startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{server} not ready"
            time.sleep(0.1)
        yield port, routes, ping
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("server", ["collector", "model server"])
def test_malformed_requests_get_no_5xx_no_reset_no_hang_and_fast_health(server, tmp_path, trained):
    """2,000 hostile requests from four clients while a fifth polls health."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from pipeline_code.ml.model import find_model

    with _server(server, tmp_path, find_model(trained[1])) as (port, routes, ping):
        # Health is timed from its own process: the four clients here share a GIL with
        # this test, and would make the measurement their own.
        watcher = subprocess.Popen(
            [sys.executable, "-c", HEALTH_WATCHER, str(port), ping.decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        rng = random.Random(20261130)
        requests = [_malformed(rng, rng.choice(routes)) for _ in range(2000)]
        try:
            with ThreadPoolExecutor(4) as pool:
                # A reset or a hang raises here.
                answers = list(pool.map(lambda r: _answer(port, r), requests))
        finally:
            out, _ = watcher.communicate("stop\n", timeout=60)
    slowest = sorted(float(x) for x in out.split())
    statuses = [int(a.split(b" ", 2)[1]) for a in answers if a.startswith(b"HTTP/1.1 ")]
    assert len(statuses) == len(answers), [a[:60] for a in answers if not a.startswith(b"HTTP/1.1 ")][:5]
    assert max(statuses) < 500, sorted(set(statuses))
    assert len(slowest) >= 5 and slowest[-1] < 0.1, slowest[-5:]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("point", ["in-commit", "after-commit"])
def test_killed_inside_or_right_after_the_commit_then_rerun(store, tmp_path, point, workers):
    """SIGKILL while the commit's transaction holds every table's rows and
    the checkpoint, before ``COMMIT``, or right after it, before the run
    cleans up (a fault point pauses it there): the first leaves nothing, the
    second everything, and the rerun completes the store once. With two
    workers, the commit's events were inserted while its parts worked."""
    warehouse = tmp_path / "w.duckdb"
    marker = warehouse.with_suffix(f".{point}")
    env = {**os.environ, "DATAFLOW_FAILPOINT": point}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline_code.cli",
            "process",
            "--input",
            str(store),
            "--warehouse",
            str(warehouse),
            "--workers",
            workers,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert kill_when(proc, marker.exists, timeout_s=300)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        landed = con.execute("SELECT count(*) FROM _dataflow_checkpoints").fetchone()[0]
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    assert (landed, events > 0) == ((0, False) if point == "in-commit" else (1, True))
    rerun = dataflow("process", "--input", str(store), "--warehouse", str(warehouse))
    assert rerun.wait(300) == 0, rerun.stderr.read().decode()
    check_invariants(warehouse, store)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (the machine's root can mount one)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_is_one_line_and_a_rerun_with_space_loses_nothing(store, tmp_path):
    """The log and the warehouse on a real 4 MB tmpfs: ``process`` stops with
    one line naming the cause, exit 1; once the disk has room the same
    command stores everything once."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        warehouse = disk / "w.duckdb"
        full = dataflow("process", "--input", str(store), "--warehouse", str(warehouse))
        assert full.wait(300) == 1
        err = full.stderr.read().decode().strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err, err
        subprocess.run(["mount", "-o", "remount,size=512m", str(disk)], check=True)
        rerun = dataflow("process", "--input", str(store), "--warehouse", str(warehouse))
        assert rerun.wait(300) == 0, rerun.stderr.read().decode()
        check_invariants(warehouse, store)
