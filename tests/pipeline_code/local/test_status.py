"""`dataflow status`: lag, processing counts and the served model, read-only."""

from __future__ import annotations

import shutil

import pytest

from pipeline_code.local.run import default_log_dir, process_log
from pipeline_code.local.status import chain_status
from pipeline_code.streams.eventlog import EventLog
from tests.conftest import line


@pytest.mark.slow
def test_status_reports_lag_until_processed_and_the_model(trained, tmp_path):
    warehouse, models, result = trained
    wh = tmp_path / "w.duckdb"
    shutil.copy(warehouse, wh)
    log_dir = default_log_dir(wh)
    shutil.copytree(default_log_dir(warehouse), log_dir)

    st = chain_status(wh, log_dir, models)
    assert st.unprocessed_events == 0 and st.oldest_unprocessed_age_seconds is None
    assert st.runs == 1 and st.events_read == 20_000
    assert st.events_read == st.events_stored + st.duplicates_skipped + st.dead_letters
    assert st.model["model_version"] == result.version
    assert st.model["metrics"]["popularity"]["ndcg"] > 0

    EventLog(log_dir).append([line(event_id="late-1"), line(event_id="late-2"), b"{broken"])
    st = chain_status(wh, log_dir, models)
    assert st.unprocessed_events == 3 and st.oldest_unprocessed_age_seconds >= 0

    process_log(log_dir, wh)
    st = chain_status(wh, log_dir, models)
    assert st.unprocessed_events == 0 and st.runs == 2 and st.events_read == 20_003


def test_status_without_a_model_or_log(trained, tmp_path):
    warehouse, _, _ = trained
    st = chain_status(warehouse, tmp_path / "no-log", tmp_path / "no-models")
    assert st.model is None and st.log_bytes == 0 and st.unprocessed_events == 0
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "LATEST").write_text("gone")
    assert chain_status(warehouse, tmp_path / "no-log", tmp_path / "models").model is None
