"""Synapse: the T-SQL DDL, staging and per-batch merge rendered from the table description."""

from __future__ import annotations

import json
import re

import pytest
import sqlglot

from pipeline_code.core.history import enrich_shard, keep_first_seen
from pipeline_code.core.parse import RawEvent, parse_batch
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import TABLES, arrow_table
from pipeline_code.warehouses import synapse
from pipeline_code.warehouses.synapse import https_of


def test_copy_into_reads_the_https_form_of_the_staging_path():
    assert https_of("abfss://jobs@lake1.dfs.core.windows.net/staging/b1/events/") == (
        "https://lake1.dfs.core.windows.net/jobs/staging/b1/events/"
    )
    with pytest.raises(ValueError, match="is not abfss://CONTAINER@ACCOUNT"):
        https_of("abfss://lake1.blob.core.windows.net/x")


def test_nested_columns_are_staged_as_json_text():
    row = {c: None for c in TABLES["user_features"].column_names()}
    row.update(user_key="u1", first_seen_at=1, last_seen_at=2, lifetime_events=1)
    row.update(lifetime_purchases=0, lifetime_revenue=0.0, recent_items=["b", "a"], last_session_items=[])
    row["is_bot"] = False
    staged = synapse.stage_rows(TABLES["user_features"], [row])
    assert str(staged.schema.field("recent_items").type) == "string"
    assert json.loads(staged.column("recent_items")[0].as_py()) == ["b", "a"]


def test_an_arrow_table_is_staged_as_its_rows_are():
    """The Spark job stages a shard's events as the Arrow table the columnar
    features read: its nested columns become the same JSON text, byte for
    byte, as the rows' do."""
    lines = list(generate(StoreSpec(events=400, days=1, seed=3)))
    records, _ = parse_batch([RawEvent(i, 1_800_000_000_000_000, p) for i, p in enumerate(lines)])
    enriched, users = enrich_shard(keep_first_seen(records)[0], {})
    assert any(r["items"] for r in enriched) and any(r["context"] for r in enriched)
    for name, rows in {"events": enriched, "user_features": [u.to_row() for u in users]}.items():
        from_rows = synapse.stage_rows(TABLES[name], rows)
        from_arrow = synapse.stage_rows(TABLES[name], arrow_table(TABLES[name], rows))
        assert from_arrow.schema == from_rows.schema == synapse.stage_schema(TABLES[name])
        assert from_arrow.equals(from_rows), name


def test_synapse_sql_parses_as_tsql():
    """Every statement parses in sqlglot's T-SQL dialect. ``CLUSTERED
    COLUMNSTORE INDEX`` is a Synapse table option sqlglot does not know, so
    the DDL is parsed with ``HEAP`` (the other documented option) in its place."""
    staged = {t: f"https://lake1.dfs.core.windows.net/jobs/staging/9/{t}/*.parquet" for t in TABLES}
    load, merge, cleanup = synapse.batch_statements("job:9", staged)
    ddl = [s.replace("CLUSTERED COLUMNSTORE INDEX", "HEAP") for s in synapse.all_ddl()]
    for sql in [*ddl, *load, *merge, *cleanup]:
        for tree in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
            assert type(tree).__name__ != "Command", f"not parsed, only passed through: {sql[:80]}"
    assert sum(s.startswith("COPY INTO") for s in load) == len(TABLES)
    guard = "NOT EXISTS (SELECT 1 FROM dbo._dataflow_batches WHERE batch_key = N'job:9')"
    assert all(guard in s for s in merge) and merge[-1].startswith("INSERT INTO dbo._dataflow_batches")
    assert len(cleanup) == len(TABLES)


def test_synapse_ddl_follows_the_table_description():
    events = synapse.ddl(TABLES["events"])
    assert re.search(r"\bitems NVARCHAR\(MAX\) (NOT )?NULL", events)
    assert "DISTRIBUTION = HASH(user_key), HEAP" in events  # MAX columns: a heap
    assert "CLUSTERED COLUMNSTORE INDEX" in synapse.ddl(TABLES["item_popularity"])
    assert "is_bot BIT NOT NULL" in synapse.ddl(TABLES["sessions"])


def test_a_replay_keeps_one_dead_letter_per_arrival_and_bytes_in_t_sql():
    from pipeline_code.core.ports import Replay

    staged = {"dead_letters": "https://lake1.dfs.core.windows.net/jobs/staging/9/dead_letters/*.parquet"}
    rerun = Replay(rerun_before_us=1_764_460_800_000_000, stage="validate", since_us=1_764_374_400_000_000)
    _, merge, _ = synapse.batch_statements("replay:9", staged, rerun)
    for sql in merge:
        for tree in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE):
            assert type(tree).__name__ != "Command", sql[:80]
    delete, insert, record = merge
    assert delete.startswith(
        "DELETE FROM dbo.dead_letters WHERE dead_lettered_at <= CAST('2025-11-30 00:00:00'"
    )
    assert "failed_stage = N'validate'" in delete and "dead_lettered_at >= CAST('2025-11-29" in delete
    assert "t.source_offset = s.source_offset AND t.payload = s.payload" in insert
    assert record.startswith("INSERT INTO dbo._dataflow_batches")
    # Everything now passes: nothing staged, and the re-run rows still go.
    _, merge, _ = synapse.batch_statements("replay:10", {}, rerun)
    assert [s.split(" ", 2)[:2] for s in merge] == [["DELETE", "FROM"], ["INSERT", "INTO"]]
    # A plain batch is untouched by all this.
    _, plain, _ = synapse.batch_statements("job:9", staged)
    assert plain[0].startswith("INSERT INTO dbo.dead_letters") and "t.payload" not in plain[0]


def test_a_rerun_reads_the_dead_letters_its_commit_removes_in_t_sql():
    from pipeline_code.core.ports import Replay

    rerun = Replay(rerun_before_us=1_764_460_800_000_000, stage="validate", since_us=1_764_374_400_000_000)
    select = synapse.rerun_select_sql(rerun)
    tree = sqlglot.parse_one(select, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert type(tree).__name__ == "Select"
    delete = synapse.replay_statements(rerun, None, "TRUE")[0]
    # One WHERE for both: what is read is what the commit deletes.
    assert (
        select.split(" WHERE ", 1)[1].split(" ORDER BY")[0]
        == delete.split(" WHERE ", 1)[1][: -len(" AND TRUE")]
    )
    assert "DATEDIFF_BIG(microsecond" in select and select.endswith("ORDER BY source_offset")
