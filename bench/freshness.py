"""Freshness: from a click sent to the collector to a changed recommendation.

    python bench/freshness.py [--events 200] [--model-dir DIR]

The local chain as processes, as a user runs them: the collector
(``python -m pipeline_code.collector`` in front of the event log), the fast
path (``dataflow fresh``) and the API (``dataflow api``, the model
in-process), over a model trained first on 20k synthetic events (or
``--model-dir``). Each trial takes a known user, reads their
recommendations, sends a Segment ``Product Viewed`` of the top item to the
collector and polls the API (every 2 ms) until that item is gone from the
list: the user's recommendations reflect the click. One trial per user, at
least 200, one at a time.

Printed next to it, from the same run: the bare collector round trip (the
POST alone) and the API's GET. Target: freshness p99 under 1 s locally.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataflow(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipeline_code.cli", *args], cwd=ROOT, check=True, capture_output=True
    )


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "DATAFLOW_LOG_LEVEL": "ERROR", **(env or {})},
        stdout=subprocess.DEVNULL,
    )


def wait_live(port: int, path: str = "/live") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def view(user: str, item: str, n: int) -> dict:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"fresh-bench-{n}-{time.time_ns()}",
        "userId": user,
        "timestamp": now,
        "properties": {"product_id": item},
        "context": {"userAgent": "Mozilla/5.0"},
    }


def percentiles(values: list[float]) -> str:
    a = np.asarray(values) * 1000
    return f"p50 {np.percentile(a, 50):7.1f} ms   p99 {np.percentile(a, 99):7.1f} ms   max {a.max():7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="trials, one user each (default 200)")
    parser.add_argument("--model-dir", type=Path, default=None, help="a trained model (default: train one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="freshness-"))
    warehouse, models = work / "warehouse.duckdb", args.model_dir or work / "models"
    if args.model_dir is None:
        print("training a model on 20,000 synthetic events ...", flush=True)
        dataflow("generate", "-n", "20000", "--out", str(work / "events.jsonl"))
        dataflow("process", "--input", str(work / "events.jsonl"), "--warehouse", str(warehouse))
        dataflow("train", "--warehouse", str(warehouse), "--model-dir", str(models))
    log_dir = warehouse.with_name(warehouse.stem + ".eventlog")
    collector_port, api_port = free_port(), free_port()
    procs = [
        start(
            [sys.executable, "-m", "pipeline_code.collector"],
            {"COLLECTOR_SINK": f"eventlog:{log_dir}", "COLLECTOR_OPEN": "1", "PORT": str(collector_port)},
        ),
        start(
            [
                sys.executable,
                "-m",
                "pipeline_code.cli",
                "fresh",
                "--warehouse",
                str(warehouse),
                "--poll-seconds",
                "0.005",
            ]
        ),
    ]
    try:
        wait_live(collector_port)
        # The API opens the user state once it exists: let the fast path create it first.
        state = warehouse.with_name(warehouse.stem + ".userstate.sqlite")
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "pipeline_code.cli",
                    "api",
                    "--model-dir",
                    str(models),
                    "--warehouse",
                    str(warehouse),
                    "--port",
                    str(api_port),
                ]
            )
        )
        wait_live(api_port)
        fresh, posts, gets, missed = [], [], [], 0
        with httpx.Client(timeout=5) as client:
            api = f"http://127.0.0.1:{api_port}/recommendations/"
            track = f"http://127.0.0.1:{collector_port}/v1/track"
            for n in range(args.events):
                user = f"user-{n + 1:06d}"
                started = time.perf_counter()
                before = client.get(f"{api}{user}?k=10").json()
                gets.append(time.perf_counter() - started)
                item = before["items"][0]["item_id"]
                sent = time.perf_counter()
                answer = client.post(track, json=view(user, item, n))
                posts.append(time.perf_counter() - sent)
                answer.raise_for_status()
                while True:
                    now = client.get(f"{api}{user}?k=10").json()
                    if item not in [i["item_id"] for i in now["items"]]:
                        fresh.append(time.perf_counter() - sent)
                        break
                    if time.perf_counter() - sent > TIMEOUT_S:
                        missed += 1
                        break
                    time.sleep(0.002)
    finally:
        for proc in reversed(procs):
            stop(proc)
    cores = os.cpu_count()
    print(
        f"\nfreshness over {len(fresh)} events ({missed} not reflected within {TIMEOUT_S:.0f} s),"
        f" {cores} cores"
    )
    print(f"  click -> changed recommendation   {percentiles(fresh)}")
    print(f"  collector round trip (reference)  {percentiles(posts)}")
    print(f"  API GET                           {percentiles(gets)}")
    ratio = np.percentile(fresh, 50) / np.percentile(posts, 50)
    print(f"  freshness p50 = {ratio:.1f}x the collector round trip")
    p99 = np.percentile(fresh, 99)
    print(f"  target p99 < 1 s: {'met' if p99 < 1 and not missed else 'NOT met'} ({p99 * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
