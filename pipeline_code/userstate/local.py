"""The local user-state store: SQLite in WAL mode, beside the warehouse.

``dataflow fresh`` writes it and ``dataflow api`` reads it, from separate
processes: SQLite lets one writer and many readers share a file, which the
warehouse's DuckDB file does not. A write is conditional on the row's
version, as in the clouds. Expired rows (``expires_at`` in the past) read
as absent and are purged as the store is written. The fast path's position
in the event log is kept in the same file (``checkpoint``/``save_checkpoint``).

    sqlite3 .dataflow/demo/warehouse.userstate.sqlite 'select user_key, version from user_state limit 5'
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pipeline_code.core.userstate import Activity, decode_touches, encode_touches
from pipeline_code.userstate import DEFAULT_TTL_DAYS, expires_at_s

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_state (
    user_key TEXT PRIMARY KEY,
    touches BLOB NOT NULL,
    last_seen_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (log_id TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""

PURGE_EVERY = 1000
"""Writes between purges of expired rows."""


def path_beside(warehouse: str | Path) -> Path:
    """Where the store lives for a warehouse file: ``<name>.userstate.sqlite``."""
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.stem + ".userstate.sqlite")


class LocalUserState:
    """``UserState`` on a SQLite file. Thread-safe: one connection per thread."""

    def __init__(self, path: str | Path, ttl_days: int = DEFAULT_TTL_DAYS, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl_days = ttl_days
        self.timeout = timeout
        self._local = threading.local()
        self._writes = 0
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def read(self, user_key: str) -> tuple[Activity | None, Any]:
        row = (
            self._db()
            .execute(
                "SELECT touches, last_seen_at, updated_at, expires_at, version "
                "FROM user_state WHERE user_key = ?",
                (user_key,),
            )
            .fetchone()
        )
        if row is None:
            return None, None
        touches, last_seen, updated, expires, version = row
        if expires < time.time():
            # Expired but not yet purged: absent for readers, and a writer
            # replaces it (conditional on the version it saw).
            return None, version
        return Activity(user_key, decode_touches(touches), last_seen, updated), version

    def write(self, state: Activity, version: Any) -> bool:
        values = (
            encode_touches(state.touches),
            state.last_seen_at,
            state.updated_at,
            expires_at_s(state.updated_at, self.ttl_days),
        )
        db = self._db()
        if version is None:
            cursor = db.execute(
                "INSERT OR IGNORE INTO user_state VALUES (?, ?, ?, ?, ?, 1)", (state.user_key, *values)
            )
        else:
            cursor = db.execute(
                "UPDATE user_state SET touches = ?, last_seen_at = ?, updated_at = ?, expires_at = ?, "
                "version = version + 1 WHERE user_key = ? AND version = ?",
                (*values, state.user_key, version),
            )
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            db.execute("DELETE FROM user_state WHERE expires_at < ?", (int(time.time()),))
        return cursor.rowcount == 1

    def get(self, user_key: str) -> Activity | None:
        return self.read(user_key)[0]

    def checkpoint(self, log_id: str) -> int:
        """How far into the event log ``log_id`` the fast path has applied."""
        row = self._db().execute("SELECT offset FROM checkpoints WHERE log_id = ?", (log_id,)).fetchone()
        return row[0] if row else 0

    def save_checkpoint(self, log_id: str, offset: int) -> None:
        self._db().execute(
            "INSERT INTO checkpoints VALUES (?, ?) "
            "ON CONFLICT (log_id) DO UPDATE SET offset = excluded.offset",
            (log_id, offset),
        )

    def users(self) -> int:
        return self._db().execute("SELECT count(*) FROM user_state").fetchone()[0]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
