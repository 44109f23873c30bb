"""The user-state store on AWS: one DynamoDB item per user.

Item: ``user_key`` (the partition key), ``touches`` (the window as JSON),
``last_seen_at`` and ``updated_at`` (microseconds), ``expires_at`` (epoch
seconds: the table's TTL attribute) and ``version``. A write is a
``PutItem`` conditional on the version read (``attribute_not_exists`` for a
new user), so concurrent Lambda instances never lose each other's touches.
The fast path reads strongly consistent (it merges); the API's ``get`` reads
eventually consistent, half the read units and fresh within a second.
boto3 is imported on use, with tight timeouts and the SDK's own retries
capped so that the API's budget holds.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline_code.core.userstate import Activity, decode_touches, encode_touches
from pipeline_code.userstate import DEFAULT_TTL_DAYS, expires_at_s

TTL_ATTRIBUTE = "expires_at"
KEY = "user_key"


class DynamoUserState:
    """``UserState`` on a DynamoDB table (``USER_STATE=dynamodb:<table>``)."""

    def __init__(
        self,
        table: str,
        ttl_days: int = DEFAULT_TTL_DAYS,
        timeout: float = 2.0,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.table = table
        self.ttl_days = ttl_days
        config = Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"}
        )
        self.client = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)

    def _get(self, user_key: str, consistent: bool) -> tuple[Activity | None, Any]:
        item = self.client.get_item(
            TableName=self.table, Key={KEY: {"S": user_key}}, ConsistentRead=consistent
        ).get("Item")
        if item is None:
            return None, None
        version = item["version"]["N"]
        # DynamoDB deletes expired items within days, not at once: an expired
        # item is absent to readers, and a writer replaces it.
        if int(item[TTL_ATTRIBUTE]["N"]) < time.time():
            return None, version
        state = Activity(
            user_key,
            decode_touches(item["touches"]["S"]),
            int(item["last_seen_at"]["N"]),
            int(item["updated_at"]["N"]),
        )
        return state, version

    def read(self, user_key: str) -> tuple[Activity | None, Any]:
        return self._get(user_key, consistent=True)

    def get(self, user_key: str) -> Activity | None:
        return self._get(user_key, consistent=False)[0]

    def write(self, state: Activity, version: Any) -> bool:
        item = {
            KEY: {"S": state.user_key},
            "touches": {"S": encode_touches(state.touches).decode()},
            "last_seen_at": {"N": str(state.last_seen_at)},
            "updated_at": {"N": str(state.updated_at)},
            TTL_ATTRIBUTE: {"N": str(expires_at_s(state.updated_at, self.ttl_days))},
            "version": {"N": str(int(version or 0) + 1)},
        }
        if version is None:
            condition: dict[str, Any] = {"ConditionExpression": f"attribute_not_exists({KEY})"}
        else:
            condition = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
        try:
            self.client.put_item(TableName=self.table, Item=item, **condition)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def close(self) -> None:
        self.client.close()
