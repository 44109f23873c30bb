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

``python -m pipeline_code.warehouses.redshift`` prints the DDL.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline_code.core.history import UserHistory
from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import EPOCH, USER_FEATURES, Replay, history_row
from pipeline_code.tables import TABLES, Column, Table, as_arrow

if TYPE_CHECKING:
    import pyarrow as pa

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


def _timestamp(us: int) -> str:
    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return f"TIMESTAMPTZ '{at.isoformat()}'"


def _rerun_where(replay: Replay) -> str:
    """The dead letters a re-run takes: dead-lettered at or before its
    snapshot, of its stage, since its ``since``."""
    if replay.rerun_before_us is None:
        raise ValueError("a dead-letter re-run needs rerun_before_us (its snapshot time)")
    where = [f"dead_lettered_at <= {_timestamp(replay.rerun_before_us)}"]
    if replay.stage is not None:
        where.append(f"failed_stage = {sql_string(replay.stage)}")
    if replay.since_us is not None:
        where.append(f"dead_lettered_at >= {_timestamp(replay.since_us)}")
    return " AND ".join(where)


def rerun_delete_sql(replay: Replay, guard: str) -> str:
    """A dead-letter replay's first statement: remove the rows it re-ran."""
    return f"DELETE FROM dead_letters WHERE {_rerun_where(replay)} AND {guard}"


def rerun_select_sql(replay: Replay) -> str:
    """The dead letters a re-run reads (the rows ``rerun_delete_sql`` later
    removes): offset, arrival in microseconds and the bytes as hex, which
    the Data API returns as a string."""
    return (
        "SELECT source_offset, DATEDIFF(microsecond, TIMESTAMP '1970-01-01', received_at) AS received_us, "
        f"TO_HEX(payload) AS payload_hex FROM dead_letters WHERE {_rerun_where(replay)} "
        "ORDER BY source_offset"
    )


def insert_absent_dead_letters_sql(guard: str) -> str:
    """A replay's dead letters: only those whose arrival and bytes are not stored."""
    stage = _stage(TABLES["dead_letters"])
    cols = ", ".join(TABLES["dead_letters"].column_names())
    return (
        f"INSERT INTO dead_letters ({cols}) SELECT {cols} FROM {stage} s WHERE {guard} AND NOT EXISTS "
        "(SELECT 1 FROM dead_letters t WHERE t.source_offset = s.source_offset AND t.payload = s.payload)"
    )


def merge_statements(
    batch_key: str, staged: dict[str, str], iam_role: str = "default", replay: Replay | None = None
) -> list[str]:
    """One micro-batch's transaction: load each table's staged Parquet
    prefix (``{table: s3://.../}``), merge, and record the batch; with
    ``replay``, its dead letters as ``Replay`` says."""
    unknown = set(staged) - set(TABLES)
    if unknown:
        raise ValueError(f"staged files for unknown tables: {sorted(unknown)}")
    guard = _guard(batch_key)
    statements: list[str] = []
    if replay is not None and replay.rerun_before_us is not None:
        # Even when every re-run input now passes (nothing staged for dead_letters).
        statements.append(rerun_delete_sql(replay, guard))
    for name, table in TABLES.items():
        if name in staged:
            statements += _copy(table, staged[name], iam_role)
            if replay is not None and name == "dead_letters":
                statements.append(insert_absent_dead_letters_sql(guard))
            else:
                statements += merge_sql(table, guard)
    statements.append(f"INSERT INTO {BATCHES} SELECT {sql_string(batch_key)}, GETDATE() WHERE {guard}")
    return statements


def all_ddl() -> list[str]:
    return [ddl(t) for t in TABLES.values()] + [BATCHES_DDL]


class RedshiftError(Exception):
    """A Data API statement failed or was aborted."""


def wait_for_statement(client, statement_id: str, what: str, poll_s: float = 0.2) -> dict[str, Any]:
    """Poll a Redshift Data API statement (or batch) to its end; its description."""
    while True:
        status = client.describe_statement(Id=statement_id)
        if status["Status"] == "FINISHED":
            return status
        if status["Status"] in ("FAILED", "ABORTED"):
            raise RedshiftError(f"{what} {statement_id} {status['Status']}: {status.get('Error')}")
        time.sleep(poll_s)


