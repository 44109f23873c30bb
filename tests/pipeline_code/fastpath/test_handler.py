"""The fast path's handler and its local runner: every event ends in one
outcome, bad events never block, a failing store fails only its users'
events, and the rejects are exactly processing's dead letters."""

from __future__ import annotations

import pytest

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.userstate import recent_items
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.fastpath.local import FreshError, LogFastPath
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.userstate.local import LocalUserState
from tests.conftest import HOSTILE, RECEIVED_US, line


def raws(*payloads: bytes) -> list[RawEvent]:
    return [RawEvent(i, RECEIVED_US, p) for i, p in enumerate(payloads)]


def test_each_event_has_one_outcome_and_bad_ones_are_acknowledged(tmp_path) -> None:
    store = LocalUserState(tmp_path / "s.sqlite")
    batch = raws(
        line(event_id="a", items=[{"item_id": "sku-1"}]),
        line(event_id="b", user_id="u-2", items=[{"item_id": "sku-2"}]),
        line(event_id="bot", context={"user_agent": "Googlebot/2.1"}),
        *(payload for _, payload, _, _ in HOSTILE),
    )
    outcome = FastPath(store).apply(batch)
    assert outcome.total == len(batch)
    assert (outcome.applied, outcome.skipped, outcome.failed) == (2, 1, [])
    assert len(outcome.rejected) == len(HOSTILE)
    for dead, (name, _, stage, fragment) in zip(outcome.rejected, HOSTILE, strict=True):
        assert dead["failed_stage"] == stage and fragment in dead["error_message"], name
    assert recent_items(store.get("u-1")) == ["sku-1"] and recent_items(store.get("u-2")) == ["sku-2"]


class FailingFor:
    """A local store whose writes for one user fail (a throttled partition)."""

    def __init__(self, store: LocalUserState, user: str) -> None:
        self.store, self.user = store, user

    def read(self, user_key):
        return self.store.read(user_key)

    def write(self, state, version):
        if state.user_key == self.user:
            raise ConnectionError("throttled")
        return self.store.write(state, version)

    def get(self, user_key):
        return self.store.get(user_key)


def test_a_failing_write_fails_only_that_users_events(tmp_path) -> None:
    store = LocalUserState(tmp_path / "s.sqlite")
    batch = raws(
        line(event_id="a", user_id="ok"),
        line(event_id="b", user_id="bad"),
        line(event_id="c", user_id="ok", event_timestamp="2026-01-01T10:05:00Z"),
        line(event_id="d", user_id="bad", event_timestamp="2026-01-01T10:06:00Z"),
    )
    fast = FastPath(FailingFor(store, "bad"))
    outcome = fast.apply(batch)
    assert outcome.failed == [1, 3] and outcome.applied == 2
    assert [t.event_id for t in store.get("ok").touches] == ["c", "a"]
    assert store.get("bad") is None
    assert 'dataflow_fresh_events_total{outcome="failed"} 2.0' in exposition(fast)


def exposition(fast: FastPath) -> str:
    from prometheus_client import generate_latest

    return generate_latest(fast.registry).decode()


def test_the_log_runner_resumes_from_its_checkpoint_and_repeats_nothing(tmp_path) -> None:
    log = EventLog(tmp_path / "log")
    state = tmp_path / "s.sqlite"
    log.append([line(event_id=f"e{i}", event_timestamp=f"2026-01-01T10:{i:02d}:00Z") for i in range(5)])
    first = LogFastPath(log, LocalUserState(state))
    assert first.step() == 5 and first.step() == 0
    log.append([line(event_id="e5", event_timestamp="2026-01-01T10:30:00Z"), b"{oops"])
    again = LogFastPath(log, LocalUserState(state))  # a restart
    assert again.step() == 2
    assert (again.totals.applied, again.totals.rejected) == (1, 1)
    assert [t.event_id for t in again.store.get("u-1").touches] == [f"e{i}" for i in range(5, -1, -1)]
    assert again.lag_bytes() == 0


def test_a_store_that_fails_keeps_the_checkpoint(tmp_path) -> None:
    log = EventLog(tmp_path / "log")
    store = LocalUserState(tmp_path / "s.sqlite")
    log.append([line(event_id="a", user_id="bad")])
    runner = LogFastPath(log, store, FastPath(FailingFor(store, "bad")))
    with pytest.raises(FreshError, match="stays at byte 0"):
        runner.step()
    assert store.checkpoint(log.log_id) == 0


@pytest.mark.slow
def test_rejects_are_exactly_processings_dead_letters(tmp_path) -> None:
    """The fast path leaves bad events to processing's ``dead_letters``:
    both read the same log with the same parse, so the sets agree row for row."""
    from pipeline_code.local.run import process_log
    from pipeline_code.warehouses.duckdb import Warehouse

    warehouse = tmp_path / "w.duckdb"
    log = EventLog(tmp_path / "w.eventlog")
    log.append([line(event_id="ok")] + [payload for _, payload, _, _ in HOSTILE])
    assert process_log(log.path, warehouse).dead_lettered == len(HOSTILE)
    runner = LogFastPath(log, LocalUserState(tmp_path / "s.sqlite"))
    fast_rejects = []
    runner.fast.apply = _recording(runner.fast.apply, fast_rejects)
    runner.step()
    with Warehouse(warehouse) as wh:
        stored = wh.con.execute(
            "SELECT source_offset, failed_stage, error_message FROM dead_letters ORDER BY source_offset"
        ).fetchall()
    assert len(stored) == len(HOSTILE) == runner.totals.rejected
    assert sorted(fast_rejects) == [tuple(r) for r in stored]


def _recording(apply, into: list):
    def run(raws):
        outcome = apply(raws)
        into.extend((d["source_offset"], d["failed_stage"], d["error_message"]) for d in outcome.rejected)
        return outcome

    return run
