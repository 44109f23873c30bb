"""The local fast path as a user runs it: the collector, ``dataflow fresh``
and ``dataflow api`` as processes; a Segment call for a known user changes
that user's recommendations, with the model unchanged."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from pipeline_code.cli import main
from tests.conftest import line
from tests.pipeline_code.serving.servers import free_port


def wait_live(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on port {port}")


@pytest.mark.slow
def test_a_click_through_the_collector_changes_that_users_recommendations(trained, tmp_path) -> None:
    _, models, _ = trained
    warehouse = tmp_path / "w.duckdb"
    log_dir = tmp_path / "w.eventlog"
    collector, api = free_port(), free_port()
    env = {**os.environ, "DATAFLOW_LOG_LEVEL": "ERROR"}
    cli = [sys.executable, "-m", "pipeline_code.cli"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline_code.collector"],
            env={
                **env,
                "COLLECTOR_SINK": f"eventlog:{log_dir}",
                "COLLECTOR_OPEN": "1",
                "PORT": str(collector),
            },
        ),
        subprocess.Popen([*cli, "fresh", "--warehouse", str(warehouse), "--poll-seconds", "0.01"], env=env),
    ]
    try:
        wait_live(collector)
        state = tmp_path / "w.userstate.sqlite"
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        procs.append(
            subprocess.Popen(
                [*cli, "api", "--model-dir", str(models), "--warehouse", str(warehouse), "--port", str(api)],
                env=env,
            )
        )
        wait_live(api)
        url = f"http://127.0.0.1:{api}/recommendations/user-000003?k=10"
        before = httpx.get(url).json()
        top = before["items"][0]["item_id"]
        now = dt.datetime.now(dt.UTC).isoformat()
        call = {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "fresh-chain-1",
            "userId": "user-000003",
            "timestamp": now,
            "properties": {"product_id": top},
        }
        assert httpx.post(f"http://127.0.0.1:{collector}/v1/track", json=call).status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = httpx.get(url).json()
            if top not in [i["item_id"] for i in after["items"]]:
                break
            time.sleep(0.01)
        assert top not in [i["item_id"] for i in after["items"]], (
            "the click never reached the recommendations"
        )
        assert after["model_version"] == before["model_version"] and after["fresh_items"] >= 1
        assert "dataflow_api_user_state_total" in httpx.get(f"http://127.0.0.1:{api}/metrics").text
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    # Ctrl-C stops the fast path cleanly, with its totals.
    assert procs[1].returncode == 0


def test_dataflow_fresh_once_applies_the_log_and_reports(tmp_path, capsys) -> None:
    from pipeline_code.streams.eventlog import EventLog

    EventLog(tmp_path / "w.eventlog").append([line(event_id="a"), line(event_id="b", user_id="u-2"), b"{"])
    assert main(["fresh", "--warehouse", str(tmp_path / "w.duckdb"), "--once"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 events read, 2 applied" in out and "1 rejected" in out and "2 users in" in out
    assert main(["fresh", "--warehouse", str(tmp_path / "w.duckdb"), "--once"]) == 0
    assert "0 events read" in " ".join(capsys.readouterr().out.split())


def test_dataflow_fresh_refuses_a_bad_ttl(tmp_path, capsys) -> None:
    assert main(["fresh", "--warehouse", str(tmp_path / "w.duckdb"), "--once", "--ttl-days", "0"]) == 1
    assert "--ttl-days must be at least 1, got 0" in capsys.readouterr().err
