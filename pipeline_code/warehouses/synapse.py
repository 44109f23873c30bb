"""The logical tables rendered for a Synapse dedicated SQL pool (T-SQL).

Like ``pipeline_code.warehouses.redshift``, from the one table description:

- ``ddl(table)``: ``CREATE TABLE`` if the table does not exist, hash
  distributed on ``user_key`` (or the key), clustered columnstore unless a
  column is ``MAX`` (then a heap). Lists and records are JSON text;
- ``stage_schema`` / ``stage_rows``: what the Spark job writes to the lake
  for ``COPY INTO`` (which cannot load Parquet lists or structs, so those
  columns are staged as JSON text);
- ``batch_statements``: load each staged table into ``_stage_<table>_<batch>``,
  then one transaction that merges every table by its rule, guarded by the
  batch's key in ``_dataflow_batches`` so a replayed micro-batch changes
  nothing, then drop the staging tables.

``python -m pipeline_code.warehouses.synapse`` prints the DDL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import uuid
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import USER_FEATURES, Replay, history_row
from pipeline_code.tables import TABLES, Column, Table, arrow_schema, conform

SCHEMA = "dbo"
BATCHES = "_dataflow_batches"
_LONG_TEXT = {"error_message", "payload_text", "page_url", "page_referrer", "user_agent"}
_TYPES = {
    "INT64": "BIGINT",
    "FLOAT64": "FLOAT",
    "BOOL": "BIT",
    "TIMESTAMP": "DATETIME2(6)",
    "DATE": "DATE",
    "BYTES": "VARBINARY(MAX)",
}


def is_json(col: Column) -> bool:
    return col.mode == "REPEATED" or col.type == "RECORD"


def column_type(col: Column) -> str:
    if is_json(col) or col.name in _LONG_TEXT:
        return "NVARCHAR(MAX)"
    if col.type == "STRING":
        return "NVARCHAR(512)"
    return _TYPES[col.type]


def _name(table: str) -> str:
    return f"{SCHEMA}.{table}"


def ddl(table: Table) -> str:
    cols = ",\n  ".join(
        f"{c.name} {column_type(c)} {'NOT NULL' if c.mode == 'REQUIRED' else 'NULL'}" for c in table.columns
    )
    dist = "user_key" if "user_key" in table.column_names() else table.key[0]
    has_max = any(column_type(c).endswith("(MAX)") for c in table.columns)
    index = "HEAP" if has_max else "CLUSTERED COLUMNSTORE INDEX"
    return (
        f"IF OBJECT_ID('{_name(table.name)}') IS NULL\nCREATE TABLE {_name(table.name)} (\n  {cols}\n) "
        f"WITH (DISTRIBUTION = HASH({dist}), {index})"
    )


BATCHES_DDL = (
    f"IF OBJECT_ID('{_name(BATCHES)}') IS NULL\nCREATE TABLE {_name(BATCHES)} "
    "(batch_key NVARCHAR(512) NOT NULL, committed_at DATETIME2(6) NOT NULL) "
    "WITH (DISTRIBUTION = ROUND_ROBIN, CLUSTERED COLUMNSTORE INDEX)"
)


def all_ddl() -> list[str]:
    return [ddl(t) for t in TABLES.values()] + [BATCHES_DDL]


def stage_schema(table: Table) -> pa.Schema:
    """The staged Parquet schema: the table's, with JSON text for nested columns."""
    fields = []
    for f, c in zip(arrow_schema(table), table.columns, strict=True):
        fields.append(pa.field(c.name, pa.string(), c.mode != "REQUIRED") if is_json(c) else f)
    return pa.schema(fields)


