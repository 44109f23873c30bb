"""What a streaming job asks the warehouse before it enriches a micro-batch.

Engine-free: the Beam streaming job (Dataflow) and the Spark adapter (Glue,
Synapse, local PySpark) both call a ``WarehouseLookup`` once per user shard
and micro-batch: which of these event ids are stored already, and what is
known about these users. One implementation per warehouse:

- ``DuckDBLookup``: the local warehouse (tests, ``--engine spark`` locally);
- ``BigQueryLookup``: the GCP dataset (google-cloud-bigquery);
- ``RedshiftDataLookup``: Redshift Serverless through the Data API (boto3).

``history_row`` turns a stored ``user_features`` row, from any of them,
into the core's units.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Protocol

from pipeline_code.core.history import UserHistory
from pipeline_code.redshift import sql_string

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
USER_FEATURES = "user_features"


def to_us(value: dt.datetime | int | None) -> int | None:
    """A warehouse timestamp (a datetime, or microseconds already) -> the
    core's microseconds."""
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def history_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored ``user_features`` row (Parquet, DuckDB, BigQuery or Redshift)
    in the core's units: microsecond timestamps, plain lists."""
    row = {k: row[k] for k in UserHistory.__dataclass_fields__}
    row["first_seen_at"] = to_us(row["first_seen_at"])
    row["last_seen_at"] = to_us(row["last_seen_at"])
    for name in ("recent_items", "last_session_items"):
        value = row[name]
        # Redshift returns SUPER arrays as JSON text.
        row[name] = json.loads(value) if isinstance(value, str) else list(value or [])
    return row


class WarehouseLookup(Protocol):
    """What the streaming job asks the warehouse: which of these ids are
    stored, and what is known about these users. Picklable: it connects in
    ``open``, on the worker."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]: ...

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]: ...


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


class DuckDBLookup:
    """``WarehouseLookup`` over a local DuckDB warehouse (read-only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.con = None

    def open(self) -> None:
        import duckdb

        self.con = duckdb.connect(self.path, read_only=True)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def known_ids(self, event_ids: list[str], first_day: int, last_day: int) -> set[str]:
        rows = self.con.execute(  # type: ignore[union-attr]
            "SELECT event_id FROM events WHERE event_id IN (SELECT unnest(?::VARCHAR[]))", [event_ids]
        ).fetchall()
        return {r[0] for r in rows}

    def histories(self, user_keys: list[str]) -> dict[str, dict[str, Any]]:
        cur = self.con.execute(  # type: ignore[union-attr]
            f"SELECT * FROM {USER_FEATURES} WHERE user_key IN (SELECT unnest(?::VARCHAR[]))", [user_keys]
        )
        names = [d[0] for d in cur.description]
        return {row[0]: history_row(dict(zip(names, row, strict=True))) for row in cur.fetchall()}


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
        lo = (_EPOCH + dt.timedelta(days=first_day)).date().isoformat()
        hi = (_EPOCH + dt.timedelta(days=last_day)).date().isoformat()
        found: set[str] = set()
        for i in range(0, len(event_ids), self.CHUNK):
            ids = ", ".join(sql_string(e) for e in event_ids[i : i + self.CHUNK])
            rows = self._rows(
                "SELECT event_id FROM events"
                f" WHERE event_date BETWEEN '{lo}' AND '{hi}' AND event_id IN ({ids})"
            )
            found.update(r[0] for r in rows)
        return found

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
