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
    assert (bq.RESOLVED in names) == (name == "dead_letters")
    assert json.loads(bq.schema_json(table)) == bq.schema_fields(table)


def test_layout_follows_each_tables_merge_rule():
    assert bq.physical_name(TABLES["events"]) == "events"
    assert bq.physical_name(TABLES["dead_letters"]) == "dead_letters_log"
    assert bq.has_view(TABLES["dead_letters"]) and not bq.has_view(TABLES["events"])
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


def _in_duckdb(con, sql: str) -> None:
    """A BigQuery statement's meaning, run in DuckDB through sqlglot."""
    import sqlglot

    con.execute(sqlglot.transpile(sql, read="bigquery", write="duckdb")[0])


def _dead(offset: int, payload: bytes, reason: str, at_us: int, stage: str = "parse") -> dict:
    return {
        "payload": payload, "payload_text": None, "error_message": reason, "failed_stage": stage,
        "received_at": at_us, "dead_lettered_at": at_us, "event_id": None, "source_offset": offset,
    }  # fmt: skip


def test_a_replays_commit_keeps_one_dead_letter_per_input_and_a_rerun_shows_the_new_state():
    """The commit's statements (minus the script's control flow and the file
    loads, which the test does with its own temporary tables) run in DuckDB."""
    import duckdb
    import sqlglot

    from pipeline_code.core.ports import Replay
    from pipeline_code.tables import duckdb_ddl

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("ATTACH ':memory:' AS p")
    con.execute("CREATE SCHEMA p.d")
    dead = TABLES["dead_letters"]
    con.execute(duckdb_ddl(dead).replace("dead_letters", "p.d.dead_letters_log", 1))
    con.execute("ALTER TABLE p.d.dead_letters_log ADD COLUMN resolved BOOLEAN")
    _in_duckdb(con, f"CREATE VIEW `p.d.dead_letters` AS {bq.view_sql(dead, 'p', 'd')}")
    cols = dead.column_names()

    def insert(table: str, rows: list[dict]) -> None:
        for r in rows:
            at = {k: dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=r[k])
                  for k in ("received_at", "dead_lettered_at")}  # fmt: skip
            con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [at.get(c, r[c]) for c in cols])  # fmt: skip

    def commit(staged: list[dict], replay: Replay) -> list[tuple]:
        con.execute(f"CREATE OR REPLACE TEMP TABLE replay_dead_letters AS SELECT {', '.join(cols)} "
                    "FROM p.d.dead_letters_log LIMIT 0")  # fmt: skip
        insert("replay_dead_letters", staged)
        files = {"dead_letters": ["gs://s/k/dead_letters/a.json"]} if staged else {}
        for sql in bq.replay_statements("p", "d", "replay:1", files, replay):
            tree = sqlglot.parse_one(sql, read="bigquery") if sql.startswith("INSERT") else None
            if tree is not None and "_dataflow_batches" not in sql:
                assert type(tree).__name__ == "Insert", sql[:80]
                _in_duckdb(con, sql)
        return con.execute(
            "SELECT source_offset, payload, error_message FROM p.d.dead_letters ORDER BY 1, 2"
        ).fetchall()

    insert(
        "p.d.dead_letters_log",
        [_dead(7, b"a", "bad a", 1_000), _dead(9, b"c", "old reason", 2_000, "validate")],
    )
    # An archive range replayed: A fails again (kept once, its first reason); Z is new.
    rows = commit([_dead(7, b"a", "bad a again", 5_000), _dead(7, b"z", "bad z", 5_000)], Replay())
    assert rows == [(7, b"a", "bad a"), (7, b"z", "bad z"), (9, b"c", "old reason")]
    # Dead letters of stage validate re-run: C fails again and shows its new reason.
    rows = commit(
        [_dead(9, b"c", "new reason", 2_500, "validate")], Replay(rerun_before_us=3_000, stage="validate")
    )
    assert rows == [(7, b"a", "bad a"), (7, b"z", "bad z"), (9, b"c", "new reason")]
    # Stamped after the re-run's snapshot, even with an earlier clock: it outranks the resolving row.
    assert con.execute(
        "SELECT epoch_us(dead_lettered_at) FROM p.d.dead_letters WHERE source_offset = 9"
    ).fetchone() == (3_001,)
    # Re-run again after another fix: everything passes, nothing staged, C leaves the view.
    rows = commit([], Replay(rerun_before_us=10_000, stage="validate"))
    assert rows == [(7, b"a", "bad a"), (7, b"z", "bad z")]
    # The log keeps every row: 2 + 1 + (resolving + new) + resolving.
    assert con.execute("SELECT count(*) FROM p.d.dead_letters_log").fetchone() == (6,)