def _json_text(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def stage_rows(table: Table, rows: list[dict[str, Any]] | pa.Table) -> pa.Table:
    """Rows (dicts, or an Arrow table with the table's columns) as the staged
    table (``stage_schema``): nested columns become the same JSON text either way."""
    nested = [c.name for c in table.columns if is_json(c)]
    if isinstance(rows, pa.Table):
        staged = conform(table, rows)
        for name in nested:
            i = staged.schema.get_field_index(name)
            text = pa.array([_json_text(v) for v in staged[name].to_pylist()], pa.string())
            staged = staged.set_column(i, name, text)
        return staged.cast(stage_schema(table))
    out = []
    for row in rows:
        row = dict(row)
        for name in nested:
            if row.get(name) is not None:
                row[name] = _json_text(row[name])
        out.append(row)
    return pa.Table.from_pylist(out, schema=stage_schema(table))


def sql_string(value: str) -> str:
    return "N'" + value.replace("'", "''") + "'"


def _stage(table: Table, batch_key: str) -> str:
    return _name(f"_stage_{table.name}_{hashlib.sha1(batch_key.encode()).hexdigest()[:12]}")


def _guard(batch_key: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM {_name(BATCHES)} WHERE batch_key = {sql_string(batch_key)})"


def _load(table: Table, stage: str, location: str) -> list[str]:
    return [
        f"IF OBJECT_ID('{stage}') IS NOT NULL DROP TABLE {stage}",
        f"CREATE TABLE {stage} WITH (DISTRIBUTION = ROUND_ROBIN, HEAP) "
        f"AS SELECT * FROM {_name(table.name)} WHERE 1 = 0",
        f"COPY INTO {stage} FROM {sql_string(location)} "
        "WITH (FILE_TYPE = 'PARQUET', CREDENTIAL = (IDENTITY = 'Managed Identity'))",
    ]


def _add_merge(table: Table, stage: str, guard: str) -> str:
    keys = list(table.key)
    part = ", ".join(keys)
    order = next((c.name for c in table.columns if c.combine == "max"), keys[0])
    picks, updates = [], []
    for c in table.columns:
        if c.name in keys:
            picks.append(c.name)
        elif c.combine in ("sum", "min", "max"):
            fn = c.combine.upper()
            expr = f"{fn}({c.name}) OVER (PARTITION BY {part})"
            merged = {
                "sum": f"t.{c.name} + s.{c.name}",
                "min": f"CASE WHEN s.{c.name} < t.{c.name} THEN s.{c.name} ELSE t.{c.name} END",
                "max": f"CASE WHEN s.{c.name} > t.{c.name} THEN s.{c.name} ELSE t.{c.name} END",
            }[c.combine]
            if c.combine == "sum" and c.decimals is not None:
                expr, merged = f"ROUND({expr}, {c.decimals})", f"ROUND({merged}, {c.decimals})"
            if c.type == "BOOL" and c.combine == "max":
                # BIT has no MAX: compare as integers.
                expr = f"CAST(MAX(CAST({c.name} AS INT)) OVER (PARTITION BY {part}) AS BIT)"
            picks.append(f"{expr} AS {c.name}")
            updates.append(f"{c.name} = {merged}")
        else:
            # The newest non-null value: nulls sort last, then newest first.
            picks.append(
                f"FIRST_VALUE({c.name}) OVER (PARTITION BY {part} ORDER BY "
                f"CASE WHEN {c.name} IS NULL THEN 1 ELSE 0 END, {order} DESC "
                f"ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS {c.name}"
            )
            updates.append(f"{c.name} = COALESCE(s.{c.name}, t.{c.name})")
    cols = table.column_names()
    source = (
        f"SELECT {', '.join(picks)}, ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {keys[0]}) AS _n "
        f"FROM {stage} WHERE {guard}"
    )
    on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    return (
        f"MERGE INTO {_name(table.name)} AS t USING (SELECT {', '.join(cols)} FROM ({source}) AS p "
        f"WHERE _n = 1) AS s ON {on} WHEN MATCHED THEN UPDATE SET {', '.join(updates)} "
        f"WHEN NOT MATCHED BY TARGET THEN INSERT ({', '.join(cols)}) "
        f"VALUES ({', '.join('s.' + c for c in cols)});"
    )


def _merge(table: Table, stage: str, guard: str) -> list[str]:
    cols = ", ".join(table.column_names())
    target = _name(table.name)
    if table.merge == "insert_new":
        key = table.key[0]
        order = "source_offset" if "source_offset" in table.column_names() else key
        return [
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM (SELECT *, ROW_NUMBER() OVER "
            f"(PARTITION BY {key} ORDER BY {order}) AS _n FROM {stage}) AS s WHERE s._n = 1 AND {guard} "
            f"AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t.{key} = s.{key})"
        ]
    if table.merge == "append":
        return [f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} WHERE {guard}"]
    if table.merge == "replace":
        on = " AND ".join(f"s.{k} = {target}.{k}" for k in table.key)
        return [
            f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {stage} AS s WHERE {on}) AND {guard}",
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} WHERE {guard}",
        ]
    return [_add_merge(table, stage, guard)]


