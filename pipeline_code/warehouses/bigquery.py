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
  same table names, with the same meaning, on both warehouses.

Used by the GCP warehouse component (schemas and views) and by the Dataflow
job (row conversion); ``python -m pipeline_code.warehouses.bigquery`` prints the
schemas as JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from pipeline_code.core.ports import USER_FEATURES, history_row
from pipeline_code.tables import TABLES, Column, Table

CHANGED_AT = "changed_at"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def is_change_log(table: Table) -> bool:
    """Whether the table is stored as change rows behind a folding view."""
    return table.merge in ("replace", "add")


def physical_name(table: Table) -> str:
    """The name of the BigQuery table the job writes ``table``'s rows to."""
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
    """The view that folds ``<table>_changes`` into the logical table."""
    source = f"`{project}.{dataset}.{physical_name(table)}`"
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
