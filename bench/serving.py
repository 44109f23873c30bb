"""Model server latency and throughput over real HTTP, against a bare
hello-world on the same server stack, measured in the same run.

    python bench/serving.py                  # trains a model on 100k synthetic events first
    python bench/serving.py --model-dir .dataflow/models

Both servers run as their own process pinned to one core (CPU 0); the load
generator runs on the other core. Two measurements per server:

- **throughput**: closed loop, 16 keep-alive connections, as many top-10
  requests as the server answers (``wrk`` when it is installed; otherwise a
  Python client, which may itself be the limit: the script says which);
- **latency at a fixed rate**: open loop at ``--rate`` requests/s (default
  1000), latency measured from when each request was *due*, so a stalled
  server cannot hide its queueing (no coordinated omission).

The hello-world is the same uvicorn + httptools + uvloop stack answering a
fixed JSON body after reading the request: the ratio is the price of the
model work itself. Targets: p99 < 5 ms at 1k req/s on one core, and
>= 0.7x the hello-world's req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline_code.web.http import lifespan
from pipeline_code.web.server import make_server

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, CLIENT_CPU = 0, 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the hello-world, run by this script as a server process --------------------
async def hello_app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    more = True
    while more:  # read the body, as the model server does
        more = (await receive()).get("more_body", False)
    body = b'{"predictions":[{"items":[]}]}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def run_hello(port: int) -> None:

    make_server(hello_app, "127.0.0.1", port).run()


# -- server processes ------------------------------------------------------------
def _pin(cpu: int):
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu:
            os.sched_setaffinity(0, {cpu})

    return pin


def start_server(kind: str, port: int, model_dir: Path | None) -> subprocess.Popen:
    env = {**os.environ, "AIP_HTTP_PORT": str(port), "DATAFLOW_LOG_LEVEL": "WARNING"}
    if kind == "model":
        env["MODEL_DIR"] = str(model_dir)
        cmd = [sys.executable, "-m", "pipeline_code.serving", "serve"]
    else:
        cmd = [sys.executable, __file__, "--hello-server", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=_pin(SERVER_CPU))
    deadline = time.monotonic() + 60
    path = "/ping" if kind == "model" else "/"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                if b" 200 " in s.recv(200):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{kind} server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{kind} server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- load ------------------------------------------------------------------------
def request_bodies(model_dir: Path, n: int = 256) -> list[bytes]:
    """Top-10 requests for known users (a third with a fresh recent item),
    as the API sends them. The hello-world gets the same bodies."""
    from pipeline_code.ml.model import Recommender, find_model

    model = Recommender.load(find_model(model_dir))
    rng = random.Random(7)
    users = model.user_ids.tolist()
    items = model.item_ids.tolist()
    bodies = []
    for i in range(n):
        inst: dict = {"user_id": rng.choice(users), "k": 10}
        if i % 3 == 0:
            inst["recent_items"] = [rng.choice(items)]
        bodies.append(json.dumps({"instances": [inst]}).encode())
    return bodies


def _raw_request(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _fixed_rate(port: int, path: str, bodies: list[bytes], rate: float, seconds: float) -> np.ndarray:
    """Open loop: request i is due at start + i / rate; latency counts from then."""
    n = int(rate * seconds)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(32)]
    free: asyncio.Queue = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies = np.zeros(n)
    errors = 0
    reqs = [_raw_request(port, path, b) for b in bodies]
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        reader, writer = await free.get()
        try:
            if await _exchange(reader, writer, reqs[i % len(reqs)]) != 200:
                errors += 1
        finally:
            free.put_nowait((reader, writer))
        latencies[i] = time.perf_counter() - due

    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for _, w in conns:
        w.close()
    if errors:
        raise SystemExit(f"{errors} requests failed")
    return latencies


async def _closed_loop(port: int, path: str, bodies: list[bytes], seconds: float, conns: int = 16) -> float:
    reqs = [_raw_request(port, path, b) for b in bodies]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(j: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = j
        while time.perf_counter() < stop_at:
            await _exchange(reader, writer, reqs[i % len(reqs)])
            i += conns
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(j) for j in range(conns)))
    return done / (time.perf_counter() - started)


def _wrk_throughput(port: int, path: str, bodies: list[bytes], seconds: float) -> float:
    """req/s from wrk with one thread, 16 connections, rotating the bodies."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        lua_bodies = ",\n".join("[[" + b.decode() + "]]" for b in bodies)
        f.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"local bodies = {{\n{lua_bodies}\n}}\nlocal i = 0\n"
            "request = function()\n  i = i % #bodies + 1\n"
            f'  return wrk.format(nil, "{path}", nil, bodies[i])\nend\n'
        )
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{int(seconds)}s", "-s", script, f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=_pin(CLIENT_CPU),
        ).stdout
    finally:
        os.unlink(script)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def measure(kind: str, model_dir: Path | None, bodies: list[bytes], args: argparse.Namespace) -> dict:
    port = _free_port()
    path = "/invocations" if kind == "model" else "/"
    proc = start_server(kind, port, model_dir)
    try:
        asyncio.run(_fixed_rate(port, path, bodies, args.rate, 1.0))  # warm up
        lat = asyncio.run(_fixed_rate(port, path, bodies, args.rate, args.seconds))
        if shutil.which("wrk"):
            rps, tool = _wrk_throughput(port, path, bodies, args.seconds), "wrk"
        else:
            rps, tool = asyncio.run(_closed_loop(port, path, bodies, args.seconds)), "python client"
    finally:
        stop(proc)
    return {
        "rps": rps,
        "tool": tool,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
    }


def _train_model(events: int, workdir: Path) -> Path:
    """Generate, process and train in child processes, so that no training
    thread pool lingers in the process that measures latency."""
    cli = [sys.executable, "-m", "pipeline_code.cli"]
    data, warehouse, models = workdir / "events.jsonl", workdir / "wh.duckdb", workdir / "models"
    for args in (
        ["generate", "--events", str(events), "--out", str(data)],
        ["process", "--input", str(data), "--warehouse", str(warehouse)],
        ["train", "--warehouse", str(warehouse), "--model-dir", str(models)],
    ):
        subprocess.run([*cli, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="serve this model (default: train one)")
    parser.add_argument("--events", type=int, default=100_000, help="events to train on when training")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed request rate for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    parser.add_argument("--hello-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_server is not None:
        run_hello(args.hello_server)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or _train_model(args.events, Path(tmp))
        _pin(CLIENT_CPU)()  # the load generator keeps off the servers' core
        bodies = request_bodies(model_dir)
        model = measure("model", model_dir, bodies, args)
        hello = measure("hello", None, bodies, args)
    ratio = model["rps"] / hello["rps"]
    print(f"load: {model['tool']}, 16 connections; latency open loop at {args.rate:.0f} req/s")
    print(f"{'server':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in (("model top-10", model), ("hello-world", hello)):
        print(f"{name:<14}{r['rps']:>10,.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")
    print(f"ratio (model / hello-world req/s): {ratio:.2f}x  (target >= 0.7x)")
    print(f"p99 at {args.rate:.0f} req/s: {model['p99_ms']:.2f} ms  (target < 5 ms)")


if __name__ == "__main__":
    main()