def _datetime(us: int) -> str:
    at = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)  # the pool stores UTC, naive
    return f"CAST('{at.isoformat(sep=' ')}' AS DATETIME2)"


def _rerun_where(replay: Replay) -> str:
    """The dead letters a re-run takes: dead-lettered at or before its
    snapshot, of its stage, since its ``since``."""
    if replay.rerun_before_us is None:
        raise ValueError("a dead-letter re-run needs rerun_before_us (its snapshot time)")
    where = [f"dead_lettered_at <= {_datetime(replay.rerun_before_us)}"]
    if replay.stage is not None:
        where.append(f"failed_stage = {sql_string(replay.stage)}")
    if replay.since_us is not None:
        where.append(f"dead_lettered_at >= {_datetime(replay.since_us)}")
    return " AND ".join(where)


def rerun_select_sql(replay: Replay) -> str:
    """The dead letters a re-run reads (the rows its commit later removes):
    offset, arrival in microseconds, the bytes."""
    return (
        "SELECT source_offset, DATEDIFF_BIG(microsecond, CAST('1970-01-01' AS DATETIME2), received_at) "
        f"AS received_us, payload FROM {_name('dead_letters')} WHERE {_rerun_where(replay)} "
        "ORDER BY source_offset"
    )


def replay_statements(replay: Replay, stage: str | None, guard: str) -> list[str]:
    """A replay's dead letters (see ``core.ports.Replay``): a re-run first
    removes the rows it re-ran; staged dead letters go in only where no row
    has the same arrival and bytes."""
    target = _name("dead_letters")
    out = []
    if replay.rerun_before_us is not None:
        out.append(f"DELETE FROM {target} WHERE {_rerun_where(replay)} AND {guard}")
    if stage is not None:
        cols = ", ".join(TABLES["dead_letters"].column_names())
        out.append(
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} AS s WHERE {guard} AND NOT EXISTS "
            f"(SELECT 1 FROM {target} AS t WHERE t.source_offset = s.source_offset AND t.payload = s.payload)"
        )
    return out


def batch_statements(
    batch_key: str, staged: dict[str, str], replay: Replay | None = None
) -> tuple[list[str], list[str], list[str]]:
    """``(load, transaction, cleanup)`` for one micro-batch; ``staged`` maps
    tables to the staged files' location (``https://ACCOUNT.dfs.core.windows.net/.../*.parquet``);
    with ``replay``, its dead letters as ``core.ports.Replay`` says."""
    unknown = set(staged) - set(TABLES)
    if unknown:
        raise ValueError(f"staged files for unknown tables: {sorted(unknown)}")
    guard = _guard(batch_key)
    load, merge, cleanup = [], [], []
    if replay is not None:
        # The re-run's delete comes first, even when nothing is staged for dead_letters.
        merge += replay_statements(replay, None, guard)
    for name, table in TABLES.items():
        if name not in staged:
            continue
        stage = _stage(table, batch_key)
        load += _load(table, stage, staged[name])
        if replay is not None and name == "dead_letters":
            merge += replay_statements(Replay(), stage, guard)
        else:
            merge += _merge(table, stage, guard)
        cleanup.append(f"DROP TABLE {stage}")
    merge.append(
        f"INSERT INTO {_name(BATCHES)} SELECT {sql_string(batch_key)}, SYSUTCDATETIME() WHERE {guard}"
    )
    return load, merge, cleanup


SQL_COPT_SS_ACCESS_TOKEN = 1256  # pyodbc's connection attribute for an Entra ID token


def https_of(abfss: str) -> str:
    """``abfss://container@account.dfs.core.windows.net/path`` -> the https URL COPY INTO reads."""
    u = urlparse(abfss)
    container, _, host = u.netloc.partition("@")
    if not container or not host.endswith(".dfs.core.windows.net"):
        raise ValueError(f"{abfss!r} is not abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH")
    return f"https://{host}/{container}{u.path}"


