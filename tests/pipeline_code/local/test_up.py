"""``dataflow up``: the whole chain live, driven by its simulator, stopped with
Ctrl-C, restarted; every acknowledged event is accounted for once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline_code.local.up import UpSettings, totals
from pipeline_code.streams.eventlog import EventLog
from tests.pipeline_code.serving.servers import free_port


def _up(workdir: Path, ports: dict[str, int], *extra: str) -> tuple[subprocess.Popen, Path]:
    out = workdir.parent / f"up-{len(list(workdir.parent.glob('up-*')))}.out"
    argv = [
        sys.executable, "-m", "pipeline_code.cli", "up", "--workdir", str(workdir), "--batch-seconds", "2",
        "--collector-port", str(ports["collector"]), "--model-port", str(ports["model"]),
        "--api-port", str(ports["api"]), "--monitor-port", str(ports["monitor"]), *extra,
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


def _snapshot(monitor: str) -> dict:
    with urllib.request.urlopen(f"{monitor}/api/snapshot", timeout=10) as r:
        return json.loads(r.read())


def _any(snapshot: dict, series: str) -> bool:
    return any(v is not None for v in snapshot["series"][series])


def _has_bad(snapshot: dict) -> bool:
    return any("monitor-bad-1" in d["preview"] for d in snapshot.get("dead_newest", []))


def _until(get, ok, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


# A browser's own user agent: headless Chromium names itself, and the chain leaves bots' events
# out of user state (that filter is tested elsewhere).
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)


def _browse(url: str, profile: Path, *flags: str) -> str:
    """A page in headless Chromium, its DOM after a few seconds of virtual time (which stands
    still while a request is open: the shop's wait for its list runs in real time)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("DATAFLOW_BROWSER_TESTS") == "1":
            pytest.fail("chromium is missing")
        pytest.skip("needs chromium (.ci/run installs it)")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--virtual-time-budget=6000", *flags,
         "--window-size=1400,1000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Uncaught" not in done.stderr and ":ERROR:CONSOLE" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def _interrupt(process: subprocess.Popen, out: Path) -> str:
    process.send_signal(signal.SIGINT)
    assert process.wait(90) == 0, out.read_text()[-3000:]
    return out.read_text()


@pytest.mark.slow
def test_the_live_chain_serves_retrained_models_drains_on_ctrl_c_and_resumes(tmp_path):
    workdir = tmp_path / "state"
    ports = {name: free_port() for name in ("collector", "model", "api", "monitor")}
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
        # A bad event through the collector shows on the monitoring page with its reason.
        bad = json.dumps({"event_id": "monitor-bad-1", "event_name": "view_item"}).encode()
        post = urllib.request.Request(
            f"http://127.0.0.1:{ports['collector']}/v1/events", bad, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(post, timeout=10) as r:
            assert r.status == 200
        monitor = f"http://127.0.0.1:{ports['monitor']}"
        snapshot = _until(lambda: _snapshot(monitor), lambda s: _has_bad(s) and _any(s, "freshness_ms"), 60)
        assert (
            _any(snapshot, "api_p99_ms") and _any(snapshot, "model_p50_ms") and _any(snapshot, "ingest_per_s")
        )
        assert snapshot["model"]["version"] == served and snapshot["gate"]["decision"] == "promoted"
        (dead,) = [d for d in snapshot["dead_newest"] if "monitor-bad-1" in d["preview"]]
        with urllib.request.urlopen(f"{monitor}/dead-letters/{dead['offset']}", timeout=10) as r:
            assert json.loads(json.loads(r.read())["payload_text"]) == json.loads(bad)
        page = _browse(f"{monitor}/?close_after=2", tmp_path / "profile")
        assert 'data-updates="' in page and '<pre id="errors"></pre>' in page, page[:3000]
        assert page.count("<canvas") >= 4 and dead["reason"] in page and served in page
        # The shop: analytics.js sends a new shopper's click to the collector and their list changes.
        assert snapshot["shop_users"] and len(snapshot["shop_items"]) == 12
        shop = _browse(
            f"{monitor}/shop?user=demo-shopper-1&autoclick=1",
            tmp_path / "profile-shop",
            f"--user-agent={BROWSER_UA}",
        )
        assert '<pre id="errors"></pre>' in shop, shop[:3000]
        changed = re.search(r'data-changed-ms="(\d+)"', shop)
        assert changed and int(changed[1]) < 1000, shop[:3000]  # within a second
        assert "Your list changed" in shop
    finally:
        if process.poll() is None:
            text = _interrupt(process, out)
    last = text.strip().splitlines()[-1]
    assert last.startswith("stopped:") and "does not balance" not in last, text[-2000:]
    acknowledged = int(re.search(r"the simulator had ([\d,]+) acknowledged", last)[1].replace(",", ""))
    log = EventLog(workdir / "warehouse.eventlog")
    first = totals(workdir / "warehouse.duckdb")
    probes = int(re.search(r"([\d,]+) freshness probes sent", last)[1].replace(",", ""))
    # Every acknowledged event (the store's, the probes', the bad one, the shop's identify and click)
    # is in the log, processed once.
    assert acknowledged + probes + 1 + 2 == log.count_records(0, log.durable_end()) == first.read > 1000
    assert probes > 0
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


def test_children_stop_when_dataflow_up_is_killed_outright(tmp_path):
    """SIGKILL leaves no time to stop anything: the children ask the kernel to stop them."""
    import os

    script = (
        "import sys, time; from pathlib import Path; from pipeline_code.local.up import Children; "
        f"c = Children(Path({str(tmp_path / 'logs')!r})); "
        "c.start('sleeper', [sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(c.running['sleeper'].process.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # alive
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError(f"child {child} outlived its killed parent")
