"""The DuckDB warehouse: merge rules and the atomic, checkpointed load."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_code.tables import TABLES, arrow_schema, duckdb_ddl
from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError


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


def test_a_moved_checkpoint_refuses_the_load_and_stores_nothing(tmp_path):
    with Warehouse(tmp_path / "w.duckdb") as wh:
        f = stage(tmp_path, "item_cooccurrence", [cooc("a", "b", 1)], "1")
        wh.load({"item_cooccurrence": [f]}, "log", 0, 10)
        with pytest.raises(WarehouseError, match="another run"):
            wh.load({"item_cooccurrence": [f]}, "log", 0, 10)
        assert wh.con.execute("SELECT sum(sessions) FROM item_cooccurrence").fetchone()[0] == 1
        assert wh.checkpoint("log") == 10


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(WarehouseError, match="cannot be opened"):
        Warehouse(bad)
    with pytest.raises(WarehouseError, match="does not exist"):
        Warehouse(tmp_path / "missing.duckdb", read_only=True)
