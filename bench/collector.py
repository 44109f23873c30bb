"""Collector throughput over real HTTP, against a hello-world on the same stack.

    python bench/collector.py [--seconds 5]

The collector runs pinned to one core, writing to a local event log (each
request is appended and fsynced before it is answered: the durability
guarantee is part of what is measured). The load comes from the other core:
16 keep-alive connections in a closed loop, sending Segment calls one per
request (``/v1/track``) and 100 per request (``/v1/batch``). The reference is
the hello-world of ``bench/serving.py`` (same uvicorn + httptools + uvloop,
bare ASGI, reads the body and answers 200), measured in the same run with
the single-call body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (
    ROOT,
    SERVER_CPU,
    _closed_loop,
    _free_port,
    _pin,
    start_server,
    stop,
)

BATCH = 100


def message(i: int) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"bench-{i}",
        "userId": f"user-{i % 500}",
        "timestamp": "2026-11-24T10:00:00Z",
        "properties": {"product_id": f"sku-{i % 300}", "name": "Shoe", "price": 19.9, "category": "shoes"},
        "context": {"userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example/p/1"}},
    }


def start_collector(port: int, log_dir: str) -> subprocess.Popen:
    env = {**os.environ, "COLLECTOR_SINK": f"eventlog:{log_dir}", "COLLECTOR_OPEN": "1", "PORT": str(port)}
    env["HOST"], env["DATAFLOW_LOG_LEVEL"] = "127.0.0.1", "WARNING"
    cmd = [sys.executable, "-m", "pipeline_code.collector"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=_pin(SERVER_CPU))
    import socket
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /live HTTP/1.1\r\nhost: x\r\n\r\n")
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("collector did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client on the other core
    single = [json.dumps(message(i)).encode() for i in range(256)]
    batches = [
        json.dumps({"batch": [message(b * BATCH + i) for i in range(BATCH)]}).encode() for b in range(64)
    ]

    port = _free_port()
    hello = start_server("hello", port, None)
    try:
        hello_rps = asyncio.run(_closed_loop(port, "/", single, args.seconds))
    finally:
        stop(hello)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        collector = start_collector(port, str(Path(tmp) / "log"))
        try:
            single_rps = asyncio.run(_closed_loop(port, "/v1/track", single, args.seconds))
            batch_rps = asyncio.run(_closed_loop(port, "/v1/batch", batches, args.seconds))
        finally:
            stop(collector)

    print(f"one core, 16 connections, {args.seconds:.0f} s each, in the same run")
    print(f"  hello-world (reference)   {hello_rps:8.0f} req/s")
    ratio = single_rps / hello_rps
    print(f"  collector, single calls   {single_rps:8.0f} events/s = {ratio:.2f}x the hello-world")
    print(
        f"  collector, batches of {BATCH} {batch_rps * BATCH:8.0f} events/s "
        f"({batch_rps:.0f} req/s = {batch_rps / hello_rps:.2f}x the hello-world's req/s)"
    )


if __name__ == "__main__":
    main()