class RedshiftDataLookup:
    """``WarehouseLookup`` over Redshift Serverless through the Data API,
    authenticated as the job's IAM role (no password in the job). The Data
    API takes string parameters only, so id lists are inlined as escaped
    literals, in chunks that keep each statement far below its 100 KB limit."""

    CHUNK = 1000

    def __init__(self, workgroup: str, database: str, region: str | None = None, poll_s: float = 0.2) -> None:
        self.workgroup = workgroup
        self.database = database
        self.region = region
        self.poll_s = poll_s
        self.client = None

    def open(self) -> None:
        import boto3

        self.client = boto3.client("redshift-data", region_name=self.region)

    def close(self) -> None:
        self.client = None

    def _rows(self, sql: str) -> list[list[Any]]:
        client = self.client
        statement = client.execute_statement(WorkgroupName=self.workgroup, Database=self.database, Sql=sql)  # type: ignore[union-attr]
        status = wait_for_statement(client, statement["Id"], "statement", self.poll_s)
        if not status.get("HasResultSet"):
            return []
        rows: list[list[Any]] = []
        token = None
        while True:
            kwargs = {"Id": statement["Id"], **({"NextToken": token} if token else {})}
            page = client.get_statement_result(**kwargs)  # type: ignore[union-attr]
            rows.extend(
                [None if f.get("isNull") else next(iter(f.values())) for f in r] for r in page["Records"]
            )
            token = page.get("NextToken")
            if not token:
                return rows

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]:
        lo = (EPOCH + dt.timedelta(days=first_day)).date().isoformat()
        hi = (EPOCH + dt.timedelta(days=last_day)).date().isoformat()
        found: set[str] = set()
        for i in range(0, len(event_ids), self.CHUNK):
            ids = ", ".join(sql_string(e) for e in event_ids[i : i + self.CHUNK])
            rows = self._rows(
                "SELECT event_id FROM events"
                f" WHERE event_date BETWEEN '{lo}' AND '{hi}' AND event_id IN ({ids})"
            )
            found.update(r[0] for r in rows)
        return found

    def dead_letters(self, replay: Replay) -> list[RawEvent]:
        """The stored dead letters a re-run takes, as the inputs they were."""
        return [
            RawEvent(int(offset), int(received), bytes.fromhex(payload))
            for offset, received, payload in self._rows(rerun_select_sql(replay))
        ]

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]:
        names = list(UserHistory.__dataclass_fields__)
        select = ", ".join(
            f"DATEDIFF(microsecond, TIMESTAMP '1970-01-01', {n}) AS {n}"
            if n in ("first_seen_at", "last_seen_at")
            else f"JSON_SERIALIZE({n}) AS {n}"
            if n in ("recent_items", "last_session_items")
            else n
            for n in names
        )
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(user_keys), self.CHUNK):
            keys = ", ".join(sql_string(u) for u in user_keys[i : i + self.CHUNK])
            for r in self._rows(f"SELECT {select} FROM {USER_FEATURES} WHERE user_key IN ({keys})"):
                row = dict(zip(names, r, strict=True))
                out[row["user_key"]] = history_row(row)
        return out


class RedshiftSink:
    """Stages row batches as Parquet under ``<staging>/<batch>/<table>/``
    (on the executors, through pyarrow's S3 filesystem), then commits the
    batch with one Data API ``BatchExecuteStatement`` (one transaction)."""

    def __init__(
        self,
        region: str,
        workgroup: str,
        database: str,
        copy_role_arn: str,
        batch_key: str,
        batch_prefix: str,
        replay: Replay | None = None,
    ) -> None:
        self.replay = replay
        self.region = region
        self.workgroup = workgroup
        self.database = database
        self.copy_role_arn = copy_role_arn
        self.batch_key = batch_key
        self.prefix = batch_prefix

    def stage(self, table: str, rows: list[dict[str, Any]] | pa.Table) -> str:
        """Rows (dicts, or an Arrow table with the table's columns) as one
        Parquet object under the batch's prefix."""
        import pyarrow.parquet as pq
        from pyarrow import fs

        url = urlparse(f"{self.prefix}/{table}/{uuid.uuid4().hex}.parquet")
        s3 = fs.S3FileSystem(region=self.region)
        pq.write_table(as_arrow(TABLES[table], rows), f"{url.netloc}{url.path}", filesystem=s3)
        return f"s3://{url.netloc}{url.path}"

    def commit(self, files: dict[str, list[str]]) -> dict[str, Any]:
        import boto3

        staged = {table: f"{self.prefix}/{table}/" for table in files}
        statements = merge_statements(self.batch_key, staged, self.copy_role_arn, self.replay)
        client = boto3.client("redshift-data", region_name=self.region)
        batch = client.batch_execute_statement(
            WorkgroupName=self.workgroup, Database=self.database, Sqls=statements
        )
        wait_for_statement(client, batch["Id"], f"batch {self.batch_key}", poll_s=0.5)
        return {"statement_id": batch["Id"], "tables": sorted(files)}


if __name__ == "__main__":
    print(";\n\n".join(all_ddl()) + ";")
