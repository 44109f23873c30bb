"""The user-state store on Azure: one entity per user in Table storage.

Table storage in a storage account of the chain's own: pay per operation
and gigabyte, Entra ID only (shared keys off), the chain's customer-managed
key over table data, a private endpoint and no public network. Cosmos DB for
Table speaks the same protocol (this client works on both) but costs more
per operation, and neither expires entities by a TTL that ARM can set, so
the TTL is ours: every entity carries ``expires_at``, readers treat an
expired one as absent, and ``purge`` deletes them (the fast path's Function
App runs it daily on a timer).

Entity: ``PartitionKey`` is the user key (characters Table keys forbid are
percent-encoded), ``RowKey`` is ``activity``; properties ``touches`` (the
window as JSON), ``last_seen_at``, ``updated_at`` (Int64 microseconds) and
``expires_at`` (Int64 epoch seconds). A write is conditional on the ETag
read (``If-Match``), or a create for a new user. Reached with
``DefaultAzureCredential`` (the Function App's managed identity).
"""

from __future__ import annotations

import re
import time
from typing import Any

from pipeline_code.core.userstate import Activity, decode_touches, encode_touches
from pipeline_code.userstate import DEFAULT_TTL_DAYS, expires_at_s

ROW = "activity"
COSMOS_AUDIENCE = "https://cosmos.azure.com"
PURGE_SCHEDULE = "0 17 3 * * *"
"""Daily at 03:17 UTC (NCRONTAB, seconds first): when the timer purges."""

# Table keys may not hold / \\ # ? or control characters; % is encoded so
# the mapping stays one to one.
_FORBIDDEN = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")


def table_key(user_key: str) -> str:
    """A user key as a ``PartitionKey``: forbidden characters as ``%XX``."""
    return _FORBIDDEN.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), user_key)


def _int(value: Any) -> int:
    # Int64 properties come back as EntityProperty(value, EdmType.INT64).
    return int(value[0] if isinstance(value, tuple) else value)


class TableUserState:
    """``UserState`` on a table (``USER_STATE=tables:https://ACCOUNT.table.core.windows.net/TABLE``;
    a Cosmos DB for Table endpoint works too)."""

    def __init__(self, client: Any, ttl_days: int = DEFAULT_TTL_DAYS) -> None:
        self.client = client
        self.ttl_days = ttl_days

    @classmethod
    def with_identity(
        cls, endpoint: str, table: str, ttl_days: int = DEFAULT_TTL_DAYS, timeout: float = 2.0
    ) -> TableUserState:
        """The store reached with ``DefaultAzureCredential`` (a managed identity in Azure)."""
        from azure.data.tables import TableClient
        from azure.identity import DefaultAzureCredential

        audience = COSMOS_AUDIENCE if ".cosmos." in endpoint else None
        client = TableClient(
            endpoint,
            table,
            credential=DefaultAzureCredential(),
            audience=audience,
            connection_timeout=timeout,
            read_timeout=timeout,
            retry_total=1,
        )
        return cls(client, ttl_days)

    def read(self, user_key: str) -> tuple[Activity | None, Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self.client.get_entity(table_key(user_key), ROW)
        except ResourceNotFoundError:
            return None, None
        etag = entity.metadata["etag"]
        if _int(entity["expires_at"]) < time.time():
            return None, etag
        state = Activity(
            user_key,
            decode_touches(entity["touches"]),
            _int(entity["last_seen_at"]),
            _int(entity["updated_at"]),
        )
        return state, etag

    def get(self, user_key: str) -> Activity | None:
        return self.read(user_key)[0]

    def write(self, state: Activity, version: Any) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import EdmType, EntityProperty, UpdateMode

        entity = {
            "PartitionKey": table_key(state.user_key),
            "RowKey": ROW,
            "touches": encode_touches(state.touches).decode(),
            "last_seen_at": EntityProperty(state.last_seen_at, EdmType.INT64),
            "updated_at": EntityProperty(state.updated_at, EdmType.INT64),
            "expires_at": EntityProperty(expires_at_s(state.updated_at, self.ttl_days), EdmType.INT64),
        }
        try:
            if version is None:
                self.client.create_entity(entity)
            else:
                self.client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=version,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    def purge(self, now_s: int | None = None) -> int:
        """Delete every entity expired by ``now_s`` (epoch seconds; default
        now); returns how many. Each delete is conditional on the ETag read,
        so a user written meanwhile is kept."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        now_s = int(time.time()) if now_s is None else now_s
        deleted = 0
        expired = self.client.query_entities(
            "expires_at lt @now", parameters={"now": now_s}, select=["PartitionKey", "RowKey"]
        )
        for entity in expired:
            try:
                self.client.delete_entity(
                    entity["PartitionKey"],
                    entity["RowKey"],
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            deleted += 1
        return deleted

    def close(self) -> None:
        self.client.close()
