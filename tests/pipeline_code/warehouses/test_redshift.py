"""Redshift: the DDL and per-batch merge rendered from the table description."""

from __future__ import annotations

import pytest
import sqlglot

from pipeline_code.tables import TABLES
from pipeline_code.warehouses import redshift


def test_redshift_ddl_and_merge_sql_parse_in_the_redshift_dialect():
    statements = [
        *redshift.all_ddl(),
        *redshift.merge_statements("job:7", {t: f"s3://b/staging/7/{t}/" for t in TABLES}, "default"),
    ]
    for sql in statements:
        for tree in sqlglot.parse(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE):
            assert type(tree).__name__ != "Command", f"not parsed, only passed through: {sql[:80]}"
    assert sum(s.startswith("COPY ") for s in statements) == len(TABLES)


def test_every_merge_is_guarded_by_the_batch_key_and_the_batch_is_recorded_last():
    statements = redshift.merge_statements("job:7", {"events": "s3://b/e/", "sessions": "s3://b/s/"})
    guard = "NOT EXISTS (SELECT 1 FROM _dataflow_batches WHERE batch_key = 'job:7')"
    changes = [s for s in statements if s.startswith(("INSERT", "MERGE", "DELETE"))]
    assert len(changes) == 3 and all(guard in s for s in changes)
    assert statements[-1].startswith("INSERT INTO _dataflow_batches")
    with pytest.raises(ValueError, match="unknown tables: \\['evnts'\\]"):
        redshift.merge_statements("k", {"evnts": "s3://b/"})


def test_redshift_ddl_follows_the_table_description():
    events = redshift.ddl(TABLES["events"])
    assert "items SUPER" in events and "event_id VARCHAR(65535) NOT NULL" in events
    assert "DISTKEY (user_key)" in events and "SORTKEY (event_date, event_name, user_key, event_id)" in events
    assert "payload VARBYTE(1024000) NOT NULL" in redshift.ddl(TABLES["dead_letters"])
