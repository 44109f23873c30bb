"""The BigQuery rendering of the logical tables, checked with google-cloud-bigquery."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipeline_code.tables import TABLES
from pipeline_code.warehouses import bigquery as bq

bigquery = pytest.importorskip("google.cloud.bigquery", reason="the gcp extra is not installed")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_schemas_load_as_bigquery_schema_fields(name):
    table = TABLES[name]
    fields = [bigquery.SchemaField.from_api_repr(f) for f in bq.schema_fields(table)]
    assert [f.to_api_repr()["name"] for f in fields] == [f["name"] for f in bq.schema_fields(table)]
    names = {f.name: f for f in fields}
    for col in table.columns:
        assert names[col.name].field_type == col.type and names[col.name].mode == col.mode
    assert (bq.CHANGED_AT in names) == bq.is_change_log(table)
    assert json.loads(bq.schema_json(table)) == bq.schema_fields(table)


def test_layout_follows_each_tables_merge_rule():
    assert bq.physical_name(TABLES["events"]) == "events"
    assert bq.physical_name(TABLES["dead_letters"]) == "dead_letters"
    assert bq.physical_name(TABLES["sessions"]) == "sessions_changes"
    assert bq.physical_name(TABLES["user_features"]) == "user_features_changes"
    assert bq.partitioning(TABLES["events"]) == ("DAY", "event_date")
    assert bq.clustering(TABLES["sessions"]) == ["session_key"]


def test_views_fold_with_each_columns_rule():
    sessions = bq.view_sql(TABLES["sessions"], "p", "d")
    assert "FROM `p.d.sessions_changes` GROUP BY session_key" in sessions
    assert "MIN(started_at) AS started_at" in sessions and "MAX(ended_at) AS ended_at" in sessions
    assert "ROUND(SUM(revenue), 2) AS revenue" in sessions and "SUM(events) AS events" in sessions
    assert "ARRAY_AGG(user_key IGNORE NULLS ORDER BY ended_at DESC LIMIT 1)[SAFE_OFFSET(0)]" in sessions
    latest = bq.view_sql(TABLES["user_features"], "p", "d")
    assert "QUALIFY ROW_NUMBER() OVER (PARTITION BY user_key ORDER BY changed_at DESC) = 1" in latest


def test_rows_convert_to_insert_all_json():
    row = {
        "payload": b"\xff{",
        "payload_text": None,
        "error_message": "not valid JSON",
        "failed_stage": "parse",
        "received_at": 1_767_225_600_000_000,
        "dead_lettered_at": 1_767_225_600_000_001,
        "event_id": None,
        "source_offset": 7,
    }
    out = bq.to_row(TABLES["dead_letters"], row)
    assert out["payload"] == "/3s=" and out["received_at"] == "2026-01-01T00:00:00+00:00"
    assert dt.datetime.fromisoformat(out["dead_lettered_at"]).microsecond == 1
    json.dumps(out)  # insertAll takes JSON
    with pytest.raises(ValueError, match="'sessions' is a change log"):
        bq.to_row(TABLES["sessions"], {})
    change = bq.to_row(TABLES["item_cooccurrence"], {"item_id": "a", "other_item_id": "b", "sessions": 2}, 0)
    assert change == {
        "item_id": "a",
        "other_item_id": "b",
        "sessions": 2,
        "changed_at": "1970-01-01T00:00:00+00:00",
    }


def test_nested_and_date_columns_convert():
    from pipeline_code.core.parse import RawEvent, parse_event
    from tests.conftest import RECEIVED_US, line

    rec, _ = parse_event(RawEvent(3, RECEIVED_US, line()))
    out = bq.to_row(TABLES["events"], rec)
    assert out["event_date"] == "2026-01-01"
    assert out["items"][0]["item_id"] == "sku-1" and out["context"]["device_category"] == "mobile"
