"""The logical tables rendered for BigQuery, from ``pipeline_code.tables``.

A streaming job cannot update rows in BigQuery cheaply, so each table's
``merge`` rule maps onto an append-only layout:

- ``insert_new`` and ``append`` tables (``events``, ``dead_letters``) are
  plain tables the job appends to; ``events`` is deduplicated before it is
  written (per-user state in the streaming job) and its ``insertId`` is the
  event id, so a retried insert is dropped by BigQuery as well;
- ``replace`` and ``add`` tables are written as change rows to
  ``<table>_changes`` (the table's columns plus ``changed_at``), and a view
  named after the logical table folds them with the column's ``combine``
  rule, the same rule the DuckDB warehouse applies on load. Queries read the
  same table names, with the same meaning, on both warehouses;
- ``dead_letters`` is written to ``dead_letters_log`` (its columns plus
  ``resolved``) and read through a view keeping the newest row per input
  (arrival and bytes) unless that row marks it resolved: a replay appends
  rather than deletes (rows streamed in the last half hour cannot be deleted),
  so a range replayed twice shows one row per bad input, a dead letter
  re-run that still fails shows its new reason, and one that now passes
  disappears.

A replay (``BigQueryReplaySink``) stages each table's rows as JSON lines in
Cloud Storage and commits them in one script: ``LOAD DATA INTO TEMP TABLE``
per table, then one transaction guarded by ``_dataflow_batches``
(``replay_statements``).

Used by the GCP warehouse component (schemas and views) and by the Dataflow
job (row conversion); ``python -m pipeline_code.warehouses.bigquery`` prints the
schemas as JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pipeline_code.core.parse import RawEvent, now_us
from pipeline_code.core.ports import USER_FEATURES, Replay, history_row
from pipeline_code.tables import TABLES, Column, Table

CHANGED_AT = "changed_at"
RESOLVED = "resolved"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_LOG = "dead_letters_log"
BATCHES = "_dataflow_batches"
"""Replays committed (their keys), so a retried commit changes nothing."""
BATCHES_SCHEMA = [
    {"name": "batch_key", "type": "STRING", "mode": "REQUIRED"},
    {"name": "committed_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def is_change_log(table: Table) -> bool:
    """Whether the table is stored as change rows behind a folding view."""
    return table.merge in ("replace", "add")


def has_view(table: Table) -> bool:
    """Whether queries read ``table`` through a view over its physical table."""
    return is_change_log(table) or table.name == DEAD_LETTERS


def physical_name(table: Table) -> str:
    """The name of the BigQuery table the job writes ``table``'s rows to."""
    if table.name == DEAD_LETTERS:
        return DEAD_LETTER_LOG
    return f"{table.name}_changes" if is_change_log(table) else table.name


def _field(col: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"name": col.name, "type": col.type, "mode": col.mode}
    if col.description:
        out["description"] = col.description
    if col.fields:
        out["fields"] = [_field(f) for f in col.fields]
    return out


def schema_fields(table: Table) -> list[dict[str, Any]]:
    """The physical table's schema in BigQuery's REST JSON form."""
    fields = [_field(c) for c in table.columns]
    if is_change_log(table):
        fields.append(
            {
                "name": CHANGED_AT,
                "type": "TIMESTAMP",
                "mode": "REQUIRED",
                "description": "When the job wrote it.",
            }
        )
    if table.name == DEAD_LETTERS:
        fields.append(
            {
                "name": RESOLVED,
                "type": "BOOLEAN",
                "mode": "NULLABLE",
                "description": "True on the row a dead-letter re-run appends for an input that now passes.",
            }
        )
    return fields


def schema_json(table: Table) -> str:
    """``schema_fields`` as the JSON string ``gcp.bigquery.Table.schema`` takes."""
    return json.dumps(schema_fields(table), separators=(",", ":"))


def partitioning(table: Table) -> tuple[str, str] | None:
    """``(type, column)`` for time partitioning: by day on the partition column."""
    return ("DAY", table.partition_by) if table.partition_by else None


def clustering(table: Table) -> list[str]:
    """Clustering columns; change tables cluster on the key they are folded by."""
    return list(table.key[:4]) if is_change_log(table) else list(table.cluster_by)


