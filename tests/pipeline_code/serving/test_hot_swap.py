"""Promotions and rollbacks reach running servers without a restart or a failed request."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.pipeline_code.serving.servers import free_port, server_process

pytestmark = pytest.mark.slow

BODY = {"instances": [{"user_id": "user-000407", "k": 5}]}


def _hammer(base: str, stop: threading.Event, seen: Counter, statuses: Counter, api: bool) -> None:
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            if api:
                r = client.get("/recommendations/user-000407?k=5")
            else:
                r = client.post("/invocations", json=BODY)
                statuses[("ping", client.get("/ping").status_code)] += 1
            statuses[("call", r.status_code)] += 1
            if r.status_code == 200:
                body = r.json()
                seen[body.get("model_version") or body["predictions"][0]["model_version"]] += 1


def _models(work, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.cli", "models", *args, "--model-dir", str(work),
         "--warehouse", str(work / "none.duckdb")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def _until(seen: Counter, version: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    before = seen[version]
    while seen[version] <= before + 20:
        assert time.monotonic() < deadline, f"{version} never served: {dict(seen)}"
        time.sleep(0.05)


@pytest.mark.parametrize("server", ["model-server", "api"])
def test_rollback_and_promote_under_load_fail_no_request(growing, tmp_path, server):
    _, models, first, second = growing
    work = tmp_path / "models"
    subprocess.run(["cp", "-a", str(models), str(work)], check=True)
    port = free_port()
    if server == "model-server":
        context = server_process({"MODEL_DIR": str(work), "MODEL_POLL_SECONDS": "0.1", "PORT": str(port)},
                                 ("serve",), port)  # fmt: skip
    else:
        context = _api_process(work, port)
    stop, seen, statuses = threading.Event(), Counter(), Counter()
    with context as (_, base):
        workers = [
            threading.Thread(target=_hammer, args=(base, stop, seen, statuses, server == "api"))
            for _ in range(3)
        ]
        for w in workers:
            w.start()
        try:
            _until(seen, second.version)
            _models(work, "rollback")
            _until(seen, first.version)
            _models(work, "promote", second.version)
            _until(seen, second.version)
        finally:
            stop.set()
            for w in workers:
                w.join(10)
    assert set(statuses) <= {("call", 200), ("ping", 200)}, statuses
    assert statuses[("call", 200)] > 100


class _api_process:
    """``dataflow api`` with the model in-process, following the registry."""

    def __init__(self, work, port: int) -> None:
        self.work, self.port = work, port

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline_code.cli", "api", "--model-dir", str(self.work),
             "--warehouse", str(self.work / "none.duckdb"), "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                if httpx.get(base + "/recommendations/x", timeout=1).status_code == 200:
                    return self.proc, base
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "api not ready"
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)
