"""The local stand-ins the store adapters are tested against, each a real
implementation of its service's API over HTTP:

- moto in server mode (PyPI) for DynamoDB;
- Azurite (npm, ``azurite/``; ``npm ci`` there) for Azure Table;
- Google's Firestore and Pub/Sub emulators (the Cloud SDK's components, Java).

Each starts on a free loopback port and is stopped at the end of the
session. A missing one skips its tests, except under CI (``CI`` set) for
those ``.ci/run`` installs (moto, Azurite): there a missing one fails. The
emulators come with the Cloud SDK, which no package registry here serves:
they skip wherever it is absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

AZURITE = Path(__file__).parent / "azurite" / "node_modules" / ".bin" / "azurite-table"
FIRESTORE_EMULATOR = "cloud-firestore-emulator"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every Azurite).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def missing(what: str, installed_by_ci: bool = True) -> None:
    if installed_by_ci and os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; .ci/run installs it")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {proc.stdout.read()[-2000:]!r}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    _signal_group(proc, signal.SIGKILL)
    raise RuntimeError(f"{what} did not listen on port {port} within {seconds} s")


@contextmanager
def server(argv: list[str], port: int, what: str, env: dict | None = None) -> Iterator[str]:
    # In a process group of its own, ended whole: the emulators' launchers
    # are shell scripts that start Java as a child, which outlives the
    # script when only the script is signalled.
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        wait_for(port, proc, what)
        yield f"127.0.0.1:{port}"
    finally:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def moto_server() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of moto's server, with dummy credentials set."""
    pytest.importorskip("moto", reason="moto is a dev dependency")
    port = free_port()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    import sys

    with server(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "moto"
    ) as hp:
        yield f"http://{hp}"


def azurite() -> Iterator[str]:
    """``http://127.0.0.1:PORT/devstoreaccount1``: Azurite's Table endpoint."""
    if not AZURITE.exists():
        missing(f"Azurite ({AZURITE.parent.parent.parent}: npm ci)")
    port = free_port()
    argv = [str(AZURITE), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--inMemoryPersistence"]
    with server(argv, port, "Azurite") as hp:
        yield f"http://{hp}/{AZURITE_ACCOUNT}"


def firestore_emulator() -> Iterator[str]:
    """``127.0.0.1:PORT`` of the Firestore emulator (for ``FIRESTORE_EMULATOR_HOST``)."""
    launcher = shutil.which("gcloud")
    jar_dir = (
        Path(launcher).resolve().parent.parent / "platform" / "cloud-firestore-emulator" if launcher else None
    )
    script = jar_dir / "cloud_firestore_emulator" if jar_dir else None
    if script is None or not script.exists() or not shutil.which("java"):
        missing("the Firestore emulator (Cloud SDK component cloud-firestore-emulator, and Java)", False)
    port = free_port()
    with server(
        [str(script), "start", "--host=127.0.0.1", f"--port={port}"], port, "Firestore emulator"
    ) as hp:
        yield hp


def pubsub_emulator() -> Iterator[str]:
    """``127.0.0.1:PORT`` of Google's Pub/Sub emulator (for ``PUBSUB_EMULATOR_HOST``)."""
    launcher = shutil.which("gcloud")
    sdk = Path(launcher).resolve().parent.parent if launcher else None
    script = sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator" if sdk else None
    if script is None or not script.exists() or not shutil.which("java"):
        missing("the Pub/Sub emulator (Cloud SDK component pubsub-emulator, and Java)", False)
    port = free_port()
    with server([str(script), "--host=127.0.0.1", f"--port={port}"], port, "Pub/Sub emulator") as hp:
        yield hp