def view_sql(table: Table, project: str, dataset: str) -> str:
    """The view that folds ``<table>_changes`` (or ``dead_letters_log``) into the logical table."""
    source = f"`{project}.{dataset}.{physical_name(table)}`"
    if table.name == DEAD_LETTERS:
        # The newest row per input; ties go to the resolving row.
        return (
            f"SELECT * EXCEPT ({RESOLVED}, _n) FROM (SELECT *, ROW_NUMBER() OVER "
            "(PARTITION BY source_offset, TO_HEX(SHA256(payload)) "
            f"ORDER BY dead_lettered_at DESC, IFNULL({RESOLVED}, FALSE) DESC) AS _n "
            f"FROM {source}) WHERE _n = 1 AND {RESOLVED} IS NOT TRUE"
        )
    keys = ", ".join(table.key)
    if table.merge == "replace":
        return (
            f"SELECT * EXCEPT ({CHANGED_AT}) FROM {source} "
            f"WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {CHANGED_AT} DESC) = 1"
        )
    order_col = next((c.name for c in table.columns if c.combine == "max"), CHANGED_AT)
    picks = []
    for c in table.columns:
        if c.name in table.key:
            picks.append(c.name)
        elif c.combine == "sum":
            total = f"SUM({c.name})"
            picks.append(
                f"ROUND({total}, {c.decimals}) AS {c.name}"
                if c.decimals is not None
                else f"{total} AS {c.name}"
            )
        elif c.combine in ("min", "max"):
            picks.append(f"{c.combine.upper()}({c.name}) AS {c.name}")
        else:
            latest = f"ARRAY_AGG({c.name} IGNORE NULLS ORDER BY {order_col} DESC LIMIT 1)"
            picks.append(f"{latest}[SAFE_OFFSET(0)] AS {c.name}")
    return f"SELECT {', '.join(picks)} FROM {source} GROUP BY {keys}"


def _value(col: Column, value: Any) -> Any:
    if value is None:
        return None
    if col.mode == "REPEATED":
        return [_value(Column(col.name, col.type, "NULLABLE", fields=col.fields), v) for v in value]
    if col.type == "RECORD":
        return {f.name: _value(f, value.get(f.name)) for f in col.fields}
    if col.type == "TIMESTAMP":
        # The core works in integer microseconds; BigQuery takes RFC 3339.
        return (_EPOCH + dt.timedelta(microseconds=value)).isoformat()
    if col.type == "DATE":
        return (_EPOCH + dt.timedelta(days=value)).date().isoformat()
    if col.type == "BYTES":
        return base64.b64encode(value).decode("ascii")
    return value


def to_row(table: Table, row: dict[str, Any], changed_at_us: int | None = None) -> dict[str, Any]:
    """A core row -> the JSON row BigQuery's insertAll takes for the physical table."""
    out = {c.name: _value(c, row.get(c.name)) for c in table.columns}
    if is_change_log(table):
        if changed_at_us is None:
            raise ValueError(f"table {table.name!r} is a change log: changed_at_us is required")
        out[CHANGED_AT] = (_EPOCH + dt.timedelta(microseconds=changed_at_us)).isoformat()
    return out


# --- replays ---------------------------------------------------------------


def _ddl_type(col: Column) -> str:
    """A column's GoogleSQL type (``LOAD DATA``'s column list)."""
    if col.type == "RECORD":
        base = "STRUCT<" + ", ".join(f"{f.name} {_ddl_type(f)}" for f in col.fields) + ">"
    else:
        base = col.type
    return f"ARRAY<{base}>" if col.mode == "REPEATED" else base


def _physical_columns(table: Table) -> list[Column]:
    extra = [Column(CHANGED_AT, "TIMESTAMP")] if is_change_log(table) else []
    return [*table.columns, *extra]


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stage(table: str) -> str:
    return f"replay_{table}"


def load_statement(table: Table, uris: list[str]) -> str:
    """Staged JSON lines of ``table`` -> a temporary table of the script."""
    columns = ", ".join(f"{c.name} {_ddl_type(c)}" for c in _physical_columns(table))
    files = ", ".join(_literal(u) for u in uris)
    return (
        f"LOAD DATA INTO TEMP TABLE {_stage(table.name)} ({columns}) "
        f"FROM FILES (format = 'NEWLINE_DELIMITED_JSON', uris = [{files}])"
    )


def _rerun_where(replay: Replay) -> str:
    if replay.rerun_before_us is None:
        raise ValueError("a dead-letter re-run needs rerun_before_us (its snapshot time)")
    where = [f"dead_lettered_at <= TIMESTAMP_MICROS({int(replay.rerun_before_us)})"]
    if replay.stage is not None:
        where.append(f"failed_stage = {_literal(replay.stage)}")
    if replay.since_us is not None:
        where.append(f"dead_lettered_at >= TIMESTAMP_MICROS({int(replay.since_us)})")
    return " AND ".join(where)


