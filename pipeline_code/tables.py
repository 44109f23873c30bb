"""The warehouse's logical tables, described once for every warehouse.

Each table is a list of columns with neutral types (the BigQuery type names,
which map cleanly onto DuckDB, Redshift and Synapse). The local warehouse
renders DuckDB DDL and Arrow schemas from here; the cloud components render
their own DDL from the same description, so the tables are the same
everywhere. ``merge`` says how a run's rows combine with rows already stored:

- ``insert_new``: rows whose key is already present are skipped (idempotence);
- ``append``: every row is kept (dead letters: each arrival is a fact);
- ``replace``: the newer row wins (a user's latest state);
- ``add``: numeric columns are summed, ``min``/``max`` columns keep the extreme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa

Merge = Literal["insert_new", "append", "replace", "add"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # STRING INT64 FLOAT64 BOOL TIMESTAMP DATE BYTES RECORD
    mode: Literal["REQUIRED", "NULLABLE", "REPEATED"] = "NULLABLE"
    description: str = ""
    fields: tuple[Column, ...] = ()
    # How the column merges when the table's merge is "add".
    combine: Literal["sum", "min", "max", "last"] = "last"
    # Money: sums are rounded to this many decimals, so totals do not depend
    # on the order floats were added in (batches, shards, runs).
    decimals: int | None = None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    merge: Merge
    partition_by: str | None = None  # a DATE or TIMESTAMP column
    cluster_by: tuple[str, ...] = field(default_factory=tuple)
    # Who writes it: the processing job (every pipeline table) or the
    # training job (its decisions); each identity is granted only its own.
    writer: Literal["processing", "training"] = "processing"

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: str, mode: str = "NULLABLE", description: str = "", **kw) -> Column:
    return Column(name, type_, mode, description, **kw)  # type: ignore[arg-type]


ITEM_FIELDS = (
    _c("item_id", "STRING", "REQUIRED"),
    _c("item_name", "STRING"),
    _c("item_category", "STRING"),
    _c("item_brand", "STRING"),
    _c("price", "FLOAT64"),
    _c("quantity", "INT64"),
)
CONTEXT_FIELDS = (
    _c("page_url", "STRING"),
    _c("page_referrer", "STRING"),
    _c("page_title", "STRING"),
    _c("user_agent", "STRING"),
    _c("device_category", "STRING"),
    _c("locale", "STRING"),
    _c("campaign_source", "STRING"),
    _c("campaign_medium", "STRING"),
)

EVENTS = Table(
    "events",
    "One row per accepted event, normalised and enriched with the user's history.",
    (
        _c("event_id", "STRING", "REQUIRED", "Producer-assigned id; the idempotence key."),
        _c("event_name", "STRING", "REQUIRED"),
        _c("event_timestamp", "TIMESTAMP", "REQUIRED", "When it happened (UTC)."),
        _c("event_date", "DATE", "REQUIRED", "UTC date of event_timestamp; the partition."),
        _c("received_at", "TIMESTAMP", "REQUIRED", "When the ingest accepted it."),
        _c("schema_version", "STRING", "REQUIRED"),
        _c("user_id", "STRING"),
        _c("anonymous_id", "STRING"),
        _c("user_key", "STRING", "REQUIRED", "user_id, else 'anon:' + anonymous_id."),
        _c("session_id", "STRING", description="As sent by the tracker."),
        _c("session_key", "STRING", "REQUIRED", "Sent session, else 30-minute gap."),
        _c("items", "RECORD", "REPEATED", fields=ITEM_FIELDS),
        _c("search_term", "STRING", description="Trimmed, lower-cased, spaces collapsed."),
        _c("transaction_id", "STRING"),
        _c("currency", "STRING"),
        _c("value", "FLOAT64", description="Sent value, else sum of price x quantity."),
        _c("context", "RECORD", fields=CONTEXT_FIELDS),
        _c("is_bot", "BOOL", "REQUIRED", "User agent looks like a crawler."),
        _c("user_event_number", "INT64", "REQUIRED", "1 for the user's first event."),
        _c("user_purchases_before", "INT64", "REQUIRED"),
        _c("user_revenue_before", "FLOAT64", "REQUIRED"),
        _c("user_recent_items", "STRING", "REPEATED", "Items of the user's last events."),
        _c("seconds_since_previous_event", "FLOAT64"),
        _c("source_offset", "INT64", "REQUIRED", "Position in the ingest log."),
    ),
    key=("event_id",),
    merge="insert_new",
    partition_by="event_date",
    cluster_by=("event_name", "user_key"),
)

DEAD_LETTERS = Table(
    "dead_letters",
    "Every input that failed, with its original bytes; nothing is dropped.",
    (
        _c("payload", "BYTES", "REQUIRED", "The original input, byte for byte."),
        _c("payload_text", "STRING", description="The payload as text when valid UTF-8."),
        _c("error_message", "STRING", "REQUIRED"),
        _c("failed_stage", "STRING", "REQUIRED", "parse, validate, ..."),
        _c("received_at", "TIMESTAMP", "REQUIRED"),
        _c("dead_lettered_at", "TIMESTAMP", "REQUIRED"),
        _c("event_id", "STRING", description="When one could be read."),
        _c("source_offset", "INT64", "REQUIRED"),
    ),
    key=("source_offset",),
    merge="append",
    partition_by="received_at",
    cluster_by=("failed_stage",),
)

SESSIONS = Table(
    "sessions",
    "One row per session; runs that see more of a session extend it.",
    (
        _c("session_key", "STRING", "REQUIRED"),
        _c("user_key", "STRING", "REQUIRED", combine="last"),
        _c("started_at", "TIMESTAMP", "REQUIRED", combine="min"),
        _c("ended_at", "TIMESTAMP", "REQUIRED", combine="max"),
        _c("events", "INT64", "REQUIRED", combine="sum"),
        _c("item_views", "INT64", "REQUIRED", combine="sum"),
        _c("add_to_carts", "INT64", "REQUIRED", combine="sum"),
        _c("purchases", "INT64", "REQUIRED", combine="sum"),
        _c("revenue", "FLOAT64", "REQUIRED", combine="sum", decimals=2),
        _c("is_bot", "BOOL", "REQUIRED", combine="max"),
    ),
    key=("session_key",),
    merge="add",
    partition_by="started_at",
    cluster_by=("user_key",),
)

USER_FEATURES = Table(
    "user_features",
    "Each user's running history: what enrichment reads and the recommender uses.",
    (
        _c("user_key", "STRING", "REQUIRED"),
        _c("first_seen_at", "TIMESTAMP", "REQUIRED"),
        _c("last_seen_at", "TIMESTAMP", "REQUIRED"),
        _c("lifetime_events", "INT64", "REQUIRED"),
        _c("lifetime_purchases", "INT64", "REQUIRED"),
        _c("lifetime_revenue", "FLOAT64", "REQUIRED"),
        _c("recent_items", "STRING", "REPEATED", "Newest first, at most 20."),
        _c("last_session_key", "STRING"),
        _c("last_session_items", "STRING", "REPEATED", "Distinct, at most 50."),
        _c("is_bot", "BOOL", "REQUIRED"),
    ),
    key=("user_key",),
    merge="replace",
    cluster_by=("user_key",),
)

USER_ITEM_INTERACTIONS = Table(
    "user_item_interactions",
    "Implicit-feedback weights: the recommender's training matrix.",
    (
        _c("user_key", "STRING", "REQUIRED"),
        _c("item_id", "STRING", "REQUIRED"),
        _c("weight", "FLOAT64", "REQUIRED", "Sum of event weights.", combine="sum"),
        _c("events", "INT64", "REQUIRED", combine="sum"),
        _c("last_interaction_at", "TIMESTAMP", "REQUIRED", combine="max"),
    ),
    key=("user_key", "item_id"),
    merge="add",
    cluster_by=("user_key",),
)

ITEM_FEATURES = Table(
    "item_features",
    "Per item: latest catalogue attributes and lifetime counts.",
    (
        _c("item_id", "STRING", "REQUIRED"),
        _c("item_name", "STRING", combine="last"),
        _c("item_category", "STRING", combine="last"),
        _c("item_brand", "STRING", combine="last"),
        _c("last_price", "FLOAT64", combine="last"),
        _c("first_seen_at", "TIMESTAMP", "REQUIRED", combine="min"),
        _c("last_seen_at", "TIMESTAMP", "REQUIRED", combine="max"),
        _c("views", "INT64", "REQUIRED", combine="sum"),
        _c("add_to_carts", "INT64", "REQUIRED", combine="sum"),
        _c("purchases", "INT64", "REQUIRED", combine="sum"),
        _c("units_sold", "INT64", "REQUIRED", combine="sum"),
        _c("revenue", "FLOAT64", "REQUIRED", combine="sum", decimals=2),
    ),
    key=("item_id",),
    merge="add",
    cluster_by=("item_id",),
)

ITEM_POPULARITY = Table(
    "item_popularity",
    "Per item and event-time window: what was popular when.",
    (
        _c("item_id", "STRING", "REQUIRED"),
        _c("window_start", "TIMESTAMP", "REQUIRED"),
        _c("window_end", "TIMESTAMP", "REQUIRED", combine="max"),
        _c("views", "INT64", "REQUIRED", combine="sum"),
        _c("add_to_carts", "INT64", "REQUIRED", combine="sum"),
        _c("purchases", "INT64", "REQUIRED", combine="sum"),
        _c("revenue", "FLOAT64", "REQUIRED", combine="sum", decimals=2),
    ),
    key=("item_id", "window_start"),
    merge="add",
    partition_by="window_start",
    cluster_by=("item_id",),
)

ITEM_COOCCURRENCE = Table(
    "item_cooccurrence",
    "Sessions in which both items were interacted with (both directions stored).",
    (
        _c("item_id", "STRING", "REQUIRED"),
        _c("other_item_id", "STRING", "REQUIRED"),
        _c("sessions", "INT64", "REQUIRED", combine="sum"),
    ),
    key=("item_id", "other_item_id"),
    merge="add",
    cluster_by=("item_id",),
)

MODEL_VERSIONS = Table(
    "model_versions",
    "Every trained model version, the gate's decision on it and whether it serves.",
    (
        _c("model_version", "STRING", "REQUIRED"),
        _c("trained_at", "TIMESTAMP", "REQUIRED"),
        _c("decision", "STRING", "REQUIRED", "The gate's: promoted or refused."),
        _c("reason", "STRING", "REQUIRED", "Why, with the numbers compared."),
        _c("candidate_ndcg", "FLOAT64", "REQUIRED", "NDCG@k of the candidate on the holdout."),
        _c("baseline_ndcg", "FLOAT64", "REQUIRED", "NDCG@k of popularity on the same holdout."),
        _c("production_version", "STRING", description="The version serving when it was trained."),
        _c("production_ndcg", "FLOAT64", description="NDCG@k of that version on the same holdout."),
        _c("tolerance", "FLOAT64", "REQUIRED", "Share of production's NDCG a candidate may lose."),
        _c("holdout_cutoff", "TIMESTAMP", "REQUIRED"),
        _c("interactions", "INT64", "REQUIRED", "Interactions it was trained on."),
        _c("artifact", "STRING", "REQUIRED", "Where the version's files are."),
        _c("serving", "BOOL", "REQUIRED", "Whether it is the version served now."),
        _c("updated_at", "TIMESTAMP", "REQUIRED", "When the row last changed (a promotion, a rollback)."),
    ),
    key=("model_version",),
    merge="replace",
    writer="training",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        EVENTS,
        DEAD_LETTERS,
        SESSIONS,
        USER_FEATURES,
        USER_ITEM_INTERACTIONS,
        ITEM_FEATURES,
        ITEM_POPULARITY,
        ITEM_COOCCURRENCE,
        MODEL_VERSIONS,
    )
}


def written_by(writer: str) -> list[str]:
    """The names of the tables ``writer`` ("processing" or "training") writes."""
    return [name for name, t in TABLES.items() if t.writer == writer]


_ARROW = {
    "STRING": "string",
    "INT64": "int64",
    "FLOAT64": "float64",
    "BOOL": "bool_",
    "DATE": "date32",
    "BYTES": "binary",
}
"""Arrow's type for each neutral type (pyarrow's factory names; TIMESTAMP is
microseconds in UTC). pyarrow is imported where Arrow is used, not here:
the stacks read these tables to plan their DDL, and a cold plan should not
pay for pyarrow and NumPy (about 60 ms a stack)."""


def _arrow_type(col: Column) -> pa.DataType:
    import pyarrow as pa

    if col.type == "RECORD":
        base = pa.struct([_arrow_field(f) for f in col.fields])
    elif col.type == "TIMESTAMP":
        base = pa.timestamp("us", tz="UTC")
    else:
        base = getattr(pa, _ARROW[col.type])()
    return pa.list_(base) if col.mode == "REPEATED" else base


def _arrow_field(col: Column) -> pa.Field:
    import pyarrow as pa

    return pa.field(col.name, _arrow_type(col), nullable=col.mode != "REQUIRED")


def arrow_schema(table: Table) -> pa.Schema:
    """The table as an Arrow schema (what staged Parquet files carry)."""
    import pyarrow as pa

    return pa.schema([_arrow_field(c) for c in table.columns])


def arrow_table(table: Table, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts; a missing key is null, keys beyond the columns are
    ignored) as an Arrow table of ``table``'s schema: what
    ``pa.Table.from_pylist`` gives, converted as one struct array: Arrow
    reads each row once, where ``from_pylist`` first builds a Python list
    per column (about twice as fast on ``events`` rows)."""
    import pyarrow as pa

    schema = arrow_schema(table)
    return pa.Table.from_struct_array(pa.array(rows, type=pa.struct(list(schema)))).cast(schema)


