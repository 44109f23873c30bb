"""The training export's SQL: what each cloud's scheduled export runs
(``export_sql``), and the weights the training reads it with.

Text only, with no training library imported: the stacks import it to
plan their exports, and a cold plan should not pay for DuckDB, NumPy and
SciPy (about 0.1 s a stack). ``pipeline_code.ml.data`` reads the export.
"""

from __future__ import annotations

from pipeline_code.core.features import INTERACTION_WEIGHTS


def weight_case() -> str:
    whens = " ".join(f"WHEN '{name}' THEN {w!r}" for name, w in sorted(INTERACTION_WEIGHTS.items()))
    return f"CASE event_name {whens} END"


EXPORT_COLUMNS = ("user_key", "item_id", "event_name", "event_timestamp", "session_key", "source_offset")
"""The training export: one row per human event and item (``export_sql``)."""


def _human_filter() -> str:
    names = ", ".join(f"'{n}'" for n in sorted(INTERACTION_WEIGHTS))
    return f"NOT is_bot AND event_name IN ({names})"


def export_sql(dialect: str) -> str:
    """The ``SELECT`` that flattens ``events`` into the training export, in
    ``dialect`` (``duckdb``, ``bigquery``, ``redshift``, ``tsql``). Each cloud's
    scheduled export wraps it (EXPORT DATA, UNLOAD, CETAS) to Parquet; the
    training job reads those files with ``read_exported``."""
    cols = "e.user_key, it.item_id, e.event_name, e.event_timestamp, e.session_key, e.source_offset"
    where = _human_filter().replace("is_bot", "e.is_bot").replace("event_name IN", "e.event_name IN")
    if dialect == "duckdb":
        source = "(SELECT *, unnest(items) AS it FROM events) AS e"
        cols = cols.replace("it.item_id", "e.it.item_id AS item_id")
    elif dialect == "bigquery":
        source = "events AS e CROSS JOIN UNNEST(e.items) AS it"
    elif dialect == "redshift":
        # PartiQL: iterating the SUPER array of items.
        source = "events AS e, e.items AS it"
        cols = cols.replace("it.item_id", "it.item_id::VARCHAR AS item_id")
    elif dialect == "tsql":
        # Synapse keeps repeated records as JSON text.
        source = "events AS e CROSS APPLY OPENJSON(e.items) WITH (item_id NVARCHAR(256) '$.item_id') AS it"
    else:
        raise ValueError(f"dialect must be duckdb, bigquery, redshift or tsql, got {dialect!r}")
    return f"SELECT {cols} FROM {source} WHERE {where}"
