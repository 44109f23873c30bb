"""The warehouse link on GCP."""

from __future__ import annotations

import json

from pipeline_code.tables import TABLES
from pipeline_code.warehouses import bigquery


def test_warehouse_tables_match_the_logical_tables(default):
    rec, _ = default
    tables = {r.inputs["tableId"]: r.inputs for r in rec.of_type("bigquery/table:Table")}
    for t in TABLES.values():
        physical = tables[bigquery.physical_name(t)]
        assert json.loads(physical["schema"]) == bigquery.schema_fields(t)
        assert physical["deletionProtection"] is True
        if t.partition_by:
            assert physical["timePartitioning"]["field"] == t.partition_by
        if bigquery.has_view(t):
            assert tables[t.name]["view"]["useLegacySql"] is False
            assert tables[t.name]["view"]["query"] == bigquery.view_sql(t, "shop-analytics-dev", "dataflow")
    assert tables["events"]["clusterings"] == ["event_name", "user_key"]
    assert tables["dead_letters_log"]["timePartitioning"]["expirationMs"] == 400 * 86_400_000
    assert json.loads(tables["_dataflow_batches"]["schema"]) == bigquery.BATCHES_SCHEMA
    dataset = rec.one("bigquery/dataset:Dataset").inputs
    assert dataset["deleteContentsOnDestroy"] is False and dataset["location"] == "europe-west1"
