"""The fault suite: processes killed with SIGKILL (no ``finally`` runs) at
each phase, then the documented command run again, and the invariants
checked: nothing lost, nothing duplicated in any table, the runs add up to
the tables, nothing left in staging. And the collector killed under
concurrent load: every event it acknowledged is stored exactly once.

Slow (tens of seconds): ``pytest -m slow tests/test_faults.py``; CI runs it.
"""

from __future__ import annotations

import json
import os
import signal
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