def rerun_select_sql(project: str, dataset: str, replay: Replay) -> str:
    """The dead letters a re-run reads: the rows its commit then marks resolved."""
    return (
        "SELECT source_offset, UNIX_MICROS(received_at) AS received_us, payload "
        f"FROM `{project}.{dataset}.{DEAD_LETTERS}` WHERE {_rerun_where(replay)} ORDER BY source_offset"
    )


def replay_statements(
    project: str, dataset: str, batch_key: str, staged: dict[str, list[str]], replay: Replay
) -> list[str]:
    """A replay's commit, as the statements of one BigQuery script.

    Each staged table is loaded into a temporary table; then one transaction
    (unless ``_dataflow_batches`` has the key already):

    - a re-run first appends a resolving row for each dead letter it took
      (at its snapshot time), which hides them from the ``dead_letters`` view;
    - ``events`` gets the staged events whose id it does not hold;
    - the change logs get the staged change rows;
    - ``dead_letters_log`` gets the staged dead letters that the view does
      not show already (same arrival and bytes), each later than the
      snapshot, so an input that fails again shows its new reason;
    - the key is recorded.

    The script's result is one row: ``events_stored``,
    ``duplicates_at_load``, ``dead_letters_present``.
    """
    unknown = set(staged) - set(TABLES)
    if unknown:
        raise ValueError(f"staged files for unknown tables: {sorted(unknown)}")

    def q(name: str) -> str:
        return f"`{project}.{dataset}.{name}`"

    out = [
        "DECLARE events_in, events_stored, dead_in, dead_stored INT64 DEFAULT 0",
        *(load_statement(TABLES[name], uris) for name, uris in sorted(staged.items()) if uris),
        "BEGIN TRANSACTION",
        f"IF EXISTS (SELECT 1 FROM {q(BATCHES)} WHERE batch_key = {_literal(batch_key)}) THEN "
        "ROLLBACK TRANSACTION; SELECT 0 AS events_stored, 0 AS duplicates_at_load, "
        "0 AS dead_letters_present; RETURN; END IF",
    ]
    dead = TABLES[DEAD_LETTERS]
    dead_cols = dead.column_names()
    if replay.rerun_before_us is not None:
        picks = ", ".join(
            f"TIMESTAMP_MICROS({int(replay.rerun_before_us)})" if c == "dead_lettered_at" else c
            for c in dead_cols
        )
        out.append(
            f"INSERT INTO {q(DEAD_LETTER_LOG)} ({', '.join(dead_cols)}, {RESOLVED}) "
            f"SELECT {picks}, TRUE FROM {q(DEAD_LETTERS)} WHERE {_rerun_where(replay)}"
        )
    for name in [n for n in TABLES if staged.get(n)]:
        table = TABLES[name]
        stage = _stage(name)
        cols = [c.name for c in _physical_columns(table)]
        target, names = q(physical_name(table)), ", ".join(cols)
        if table.merge == "insert_new":
            keys = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
            out += [
                f"SET events_in = (SELECT COUNT(*) FROM {stage})",
                f"INSERT INTO {target} ({names}) SELECT {names} "
                f"FROM {stage} AS s WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {keys})",
                "SET events_stored = @@row_count",
            ]
        elif name == DEAD_LETTERS:
            floor = int(replay.rerun_before_us or 0) + 1
            picks = ", ".join(
                f"GREATEST(s.dead_lettered_at, TIMESTAMP_MICROS({floor}))"
                if c == "dead_lettered_at"
                else f"s.{c}"
                for c in cols
            )
            out += [
                f"SET dead_in = (SELECT COUNT(*) FROM {stage})",
                f"INSERT INTO {target} ({names}) SELECT {picks} FROM {stage} AS s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {q(DEAD_LETTERS)} AS t "
                "WHERE t.source_offset = s.source_offset AND t.payload = s.payload)",
                "SET dead_stored = @@row_count",
            ]
        else:
            out.append(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage}")
    out += [
        f"INSERT INTO {q(BATCHES)} (batch_key, committed_at) "
        f"VALUES ({_literal(batch_key)}, CURRENT_TIMESTAMP())",
        "COMMIT TRANSACTION",
        "SELECT events_stored, events_in - events_stored AS duplicates_at_load, "
        "dead_in - dead_stored AS dead_letters_present",
    ]
    return out


