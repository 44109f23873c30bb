"""The training job's decisions in the warehouse's ``model_versions``, on the cloud it runs on.

    WAREHOUSE=redshift:WORKGROUP/DATABASE     # Data API, one transaction, as the job's role
    WAREHOUSE=bigquery:PROJECT.DATASET        # insertAll into model_versions_changes, as its account
    WAREHOUSE=registry:decisions/             # Parquet beside the models, one file per version

Locally ``dataflow train`` writes the row into DuckDB itself
(``Warehouse.record_model_version``); a cloud job writes the same rows here:
the published version's, and when the served version changed, the previous
one's with ``serving`` false. Each is rebuilt from what the registry holds
(``metadata.json`` and ``decision.json``), so a retried write gives the same
rows. Redshift replaces each row by its key inside one
``BatchExecuteStatement``; BigQuery appends change rows that the
``model_versions`` view folds (the newest row per version wins).

``registry:`` is Azure's: the dedicated SQL pool is reachable only through
the private route Data Factory has, not from the Azure ML job, so the job
writes each row to ``<prefix><version>.parquet`` in the registry (a row
that changes, such as the previous version's ``serving``, overwrites its
file) and the factory upserts every file into ``model_versions`` by
``model_version`` after the job's time is up (``components/azure/training.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pipeline_code.ml.train import model_version_row
from pipeline_code.tables import TABLES

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class RecordError(Exception):
    """The rows could not be written; the message names the target."""


def rows_for(store, version: str, previous: str | None, serving: str | None, at: dt.datetime) -> list[dict]:
    """``version``'s row and, if it replaced ``previous`` as the served one, ``previous``'s."""

    def row(v: str) -> dict:
        meta = json.loads(store.get(f"{v}/metadata.json") or b"{}")
        gate = json.loads(store.get(f"{v}/decision.json") or b"{}") or meta.get("gate") or {}
        if not meta or not gate:
            raise RecordError(f"version {v} has no metadata or decision in the registry")
        return model_version_row(meta, gate, f"{v}/", serving == v, at)

    rows = [row(version)]
    if previous and previous != version and serving != previous:
        rows.append(row(previous))
    return rows


def _literal(value: Any, kind: str) -> str:
    from pipeline_code.warehouses.redshift import sql_string

    if value is None:
        return "NULL"
    if kind == "TIMESTAMP":
        at = _EPOCH + dt.timedelta(microseconds=value)
        return f"TIMESTAMPTZ '{at.isoformat()}'"
    if kind == "BOOL":
        return "TRUE" if value else "FALSE"
    if kind in ("INT64", "FLOAT64"):
        return repr(float(value)) if kind == "FLOAT64" else str(int(value))
    return sql_string(str(value))


def redshift_statements(rows: list[dict]) -> list[str]:
    """Each row replaced by its key, for one ``BatchExecuteStatement``."""
    table = TABLES["model_versions"]
    cols = table.column_names()
    out = []
    for r in rows:
        key = _literal(r["model_version"], "STRING")
        values = ", ".join(_literal(r.get(c.name), c.type) for c in table.columns)
        out += [
            f"DELETE FROM {table.name} WHERE model_version = {key}",
            f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({values})",
        ]
    return out


def bigquery_rows(rows: list[dict], at_us: int) -> list[dict]:
    """``insertAll`` rows for ``model_versions_changes``; the insert id makes a retry a no-op."""
    from pipeline_code.warehouses.bigquery import to_row

    table = TABLES["model_versions"]
    return [
        {"insertId": f"{r['model_version']}-{r['serving']}-{at_us}", "json": to_row(table, r, at_us)}
        for r in rows
    ]


def parquet_row(row: dict) -> bytes:
    """One ``model_versions`` row as a Parquet file with the table's own schema."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline_code.tables import arrow_schema

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=arrow_schema(TABLES["model_versions"])), buf)
    return buf.getvalue()


def record(target: str, rows: list[dict], at_us: int, store=None) -> None:
    """Write ``rows`` to the warehouse ``target`` names (see the module doc);
    ``registry:`` writes into ``store``, the registry the job publishes to."""
    kind, _, where = target.partition(":")
    if kind == "registry":
        if not re.fullmatch(r"[a-z0-9_-]+/", where) or store is None:
            raise RecordError(f"WAREHOUSE must be registry:PREFIX/ (lower case), got {target!r}")
        for row in rows:
            store.put(f"{where}{row['model_version']}.parquet", parquet_row(row))
    elif kind == "redshift":
        match = re.fullmatch(r"([^/]+)/([^/]+)", where)
        if not match:
            raise RecordError(f"WAREHOUSE must be redshift:WORKGROUP/DATABASE, got {target!r}")
        import boto3

        from pipeline_code.warehouses.redshift import wait_for_statement

        client = boto3.client("redshift-data")
        batch = client.batch_execute_statement(
            WorkgroupName=match.group(1), Database=match.group(2), Sqls=redshift_statements(rows)
        )
        wait_for_statement(client, batch["Id"], "model_versions", poll_s=1.0)
    elif kind == "bigquery":
        match = re.fullmatch(r"([a-z][a-z0-9-]+)\.(\w+)", where)
        if not match:
            raise RecordError(f"WAREHOUSE must be bigquery:PROJECT.DATASET, got {target!r}")
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery.insertdata"])
        url = (
            f"https://bigquery.googleapis.com/bigquery/v2/projects/{match.group(1)}/datasets/"
            f"{match.group(2)}/tables/model_versions_changes/insertAll"
        )
        answer = AuthorizedSession(credentials).post(url, json={"rows": bigquery_rows(rows, at_us)})
        if answer.status_code >= 400 or answer.json().get("insertErrors"):
            raise RecordError(f"BigQuery refused the model_versions rows: {answer.text[:500]}")
    else:
        raise RecordError(f"WAREHOUSE must start with redshift:, bigquery: or registry:, got {target!r}")
