"""Redshift: the DDL and per-batch merge rendered from the table description."""

from __future__ import annotations

import pytest
import sqlglot

from pipeline_code.tables import TABLES
from pipeline_code.warehouses import redshift


def test_redshift_ddl_and_merge_sql_parse_in_the_redshift_dialect():
    statements = [
        *redshift.all_ddl(),
        *redshift.merge_statements("job:7", {t: f"s3://b/staging/7/{t}/" for t in TABLES}, "default"),
    ]
    for sql in statements:
        for tree in sqlglot.parse(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE):
            assert type(tree).__name__ != "Command", f"not parsed, only passed through: {sql[:80]}"
    assert sum(s.startswith("COPY ") for s in statements) == len(TABLES)


def test_every_merge_is_guarded_by_the_batch_key_and_the_batch_is_recorded_last():
    statements = redshift.merge_statements("job:7", {"events": "s3://b/e/", "sessions": "s3://b/s/"})
    guard = "NOT EXISTS (SELECT 1 FROM _dataflow_batches WHERE batch_key = 'job:7')"
    changes = [s for s in statements if s.startswith(("INSERT", "MERGE", "DELETE"))]
    assert len(changes) == 3 and all(guard in s for s in changes)
    assert statements[-1].startswith("INSERT INTO _dataflow_batches")
    with pytest.raises(ValueError, match="unknown tables: \\['evnts'\\]"):
        redshift.merge_statements("k", {"evnts": "s3://b/"})


def test_redshift_ddl_follows_the_table_description():
    events = redshift.ddl(TABLES["events"])
    assert "items SUPER" in events and "event_id VARCHAR(65535) NOT NULL" in events
    assert "DISTKEY (user_key)" in events and "SORTKEY (event_date, event_name, user_key, event_id)" in events
    assert "payload VARBYTE(1024000) NOT NULL" in redshift.ddl(TABLES["dead_letters"])


def _run_in_duckdb(con, statements: list[str]) -> None:
    """The merge statements' meaning, run in DuckDB: Redshift's SQL as sqlglot
    transpiles it (COPY and the temp table are the test's own staging)."""
    for sql in statements:
        if sql.startswith(("COPY ", "CREATE TEMP TABLE")):
            continue
        con.execute(sqlglot.transpile(sql, read="redshift", write="duckdb")[0])


def _dead_letter(offset: int, payload: bytes, reason: str, at_us: int, stage: str = "parse") -> tuple:
    import datetime as dt

    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=at_us)
    return (payload, None, reason, stage, at, at, None, offset)


def test_a_replay_keeps_one_dead_letter_per_arrival_and_bytes_and_a_rerun_replaces_its_rows():
    import duckdb

    from pipeline_code.tables import duckdb_ddl

    con = duckdb.connect()
    con.execute(duckdb_ddl(TABLES["dead_letters"]))
    con.execute("CREATE TABLE stage_dead_letters AS SELECT * FROM dead_letters LIMIT 0")
    con.execute(redshift.BATCHES_DDL.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"))
    insert = "INSERT INTO {} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    # Stored: two inputs that share an offset (a Kinesis collision), and a validate failure.
    for row in (_dead_letter(7, b"a", "bad a", 1_000), _dead_letter(7, b"b", "bad b", 1_000),
                _dead_letter(9, b"c", "old reason", 2_000, "validate")):  # fmt: skip
        con.execute(insert.format("dead_letters"), row)

    def replay(key: str, staged: list[tuple], r: redshift.Replay) -> list[tuple]:
        con.execute("DELETE FROM stage_dead_letters")
        for row in staged:
            con.execute(insert.format("stage_dead_letters"), row)
        _run_in_duckdb(con, redshift.merge_statements(key, {"dead_letters": "s3://b/"}, replay=r))
        return con.execute(
            "SELECT source_offset, payload, error_message FROM dead_letters ORDER BY 1, 2"
        ).fetchall()

    # An archive range replayed: the same inputs fail again; one new input shares offset 7.
    rows = replay("replay:1", [_dead_letter(7, b"a", "bad a", 5_000), _dead_letter(7, b"z", "new", 5_000)],
                  redshift.Replay())  # fmt: skip
    assert rows == [(7, b"a", "bad a"), (7, b"b", "bad b"), (7, b"z", "new"), (9, b"c", "old reason")]
    # The same replay committed again changes nothing (its batch key guards it).
    assert replay("replay:1", [_dead_letter(7, b"q", "q", 5_000)], redshift.Replay()) == rows
    # Dead letters of stage validate re-run after a fix: the one that still fails keeps one row,
    # with its new reason; the others are untouched.
    rerun = redshift.Replay(rerun_before_us=3_000, stage="validate")
    rows = replay("replay:2", [_dead_letter(9, b"c", "new reason", 6_000, "validate")], rerun)
    assert rows == [(7, b"a", "bad a"), (7, b"b", "bad b"), (7, b"z", "new"), (9, b"c", "new reason")]
    # A re-run where everything now passes stages no dead letters and still removes them.
    _run_in_duckdb(
        con,
        redshift.merge_statements(
            "replay:3", {}, replay=redshift.Replay(rerun_before_us=10_000, stage="validate")
        ),
    )
    assert con.execute("SELECT count(*) FROM dead_letters WHERE failed_stage = 'validate'").fetchone() == (0,)


def test_a_rerun_reads_exactly_the_dead_letters_it_later_removes_with_their_bytes():
    import duckdb

    from pipeline_code.core.parse import RawEvent
    from pipeline_code.tables import duckdb_ddl

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(duckdb_ddl(TABLES["dead_letters"]))
    stored = [
        _dead_letter(5, b"\x00\xffnot json", "bad", 1_000, "parse"),
        _dead_letter(7, b'{"event":"x"}', "bad x", 2_000_000, "validate"),
        _dead_letter(9, b'{"event":"y"}', "bad y", 9_000_000, "validate"),  # after the snapshot
        _dead_letter(3, b'{"event":"z"}', "bad z", 500, "validate"),  # before --since
    ]
    for row in stored:
        con.execute("INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    rerun = redshift.Replay(rerun_before_us=5_000_000, stage="validate", since_us=1_000)
    select = redshift.rerun_select_sql(rerun)
    assert sqlglot.parse_one(select, read="redshift") is not None
    rows = con.execute(sqlglot.transpile(select, read="redshift", write="duckdb")[0]).fetchall()
    taken = [RawEvent(int(o), int(r), bytes.fromhex(h)) for o, r, h in rows]
    assert taken == [RawEvent(7, 2_000_000, b'{"event":"x"}')]
    # Without a stage, the parse failure's bytes come back exactly as stored.
    rows = con.execute(
        sqlglot.transpile(
            redshift.rerun_select_sql(redshift.Replay(rerun_before_us=5_000_000)),
            read="redshift",
            write="duckdb",
        )[0]
    ).fetchall()
    assert [(o, r, bytes.fromhex(h)) for o, r, h in rows] == [
        (3, 500, b'{"event":"z"}'), (5, 1_000, b"\x00\xffnot json"), (7, 2_000_000, b'{"event":"x"}')
    ]  # fmt: skip
    # The delete removes the same rows the select read.
    con.execute(
        sqlglot.transpile(redshift.rerun_delete_sql(rerun, "TRUE"), read="redshift", write="duckdb")[0]
    )
    assert sorted(r[0] for r in con.execute("SELECT source_offset FROM dead_letters").fetchall()) == [3, 5, 9]
    with pytest.raises(ValueError, match="rerun_before_us"):
        redshift.rerun_select_sql(redshift.Replay())