def conform(table: Table, arrow: pa.Table) -> pa.Table:
    """An Arrow table with ``table``'s columns (in any order, timestamps as
    UTC microseconds or as Arrow timestamps, and maybe more columns) as
    ``table``'s Arrow schema, columns in order."""
    return arrow.select(table.column_names()).cast(arrow_schema(table))


def as_arrow(table: Table, rows: list[dict[str, Any]] | pa.Table) -> pa.Table:
    """Rows as ``table``'s Arrow table, whether dicts (``arrow_table``) or
    already Arrow (``conform``): what a sink's ``stage`` takes."""
    import pyarrow as pa

    return conform(table, rows) if isinstance(rows, pa.Table) else arrow_table(table, rows)


_DUCKDB = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATE": "DATE",
    "BYTES": "BLOB",
}


def _duckdb_type(col: Column) -> str:
    if col.type == "RECORD":
        base = "STRUCT(" + ", ".join(f"{f.name} {_duckdb_type(f)}" for f in col.fields) + ")"
    else:
        base = _DUCKDB[col.type]
    return base + "[]" if col.mode == "REPEATED" else base


def duckdb_ddl(table: Table) -> str:
    """CREATE TABLE for DuckDB. DuckDB has no partitions: the partition column
    is kept so queries read the same everywhere. Only ``insert_new`` tables
    (``events``) get a key constraint, the guard against storing an event
    twice: DuckDB holds a key's ART index in memory whenever rows are merged
    into its table, and the other tables merge by ``MERGE INTO``, whose
    source holds one row per key, with no index (an append-only table has no
    key: each arrival is its own row)."""
    cols = [
        f"{c.name} {_duckdb_type(c)}" + (" NOT NULL" if c.mode == "REQUIRED" else "") for c in table.columns
    ]
    if table.merge == "insert_new":
        cols.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n  " + ",\n  ".join(cols) + "\n)"
