"""The user-state store on Azure: one entity per user in Cosmos DB for Table.

Cosmos DB for Table (serverless) rather than a storage account's Table
service: the same ``azure-data-tables`` client and wire protocol, but it
expires entities by TTL, which Table storage cannot, and it has private
endpoints and customer-managed keys on the account. Reached with Entra ID
(the Function App's managed identity; keys stay off).

Entity: ``PartitionKey`` is the user key (characters Table keys forbid are
percent-encoded), ``RowKey`` is ``activity``; properties ``touches`` (the
window as JSON), ``last_seen_at``, ``updated_at`` (Int64 microseconds) and
``expires_at`` (epoch seconds, for a reader; the container's default TTL
does the deleting). A write is conditional on the ETag read
(``If-Match``), or a create for a new user.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pipeline_code.core.userstate import Activity, decode_touches, encode_touches
from pipeline_code.userstate import DEFAULT_TTL_DAYS, expires_at_s

ROW = "activity"
COSMOS_AUDIENCE = "https://cosmos.azure.com"

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
    """``UserState`` on a table (``USER_STATE=tables:https://ACCOUNT.table.cosmos.azure.com/TABLE``)."""

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

    def close(self) -> None:
        self.client.close()
