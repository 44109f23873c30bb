"""``dataflow up``: the whole chain live, driven by its simulator, stopped with
Ctrl-C, restarted; every acknowledged event is accounted for once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline_code.local.up import Chain, UpSettings, totals
from pipeline_code.streams.eventlog import EventLog
from tests.pipeline_code.serving.servers import free_port


def _up(workdir: Path, ports: dict[str, int], *extra: str) -> tuple[subprocess.Popen, Path]:
    out = workdir.parent / f"up-{len(list(workdir.parent.glob('up-*')))}.out"
    argv = [
        sys.executable, "-m", "pipeline_code.cli", "up", "--workdir", str(workdir), "--batch-seconds", "2",
        "--collector-port", str(ports["collector"]), "--model-port", str(ports["model"]),
        "--api-port", str(ports["api"]), *extra,
    ]  # fmt: skip
    with open(out, "wb") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT), out


def _wait_for(out: Path, pattern: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        assert process.poll() is None, text[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not seen in {timeout} s:\n{out.read_text()[-3000:]}")


def _interrupt(process: subprocess.Popen, out: Path) -> str:
    process.send_signal(signal.SIGINT)
    assert process.wait(90) == 0, out.read_text()[-3000:]
    return out.read_text()


@pytest.mark.slow
def test_the_live_chain_serves_retrained_models_drains_on_ctrl_c_and_resumes(tmp_path):
    workdir = tmp_path / "state"
    ports = {name: free_port() for name in ("collector", "model", "api")}
    process, out = _up(workdir, ports, "--simulate", "300", "--min-train-events", "600")
    try:
        text = _wait_for(out, r"serving: model server", process, 180)
        assert re.search(r"model \S+ promoted", text)
        # The API answers from the model server with the chain's users.
        served = (workdir / "models" / "LATEST").read_text().strip()
        url = f"http://127.0.0.1:{ports['api']}/recommendations/anon:x?k=5"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert r.status == 200 and len(body["items"]) == 5 and body["model_version"] == served
        _wait_for(out, r"lag was", process, 60)
    finally:
        if process.poll() is None:
            text = _interrupt(process, out)
    last = text.strip().splitlines()[-1]
    assert last.startswith("stopped:") and "does not balance" not in last, text[-2000:]
    acknowledged = int(re.search(r"the simulator had ([\d,]+) acknowledged", last)[1].replace(",", ""))
    log = EventLog(workdir / "warehouse.eventlog")
    first = totals(workdir / "warehouse.duckdb")
    # Every acknowledged event is in the log, and every one was processed once.
    assert acknowledged == log.count_records(0, log.durable_end()) == first.read > 1000
    assert first.balanced and first.stored > 0 and first.duplicates > 0  # the store retries some sends
    # No child outlives it: the ports are free again.
    for port in ports.values():
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=2)
    # A restart resumes from the checkpoint: nothing is processed twice.
    process, out = _up(workdir, ports)
    _wait_for(out, r"lag 0 events", process, 120)
    again = _interrupt(process, out)
    assert totals(workdir / "warehouse.duckdb") == first, again[-2000:]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"--simulate must be 0 or more events a second, got -1"):
        UpSettings(simulate=-1)
    with pytest.raises(ValueError, match=r"--batch-seconds must be above 0, got 0"):
        UpSettings(batch_seconds=0)


def test_a_child_that_stops_names_itself_and_its_log(tmp_path):
    from pipeline_code.local.up import Children, UpError

    children = Children(tmp_path / "logs")
    children.start("broken", [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"])
    children.running["broken"].process.wait(30)
    with pytest.raises(UpError, match=r"broken stopped \(exit 3\).*broken.log ends:\ncannot bind"):
        children.check()
    assert Chain(UpSettings(workdir=tmp_path)).stopping.is_set() is False
