"""The DuckDB warehouse: merge rules and the atomic, checkpointed load."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_code.contract import EVENT_NAMES
from pipeline_code.core.history import enrich_shard
from pipeline_code.core.parse import RawEvent, parse_batch
from pipeline_code.tables import TABLES, arrow_schema, arrow_table, as_arrow, duckdb_ddl
from pipeline_code.warehouses.duckdb import ROW_GROUP_ROWS, Warehouse, WarehouseError
from tests.conftest import line


def stage(tmp_path, table: str, rows: list[dict], name: str) -> str:
    path = tmp_path / f"{table}-{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(TABLES[table])), path)
    return str(path)


def cooc(a, b, n):
    return {"item_id": a, "other_item_id": b, "sessions": n}


def test_every_table_has_ddl_and_an_arrow_schema():
    for table in TABLES.values():
        assert table.name in duckdb_ddl(table)
        assert arrow_schema(table).names == table.column_names()
        assert set(table.key) <= set(table.column_names())


def test_arrow_table_is_what_from_pylist_gives(hostile_lines):
    """The staging conversion, on the rows a run stages: enriched events
    (with the features step's own key beside the columns), dead letters
    (nulls in optional columns), user features, and no rows at all."""
    good = [line(event_id=f"e{i}", user_id=f"u{i % 2}", event_name=n) for i, n in enumerate(EVENT_NAMES)]
    raws = [RawEvent(i, 1_767_225_600_000_000, p) for i, p in enumerate([*good, *hostile_lines])]
    records, dead = parse_batch(raws)
    enriched, users = enrich_shard(records, {})
    cases = {
        "events": enriched,
        "dead_letters": dead,
        "user_features": [u.to_row() for u in users],
        "item_cooccurrence": [],
    }
    for name, rows in cases.items():
        expected = pa.Table.from_pylist(rows, schema=arrow_schema(TABLES[name]))
        got = arrow_table(TABLES[name], rows)
        assert got.schema == expected.schema and got.equals(expected), name
    # A row without a required value is refused, by column name (from_pylist would stage the null).
    with pytest.raises(ValueError, match="field 'started_at' with null values"):
        arrow_table(TABLES["sessions"], [{"session_key": "s", "user_key": "u"}])


def test_a_sink_stages_an_arrow_table_as_it_stages_its_rows(hostile_lines):
    """``as_arrow``, what every sink's ``stage`` converts with: an Arrow table
    in another column order, with timestamps as microseconds and a column
    the table does not have, gives what the same rows as dicts give."""
    good = [line(event_id=f"e{i}", user_id=f"u{i % 2}", event_name=n) for i, n in enumerate(EVENT_NAMES)]
    raws = [RawEvent(i, 1_767_225_600_000_000, p) for i, p in enumerate([*good, *hostile_lines])]
    records, dead = parse_batch(raws)
    enriched, users = enrich_shard(records, {})
    for name, rows in {
        "events": enriched,
        "dead_letters": dead,
        "user_features": [u.to_row() for u in users],
    }.items():
        expected = arrow_table(TABLES[name], rows)
        cols = list(reversed(TABLES[name].column_names()))
        loose = pa.table(
            {
                c: expected[c].cast("int64") if expected[c].type == pa.timestamp("us", "UTC") else expected[c]
                for c in cols
            }
        )
        loose = loose.append_column("extra", pa.array([1] * loose.num_rows))
        assert as_arrow(TABLES[name], loose).equals(expected), name
        assert as_arrow(TABLES[name], rows).equals(expected), name


def test_additive_tables_sum_partials_within_and_across_loads(tmp_path):
    with Warehouse(tmp_path / "w.duckdb") as wh:
        f1 = stage(tmp_path, "item_cooccurrence", [cooc("a", "b", 1), cooc("a", "b", 2)], "1")
        wh.load({"item_cooccurrence": [f1]}, "log", 0, 10)
        f2 = stage(tmp_path, "item_cooccurrence", [cooc("a", "b", 4), cooc("b", "a", 1)], "2")
        wh.load({"item_cooccurrence": [f2]}, "log", 10, 20)
        rows = wh.con.execute(
            "SELECT item_id, other_item_id, sessions FROM item_cooccurrence ORDER BY 1"
        ).fetchall()
        assert rows == [("a", "b", 7), ("b", "a", 1)]
        assert wh.checkpoint("log") == 20


def _history(user_key: str, events: int) -> dict:
    row = {c: None for c in TABLES["user_features"].column_names()}
    row.update(user_key=user_key, first_seen_at=1, last_seen_at=2, lifetime_events=events)
    row.update(
        lifetime_purchases=0, lifetime_revenue=0.0, recent_items=[], last_session_items=[], is_bot=False
    )
    return row


def test_only_events_has_a_key_index(tmp_path):
    """DuckDB holds a key's ART index in memory to merge into its table, so
    the committing process would grow with the warehouse: the other tables
    merge by ``MERGE INTO`` against one staged row per key, with no index."""
    with Warehouse(tmp_path / "w.duckdb") as wh:
        keyed = wh.con.execute(
            "SELECT DISTINCT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
            "AND table_name IN (SELECT unnest(?::VARCHAR[]))",
            [list(TABLES)],
        ).fetchall()
    assert keyed == [("events",)]


def test_a_replaced_row_replaces_and_a_key_staged_twice_stores_nothing(tmp_path):
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load({"user_features": [stage(tmp_path, "user_features", [_history("u1", 1)], "1")]}, "log", 0, 10)
        f2 = stage(tmp_path, "user_features", [_history("u1", 5), _history("u2", 1)], "2")
        wh.load({"user_features": [f2]}, "log", 10, 20)
        stored = "SELECT user_key, lifetime_events FROM user_features ORDER BY 1"
        assert wh.con.execute(stored).fetchall() == [("u1", 5), ("u2", 1)]
        twice = stage(tmp_path, "user_features", [_history("u3", 1), _history("u3", 2)], "3")
        with pytest.raises(
            WarehouseError, match="staged user_features rows hold user_key 'u3' more than once"
        ):
            wh.load({"user_features": [twice]}, "log", 20, 30)
        assert wh.con.execute(stored).fetchall() == [("u1", 5), ("u2", 1)]
        assert wh.checkpoint("log") == 20


def test_a_warehouse_made_with_key_constraints_merges_as_before(tmp_path):
    """Warehouses created before the feature tables lost their primary keys keep them; merges still add up."""
    import duckdb

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            duckdb_ddl(TABLES["item_cooccurrence"]).replace(
                "\n)", ",\n  PRIMARY KEY (item_id, other_item_id)\n)"
            )
        )
    with Warehouse(path) as wh:
        for i, rows in enumerate([[cooc("a", "b", 1)], [cooc("a", "b", 2), cooc("b", "a", 1)]]):
            wh.load(
                {"item_cooccurrence": [stage(tmp_path, "item_cooccurrence", rows, str(i))]}, "log", i, i + 1
            )
        got = wh.con.execute(
            "SELECT item_id, other_item_id, sessions FROM item_cooccurrence ORDER BY 1"
        ).fetchall()
        assert got == [("a", "b", 3), ("b", "a", 1)]
        assert wh.con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'item_cooccurrence' "
            "AND constraint_type = 'PRIMARY KEY'"
        ).fetchone() == (1,)


def test_a_moved_checkpoint_refuses_the_load_and_stores_nothing(tmp_path):
    with Warehouse(tmp_path / "w.duckdb") as wh:
        f = stage(tmp_path, "item_cooccurrence", [cooc("a", "b", 1)], "1")
        wh.load({"item_cooccurrence": [f]}, "log", 0, 10)
        with pytest.raises(WarehouseError, match="another run"):
            wh.load({"item_cooccurrence": [f]}, "log", 0, 10)
        assert wh.con.execute("SELECT sum(sessions) FROM item_cooccurrence").fetchone()[0] == 1
        assert wh.checkpoint("log") == 10


def test_events_stored_before_are_skipped_at_load_and_counted(tmp_path):
    """Events load as new; one whose id is stored after all (or is staged
    twice) makes the load start again skipping present keys: the first copy
    in log order stays, the rest count as duplicates at load."""
    raws = [RawEvent(i, 1_767_225_600_000_000, line(event_id=f"e{i % 3}", user_id="u")) for i in range(5)]
    enriched, _ = enrich_shard(parse_batch(raws)[0], {})
    first = stage(tmp_path, "events", enriched[:2], "1")
    again = stage(tmp_path, "events", enriched[1:], "2")
    with Warehouse(tmp_path / "w.duckdb") as wh:
        assert wh.load({"events": [first]}, "log", 0, 10).events_stored == 2
        result = wh.load({"events": [again]}, "log", 10, 20)
        assert (result.events_stored, result.duplicates_at_load) == (1, 3)
        rows = wh.con.execute("SELECT event_id, source_offset FROM events ORDER BY 1").fetchall()
        assert rows == [("e0", 0), ("e1", 1), ("e2", 2)] and wh.checkpoint("log") == 20


def test_a_writer_stores_rows_in_row_groups_it_fills_as_it_inserts(tmp_path):
    """Whoever writes (a path with a quote in it too) stores ``ROW_GROUP_ROWS``
    rows per row group, the option each writer sets (the file does not keep it)."""
    import duckdb

    path = tmp_path / "it's" / "w.duckdb"
    for _ in range(2):  # created, then opened again
        with Warehouse(path) as wh:
            wh.con.execute(
                "INSERT INTO dead_letters (payload, error_message, failed_stage, received_at, "
                "dead_lettered_at, source_offset) SELECT 'x', 'e', 'parse', now(), now(), range "
                f"FROM range({ROW_GROUP_ROWS + 10})"
            )
    with duckdb.connect(str(path), read_only=True) as con:
        groups = con.execute(
            "SELECT row_group_id, sum(count) FROM pragma_storage_info('dead_letters') "
            "WHERE column_name = 'source_offset' AND segment_type <> 'VALIDITY' GROUP BY ALL ORDER BY 1"
        ).fetchall()
    assert [rows for _, rows in groups] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 20]


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(WarehouseError, match="cannot be opened"):
        Warehouse(bad)
    with pytest.raises(WarehouseError, match="does not exist"):
        Warehouse(tmp_path / "missing.duckdb", read_only=True)


def _event_files(tmp_path, n: int, per_file: int, prefix: str = "e") -> list[str]:
    """``n`` enriched events staged ``per_file`` to a file, ids ``prefix`` + number."""
    lines = [line(event_id=f"{prefix}{i}", user_id=f"u{i % 3}") for i in range(n)]
    enriched, _ = enrich_shard(
        parse_batch([RawEvent(i, 1_767_225_600_000_000, p) for i, p in enumerate(lines)])[0], {}
    )
    enriched.sort(key=lambda r: r["source_offset"])
    return [
        stage(tmp_path, "events", enriched[i : i + per_file], f"{prefix}{i}") for i in range(0, n, per_file)
    ]


def test_a_streamed_load_stores_what_a_load_stores_and_nothing_before_it_ends(tmp_path):
    """Events added while the rest is staged are in the load's transaction:
    another connection sees none until ``finish``, which commits them with
    the rest and the checkpoint, and counts them as ``load`` does."""
    files = _event_files(tmp_path, 12, 4)
    cooc_file = stage(tmp_path, "item_cooccurrence", [cooc("a", "b", 2)], "c")
    staged = {"events": files, "item_cooccurrence": [cooc_file]}
    with Warehouse(tmp_path / "plain.duckdb") as wh:
        plain = wh.load(staged, "log", 0, 10, None)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        load = wh.begin_load()
        load.add("events", files[:2])
        with wh.cursor() as other:
            assert other.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
            assert other.checkpoint("log") == 0
        result = load.finish(staged, "log", 0, 10, None)
        assert result == plain and result.events_stored == 12
        assert wh.con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (12, 12)
        assert wh.checkpoint("log") == 10


def test_a_streamed_load_aborted_stores_nothing(tmp_path):
    files = _event_files(tmp_path, 6, 3)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        load = wh.begin_load()
        load.add("events", files)
        load.abort()
        assert wh.con.execute("SELECT count(*) FROM events").fetchone()[0] == 0 and wh.checkpoint("log") == 0
        # The connection is free for the next load.
        assert wh.load({"events": files}, "log", 0, 10).events_stored == 6


def test_a_streamed_load_meeting_a_stored_key_loads_again_skipping_it(tmp_path):
    """An added file with an id stored before: the load starts again at
    ``finish``, skipping present keys, as ``load`` would; so does one with
    an added file that ``finish`` is not given: only what it is given is stored."""
    files = _event_files(tmp_path, 6, 3)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load({"events": files[:1]}, "log", 0, 10)
        load = wh.begin_load()
        load.add("events", files)  # the first file's ids are stored: the insert fails
        result = load.finish({"events": files}, "log", 10, 20, None)
        assert (result.events_stored, result.duplicates_at_load) == (3, 3)
        stray = wh.begin_load()
        stray.add("events", _event_files(tmp_path, 3, 3, prefix="x"))
        result = stray.finish({}, "log", 20, 30, None)
        assert result.events_stored == 0 and wh.con.execute("SELECT count(*) FROM events").fetchone()[0] == 6