def connect(server: str, database: str, token: str):
    import pyodbc  # the Synapse Spark runtime ships it with the SQL Server ODBC driver

    raw = token.encode("utf-16-le")
    return pyodbc.connect(
        f"Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:{server},1433;Database={database};"
        "Encrypt=yes;TrustServerCertificate=no",
        attrs_before={SQL_COPT_SS_ACCESS_TOKEN: struct.pack(f"<I{len(raw)}s", len(raw), raw)},
    )


class SynapseLookup:
    """``WarehouseLookup`` over the dedicated SQL pool, with a token the
    driver fetched for this batch (executors have no ``mssparkutils``)."""

    def __init__(self, server: str, database: str, token: str) -> None:
        self.server, self.database, self.token = server, database, token
        self.con = None

    def open(self) -> None:
        self.con = connect(self.server, self.database, self.token)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def _rows(self, sql: str, params: list) -> list:
        cur = self.con.cursor()  # type: ignore[union-attr]
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(event_ids), 1000):
            chunk = event_ids[i : i + 1000]
            rows = self._rows(
                "SELECT event_id FROM dbo.events WHERE event_id IN (SELECT value FROM OPENJSON(?))",
                [json.dumps(chunk)],
            )
            found.update(r["event_id"] for r in rows)
        return found

    def dead_letters(self, replay: Replay) -> list[RawEvent]:
        """The stored dead letters a re-run takes, as the inputs they were."""
        return [
            RawEvent(int(r["source_offset"]), int(r["received_us"]), bytes(r["payload"]))
            for r in self._rows(rerun_select_sql(replay), [])
        ]

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for i in range(0, len(user_keys), 1000):
            rows = self._rows(
                f"SELECT * FROM dbo.{USER_FEATURES} WHERE user_key IN (SELECT value FROM OPENJSON(?))",
                [json.dumps(user_keys[i : i + 1000])],
            )
            for row in rows:
                out[row["user_key"]] = history_row(row)
        return out


class SynapseSink:
    """Stages row batches as Parquet in the lake (pyarrow's Azure filesystem,
    managed identity), then loads and merges them in one transaction."""

    def __init__(
        self,
        server: str,
        database: str,
        batch_key: str,
        prefix: str,
        token: str,
        replay: Replay | None = None,
    ) -> None:
        self.replay = replay
        self.server, self.database = server, database
        self.batch_key, self.prefix, self.token = batch_key, prefix, token

    def stage(self, table: str, rows: list[dict[str, Any]] | pa.Table) -> str:
        import pyarrow.parquet as pq
        from pyarrow import fs

        u = urlparse(f"{self.prefix}/{table}/{uuid.uuid4().hex}.parquet")
        container, _, host = u.netloc.partition("@")
        azure = fs.AzureFileSystem(account_name=host.split(".")[0])
        pq.write_table(stage_rows(TABLES[table], rows), f"{container}{u.path}", filesystem=azure)
        return f"{self.prefix}/{table}/"

    def commit(self, files: dict[str, list[str]]) -> dict[str, Any]:
        staged = {table: https_of(f"{self.prefix}/{table}/") + "*.parquet" for table in files}
        load, merge, cleanup = batch_statements(self.batch_key, staged, self.replay)
        con = connect(self.server, self.database, self.token)
        try:
            cur = con.cursor()
            for sql in load:
                cur.execute(sql)
            con.commit()
            for sql in merge:  # pyodbc keeps one transaction open until commit
                cur.execute(sql)
            con.commit()
            for sql in cleanup:
                cur.execute(sql)
            con.commit()
        except Exception:
            con.rollback()
            raise
        finally:
            con.close()
        return {"tables": sorted(files)}


def ensure_tables(server: str, database: str, token: str) -> None:
    """Create whichever logical tables the pool lacks (the DDL is idempotent)."""
    con = connect(server, database, token)
    try:
        cur = con.cursor()
        for sql in all_ddl():
            cur.execute(sql)
        con.commit()
    finally:
        con.close()


if __name__ == "__main__":
    print(";\n\n".join(all_ddl()) + ";")