def test_a_replays_commit_inserts_only_new_events_and_appends_change_rows():
    import duckdb

    from pipeline_code.core.ports import Replay

    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS p")
    con.execute("CREATE SCHEMA p.d")
    con.execute("CREATE TABLE p.d.events (event_id VARCHAR, event_date DATE, user_key VARCHAR)")
    con.execute(
        "CREATE TABLE p.d.sessions_changes (session_key VARCHAR, events BIGINT, changed_at TIMESTAMP)"
    )
    con.execute("INSERT INTO p.d.events VALUES ('e1', DATE '2026-11-01', 'u1')")
    con.execute("CREATE TEMP TABLE replay_events AS SELECT * FROM p.d.events LIMIT 0")
    con.execute(
        "INSERT INTO replay_events VALUES ('e1', DATE '2026-11-01', 'u1'), ('e2', DATE '2026-11-01', 'u1')"
    )
    con.execute("CREATE TEMP TABLE replay_sessions AS SELECT * FROM p.d.sessions_changes LIMIT 0")
    con.execute("INSERT INTO replay_sessions VALUES ('s2', 1, TIMESTAMP '2026-11-01 00:00:00')")
    staged = {"events": ["gs://s/e.json"], "sessions": ["gs://s/s.json"]}
    statements = bq.replay_statements("p", "d", "replay:2", staged, Replay())
    for sql in statements:
        if sql.startswith("INSERT INTO `p.d.events`"):
            _in_duckdb(
                con,
                sql.replace(
                    "(" + ", ".join(c.name for c in TABLES["events"].columns) + ")",
                    "(event_id, event_date, user_key)",
                ).replace(
                    "SELECT " + ", ".join(c.name for c in TABLES["events"].columns),
                    "SELECT event_id, event_date, user_key",
                ),
            )
        elif sql.startswith("INSERT INTO `p.d.sessions_changes`"):
            names = ", ".join(c.name for c in TABLES["sessions"].columns) + ", changed_at"
            _in_duckdb(con, sql.replace(names, "session_key, events, changed_at"))
    assert con.execute("SELECT event_id FROM p.d.events ORDER BY 1").fetchall() == [("e1",), ("e2",)]
    assert con.execute("SELECT session_key FROM p.d.sessions_changes").fetchall() == [("s2",)]
    # The script: loads first, then one guarded transaction that records its key and reports its counts.
    assert statements[1].startswith("LOAD DATA INTO TEMP TABLE replay_events (event_id STRING")
    assert "FROM FILES (format = 'NEWLINE_DELIMITED_JSON', uris = ['gs://s/e.json'])" in statements[1]
    assert "STRUCT<" in statements[1] and "ARRAY<" in statements[1]
    begin = statements.index("BEGIN TRANSACTION")
    assert statements[begin + 1].startswith(
        "IF EXISTS (SELECT 1 FROM `p.d._dataflow_batches` WHERE batch_key = 'replay:2')"
    )
    assert (
        statements[-3].startswith("INSERT INTO `p.d._dataflow_batches`")
        and statements[-2] == "COMMIT TRANSACTION"
    )
    assert statements[-1].startswith("SELECT events_stored, events_in - events_stored AS duplicates_at_load")
    with pytest.raises(ValueError, match="unknown tables"):
        bq.replay_statements("p", "d", "k", {"nope": ["gs://x"]}, Replay())


def test_a_rerun_reads_what_the_view_shows():
    import sqlglot

    from pipeline_code.core.ports import Replay

    sql = bq.rerun_select_sql("p", "d", Replay(rerun_before_us=5, stage="validate", since_us=1))
    assert type(sqlglot.parse_one(sql, read="bigquery")).__name__ == "Select"
    assert "FROM `p.d.dead_letters` WHERE dead_lettered_at <= TIMESTAMP_MICROS(5)" in sql
    assert "failed_stage = 'validate'" in sql and "dead_lettered_at >= TIMESTAMP_MICROS(1)" in sql
    assert bq._literal("it's") == "'it\\'s'"
