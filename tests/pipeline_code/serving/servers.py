"""Start real server processes for the contract tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(
    env: dict[str, str], args: tuple[str, ...] = ("serve",), port: int | None = None, ready: str = "/ping"
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m pipeline_code.serving ARGS`` with ``env``; yields the
    process and its base URL once ``ready`` answers 200."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "AZUREML_", "MODEL_DIR", "PORT"))
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_code.serving", *args],
        env={**clean, "DATAFLOW_LOG_LEVEL": "INFO", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()}")
            with suppress(httpx.TransportError):  # not listening yet
                if httpx.get(base + ready, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready on {base}{ready}")
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
