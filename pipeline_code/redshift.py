"""The logical tables rendered for Redshift, from ``pipeline_code.tables``.

Two things come from here, both from the one table description:

- ``ddl(table)``: ``CREATE TABLE IF NOT EXISTS`` with Redshift types (lists
  and records as ``SUPER``), the key as an informational primary key,
  ``DISTKEY`` on the shard key (``user_key`` where there is one, so a
  user's rows sit together) and the partition column first in the sort key;
- ``merge_statements(...)``: the SQL that loads one micro-batch's staged
  Parquet files and merges it into every table by the table's ``merge``
  rule, the same rule the DuckDB warehouse applies. The Glue job sends the
  statements to the Redshift Data API as one ``BatchExecuteStatement``,
  which runs them in one transaction; every statement is guarded by the
  batch's key in ``_dataflow_batches``, so a micro-batch replayed after a
  failure (Spark re-runs the batch from its checkpoint) changes nothing.

``python -m pipeline_code.redshift`` prints the DDL.
"""

from __future__ import annotations

from pipeline_code.tables import TABLES, Column, Table

BATCHES = "_dataflow_batches"
BATCHES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {BATCHES} ("
    "batch_key VARCHAR(512) NOT NULL, committed_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (batch_key))"
)
VARBYTE_MAX = 1_024_000

_TYPES = {
    "STRING": "VARCHAR(65535)",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE PRECISION",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATE": "DATE",
    "BYTES": f"VARBYTE({VARBYTE_MAX})",
}


def column_type(col: Column) -> str:
    if col.mode == "REPEATED" or col.type == "RECORD":
        return "SUPER"
    return _TYPES[col.type]


def ddl(table: Table) -> str:
    cols = [f"{c.name} {column_type(c)}{' NOT NULL' if c.mode == 'REQUIRED' else ''}" for c in table.columns]
    cols.append(f"PRIMARY KEY ({', '.join(table.key)})")
    names = table.column_names()
    dist = "user_key" if "user_key" in names else table.key[0]
    sort = [c for c in (table.partition_by, *table.cluster_by, *table.key) if c]
    sort = [
        c for i, c in enumerate(sort) if c not in sort[:i] and column_type(table_column(table, c)) != "SUPER"
    ]
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name} (\n  "
        + ",\n  ".join(cols)
        + f"\n) DISTSTYLE KEY DISTKEY ({dist}) COMPOUND SORTKEY ({', '.join(sort)})"
    )


def table_column(table: Table, name: str) -> Column:
    return next(c for c in table.columns if c.name == name)


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _guard(batch_key: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM {BATCHES} WHERE batch_key = {sql_string(batch_key)})"


def _stage(table: Table) -> str:
    return f"stage_{table.name}"


def _copy(table: Table, prefix: str, iam_role: str) -> list[str]:
    role = "default" if iam_role == "default" else sql_string(iam_role)
    return [
        f"CREATE TEMP TABLE {_stage(table)} (LIKE {table.name})",
        # SERIALIZETOJSON loads Parquet lists and structs into SUPER columns.
        f"COPY {_stage(table)} FROM {sql_string(prefix)} IAM_ROLE {role} FORMAT AS PARQUET SERIALIZETOJSON",
    ]


def _add_merge(table: Table, guard: str) -> str:
    """Pre-aggregate the batch by key, then fold into stored rows."""
    keys = list(table.key)
    part = ", ".join(keys)
    order = next((c.name for c in table.columns if c.combine == "max"), None)
    picks, updates = [], []
    for c in table.columns:
        if c.name in keys:
            picks.append(c.name)
            continue
        if c.combine in ("sum", "min", "max"):
            fn = {"sum": "SUM", "min": "MIN", "max": "MAX"}[c.combine]
            expr = f"{fn}({c.name}) OVER (PARTITION BY {part})"
            if c.combine == "sum" and c.decimals is not None:
                expr = f"ROUND({expr}, {c.decimals})"
            picks.append(f"{expr} AS {c.name}")
            merged = {
                "sum": f"{table.name}.{c.name} + s.{c.name}",
                "min": f"LEAST({table.name}.{c.name}, s.{c.name})",
                "max": f"GREATEST({table.name}.{c.name}, s.{c.name})",
            }[c.combine]
            if c.combine == "sum" and c.decimals is not None:
                merged = f"ROUND({merged}, {c.decimals})"
            updates.append(f"{c.name} = {merged}")
        else:
            ordering = f"ORDER BY {order} " if order else "ORDER BY 1 "
            picks.append(
                f"LAST_VALUE({c.name} IGNORE NULLS) OVER (PARTITION BY {part} {ordering}"
                f"ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS {c.name}"
            )
            updates.append(f"{c.name} = COALESCE(s.{c.name}, {table.name}.{c.name})")
    cols = table.column_names()
    source = (
        f"SELECT {', '.join(picks)}, ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {keys[0]}) AS _n "
        f"FROM {_stage(table)} WHERE {guard}"
    )
    on = " AND ".join(f"{table.name}.{k} = s.{k}" for k in keys)
    return (
        f"MERGE INTO {table.name} USING (SELECT {', '.join(cols)} FROM ({source}) WHERE _n = 1) AS s "
        f"ON {on} WHEN MATCHED THEN UPDATE SET {', '.join(updates)} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('s.' + c for c in cols)})"
    )


def merge_sql(table: Table, guard: str) -> list[str]:
    """The statements that merge ``stage_<table>`` into ``table``."""
    cols = ", ".join(table.column_names())
    stage = _stage(table)
    if table.merge == "insert_new":
        key = table.key[0]
        order = "source_offset" if "source_offset" in table.column_names() else key
        return [
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} s WHERE {guard} "
            f"AND NOT EXISTS (SELECT 1 FROM {table.name} t WHERE t.{key} = s.{key}) "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY s.{key} ORDER BY s.{order}) = 1"
        ]
    if table.merge == "append":
        return [f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} WHERE {guard}"]
    if table.merge == "replace":
        on = " AND ".join(f"{table.name}.{k} = s.{k}" for k in table.key)
        return [
            f"DELETE FROM {table.name} USING {stage} s WHERE {on} AND {guard}",
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} WHERE {guard}",
        ]
    return [_add_merge(table, guard)]


def merge_statements(batch_key: str, staged: dict[str, str], iam_role: str = "default") -> list[str]:
    """One micro-batch's transaction: load each table's staged Parquet
    prefix (``{table: s3://.../}``), merge, and record the batch."""
    unknown = set(staged) - set(TABLES)
    if unknown:
        raise ValueError(f"staged files for unknown tables: {sorted(unknown)}")
    guard = _guard(batch_key)
    statements: list[str] = []
    for name, table in TABLES.items():
        if name in staged:
            statements += _copy(table, staged[name], iam_role)
            statements += merge_sql(table, guard)
    statements.append(f"INSERT INTO {BATCHES} SELECT {sql_string(batch_key)}, GETDATE() WHERE {guard}")
    return statements


def all_ddl() -> list[str]:
    return [ddl(t) for t in TABLES.values()] + [BATCHES_DDL]


if __name__ == "__main__":
    print(";\n\n".join(all_ddl()) + ";")
