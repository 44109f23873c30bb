"""The online user-state stores: one module per store, each the core's ``UserState`` port.

The fast path writes each user's recent activity (``core.userstate``) here and
the API reads it, one read per request:

- ``local``: SQLite beside the local warehouse (``LocalUserState``);
- ``dynamodb``: a DynamoDB table on AWS (``DynamoUserState``);
- ``firestore``: a Firestore collection on GCP (``FirestoreUserState``);
- ``tables``: Table storage on Azure (``TableUserState``).

Each writes conditionally (a version, an ETag, an update time) so that two
function instances merging into one user never lose a touch, and stamps an
expiry from the TTL. Cloud SDKs are imported on use: an image installs only
its own cloud's. ``open_store`` builds one from ``USER_STATE``
(``pipeline_code.host.parse_user_state``); ``store_from_env`` from a
process's environment, as every fast-path adapter starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_code import host
from pipeline_code.core.ports import UserState

DEFAULT_TTL_DAYS = 30


def open_store(value: str | None, ttl_days: int = DEFAULT_TTL_DAYS, timeout: float = 2.0) -> UserState:
    """``USER_STATE`` -> a store; ``timeout`` bounds every call to the store (seconds)."""
    kind, target = host.parse_user_state(value)
    if ttl_days < 1:
        raise ValueError(f"{host.ENV_USER_STATE_TTL_DAYS} must be at least 1, got {ttl_days!r}")
    if kind == "dynamodb":
        from pipeline_code.userstate.dynamodb import DynamoUserState

        return DynamoUserState(target, ttl_days=ttl_days, timeout=timeout)
    if kind == "firestore":
        from pipeline_code.userstate.firestore import FirestoreUserState

        project, database, collection = host.firestore_target(target)
        return FirestoreUserState(project, database, collection, ttl_days=ttl_days, timeout=timeout)
    if kind == "tables":
        from pipeline_code.userstate.tables import TableUserState

        endpoint, table = host.tables_target(target)
        return TableUserState.with_identity(endpoint, table, ttl_days=ttl_days, timeout=timeout)
    from pipeline_code.userstate.local import LocalUserState

    return LocalUserState(target, ttl_days=ttl_days, timeout=timeout)


def store_from_env(env: Mapping[str, str]) -> UserState:
    """The store in ``USER_STATE``, with the TTL in ``USER_STATE_TTL_DAYS``
    (default 30); ``ValueError`` names the variable and the value."""
    raw = env.get(host.ENV_USER_STATE_TTL_DAYS, str(DEFAULT_TTL_DAYS))
    try:
        ttl = int(raw)
    except ValueError:
        raise ValueError(
            f"{host.ENV_USER_STATE_TTL_DAYS} must be a whole number of days, got {raw!r}"
        ) from None
    return open_store(env.get(host.ENV_USER_STATE), ttl_days=ttl)


def expires_at_s(updated_at_us: int, ttl_days: int) -> int:
    """The TTL attribute: epoch seconds ``ttl_days`` after the last write."""
    return updated_at_us // 1_000_000 + ttl_days * 86_400
