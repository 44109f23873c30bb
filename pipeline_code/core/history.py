"""Deduplication, sessionization and enrichment with the customer's history.

Pure functions over lists of records, no engine. Engines call them per
shard: every record of one event id (for dedup) or of one user (for
history) lands in the same shard, chosen by ``shard_of``, so each shard can
be processed alone and in one pass.

A user's history (``UserHistory``, stored as the ``user_features`` table) is
what the chain knew about them before this run; ``enrich_user`` walks the
user's new events in event-time order, annotates each with what was known
just before it, and returns the updated history. Across runs, events are
applied in arrival order: a late event from yesterday is enriched with
today's history.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

SESSION_GAP_US = 30 * 60 * 1_000_000
"""Inactivity that ends a session when the tracker sends no session id (GA4's default)."""

RECENT_ITEMS = 20
RECENT_ITEMS_ON_EVENT = 10
SESSION_ITEMS = 50

# Events whose items count as the user's interest (not list impressions).
INTEREST_EVENTS = frozenset(
    {
        "select_item",
        "view_item",
        "add_to_wishlist",
        "add_to_cart",
        "begin_checkout",
        "add_shipping_info",
        "add_payment_info",
        "purchase",
    }
)


def shard_of(key: str, shards: int) -> int:
    """A stable shard for a key (Python's ``hash`` is salted per process)."""
    return zlib.crc32(key.encode("utf-8")) % shards


def split_by_shard(
    records: Iterable[dict[str, Any]], key: str, shards: int
) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for rec in records:
        out.setdefault(shard_of(rec[key], shards), []).append(rec)
    return out


def keep_first_seen(
    records: Iterable[dict[str, Any]], known_ids: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], int]:
    """Drop events whose id was stored before or came earlier in the log.

    Returns ``(unique records in log order, number dropped)``.
    """
    seen = set(known_ids)
    unique: list[dict[str, Any]] = []
    dropped = 0
    for rec in sorted(records, key=lambda r: r["source_offset"]):
        if rec["event_id"] in seen:
            dropped += 1
            continue
        seen.add(rec["event_id"])
        unique.append(rec)
    return unique, dropped


@dataclass
class UserHistory:
    """One ``user_features`` row."""

    user_key: str
    first_seen_at: int
    last_seen_at: int
    lifetime_events: int = 0
    lifetime_purchases: int = 0
    lifetime_revenue: float = 0.0
    recent_items: list[str] = field(default_factory=list)
    last_session_key: str | None = None
    last_session_items: list[str] = field(default_factory=list)
    is_bot: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> UserHistory:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def _interest_items(rec: dict[str, Any]) -> list[str]:
    if rec["event_name"] not in INTEREST_EVENTS:
        return []
    return [i["item_id"] for i in rec["items"]]


def _remember(items: list[str], new: list[str], limit: int) -> list[str]:
    """Newest first, distinct, bounded."""
    if not new:
        return items
    merged = list(dict.fromkeys([*reversed(new), *items]))
    return merged[:limit]


def enrich_user(
    user_key: str,
    records: list[dict[str, Any]],
    history: UserHistory | None,
    session_gap_us: int = SESSION_GAP_US,
) -> tuple[list[dict[str, Any]], UserHistory]:
    """Annotate one user's new events and advance their history.

    Adds to each record: ``user_event_number``, ``user_purchases_before``,
    ``user_revenue_before``, ``user_recent_items``,
    ``seconds_since_previous_event``, ``session_key`` and, for the features
    step only, ``_session_items_before``.
    """
    ordered = sorted(records, key=lambda r: (r["event_timestamp"], r["source_offset"]))
    h = history
    if h is None:
        first = ordered[0]["event_timestamp"]
        h = UserHistory(user_key=user_key, first_seen_at=first, last_seen_at=first)
        previous_at: int | None = None
    else:
        # A shallow copy: the lists in a history are replaced, never changed in place.
        h = copy.copy(h)
        previous_at = h.last_seen_at
    for rec in ordered:
        ts = rec["event_timestamp"]
        if rec["session_id"] is not None:
            session_key = f"{user_key}/{rec['session_id']}"
        elif (
            h.last_session_key is not None
            and previous_at is not None
            and 0 <= ts - previous_at <= session_gap_us
        ):
            session_key = h.last_session_key
        else:
            session_key = f"{user_key}/t{ts // 1_000_000}"
        same_session = session_key == h.last_session_key
        rec["session_key"] = session_key
        rec["_session_items_before"] = list(h.last_session_items) if same_session else []
        rec["user_event_number"] = h.lifetime_events + 1
        rec["user_purchases_before"] = h.lifetime_purchases
        rec["user_revenue_before"] = round(h.lifetime_revenue, 2)
        rec["user_recent_items"] = h.recent_items[:RECENT_ITEMS_ON_EVENT]
        rec["seconds_since_previous_event"] = (ts - previous_at) / 1e6 if previous_at is not None else None

        items = _interest_items(rec)
        h.lifetime_events += 1
        if rec["event_name"] == "purchase":
            h.lifetime_purchases += 1
            h.lifetime_revenue += rec["value"] or 0.0
        elif rec["event_name"] == "refund":
            h.lifetime_revenue -= rec["value"] or 0.0
        h.recent_items = _remember(h.recent_items, items, RECENT_ITEMS)
        session_items = h.last_session_items if same_session else []
        h.last_session_items = list(dict.fromkeys([*session_items, *items]))[:SESSION_ITEMS]
        h.last_session_key = session_key
        h.first_seen_at = min(h.first_seen_at, ts)
        h.last_seen_at = max(h.last_seen_at, ts)
        h.is_bot = h.is_bot or rec["is_bot"]
        previous_at = ts if previous_at is None else max(previous_at, ts)
    return ordered, h


def enrich_shard(
    records: Iterable[dict[str, Any]],
    histories: dict[str, UserHistory],
    session_gap_us: int = SESSION_GAP_US,
) -> tuple[list[dict[str, Any]], list[UserHistory]]:
    """Enrich every user of one shard. Returns (records, updated histories)."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_user.setdefault(rec["user_key"], []).append(rec)
    out: list[dict[str, Any]] = []
    updated: list[UserHistory] = []
    for user_key in sorted(by_user):
        enriched, h = enrich_user(user_key, by_user[user_key], histories.get(user_key), session_gap_us)
        out.extend(enriched)
        updated.append(h)
    return out, updated