@dataclass(frozen=True)
class ReplayCommit:
    """What a replay's commit did (the counters ``WriteToWarehouse`` keeps)."""

    events_stored: int
    duplicates_at_load: int
    dead_letters_present: int


class BigQueryReplaySink:
    """The ``Sink`` of a replay on BigQuery: ``stage`` writes JSON lines (the
    rows ``to_row`` gives) under ``<staging>/<batch key>/<table>/`` in Cloud
    Storage; ``commit`` runs ``replay_statements`` as one script."""

    def __init__(self, project: str, dataset: str, staging_uri: str, batch_key: str, replay: Replay) -> None:
        if not staging_uri.startswith("gs://"):
            raise ValueError(f"staging_uri must be a gs:// URI, got {staging_uri!r}")
        self.project, self.dataset = project, dataset
        self.staging_uri = staging_uri.rstrip("/")
        self.batch_key, self.replay = batch_key, replay

    def stage(self, table: str, rows: list[dict[str, Any]]) -> str:
        from google.cloud import storage

        t = TABLES[table]
        changed_at = now_us() if is_change_log(t) else None
        body = b"".join(json.dumps(to_row(t, r, changed_at)).encode() + b"\n" for r in rows)
        safe_key = self.batch_key.replace(":", "-")
        url = urlparse(f"{self.staging_uri}/{safe_key}/{table}/{uuid.uuid4().hex}.json")
        client = storage.Client(project=self.project)
        client.bucket(url.netloc).blob(url.path.lstrip("/")).upload_from_string(
            body, content_type="application/x-ndjson"
        )
        return f"gs://{url.netloc}{url.path}"

    def commit(self, files: dict[str, list[str]]) -> ReplayCommit:
        from google.cloud import bigquery as bq

        script = ";\n".join(replay_statements(self.project, self.dataset, self.batch_key, files, self.replay))
        client = bq.Client(project=self.project)
        try:
            (row,) = list(client.query(script + ";").result())
        finally:
            client.close()
        return ReplayCommit(int(row[0]), int(row[1]), int(row[2]))


class BigQueryLookup:
    """``WarehouseLookup`` over the BigQuery dataset the warehouse component
    created. Both queries prune: ``events`` by its date partition and
    clustering, ``user_features`` by its clustering on ``user_key``."""

    def __init__(self, project: str, dataset: str) -> None:
        self.project = project
        self.dataset = dataset
        self.client = None

    def open(self) -> None:
        from google.cloud import bigquery as bq

        self.client = bq.Client(project=self.project)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _query(self, sql: str, params: list) -> list:
        from google.cloud import bigquery as bq

        job = self.client.query(sql, job_config=bq.QueryJobConfig(query_parameters=params))  # type: ignore[union-attr]
        return list(job.result())

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]:
        from google.cloud import bigquery as bq

        table = f"`{self.project}.{self.dataset}.events`"
        rows = self._query(
            f"SELECT event_id FROM {table} WHERE event_date BETWEEN @lo AND @hi AND event_id IN UNNEST(@ids)",
            [
                bq.ScalarQueryParameter("lo", "DATE", (_EPOCH + dt.timedelta(days=first_day)).date()),
                bq.ScalarQueryParameter("hi", "DATE", (_EPOCH + dt.timedelta(days=last_day)).date()),
                bq.ArrayQueryParameter("ids", "STRING", event_ids),
            ],
        )
        return {r["event_id"] for r in rows}

    def dead_letters(self, replay: Replay) -> list[RawEvent]:
        """The stored dead letters a re-run takes, as the inputs they were."""
        rows = self._query(rerun_select_sql(self.project, self.dataset, replay), [])
        return [RawEvent(int(r["source_offset"]), int(r["received_us"]), bytes(r["payload"])) for r in rows]

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]:
        from google.cloud import bigquery as bq

        table = f"`{self.project}.{self.dataset}.{USER_FEATURES}`"
        rows = self._query(
            f"SELECT * FROM {table} WHERE user_key IN UNNEST(@users)",
            [bq.ArrayQueryParameter("users", "STRING", user_keys)],
        )
        return {r["user_key"]: history_row(dict(r.items())) for r in rows}


if __name__ == "__main__":
    print(json.dumps({physical_name(t): schema_fields(t) for t in TABLES.values()}, indent=2))
