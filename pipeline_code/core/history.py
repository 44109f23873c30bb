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
import operator
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


def losing_copies(keys: Iterable[tuple[str, int]], known_ids: Iterable[str] = ()) -> list[tuple[str, int]]:
    """The copies ``keep_first_seen`` drops, as ``(event_id, source_offset)``
    keys of valid records: each copy of an id stored before, and each but
    the first in log order of the others."""
    seen = set(known_ids)
    losers = []
    for event_id, offset in sorted(keys, key=operator.itemgetter(1)):
        if event_id in seen:
            losers.append((event_id, offset))
        else:
            seen.add(event_id)
    return losers


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
        """The ``user_features`` row. It shares the history's lists, which
        are replaced when they change, never changed in place (``enrich_user``):
        ``dataclasses.asdict`` would copy them, 32 µs a history of 50 items
        against 0.5."""
        return {name: getattr(self, name) for name in _HISTORY_FIELDS}


_HISTORY_FIELDS = tuple(UserHistory.__dataclass_fields__)
EVENT_ORDER = operator.itemgetter("event_timestamp", "source_offset")
"""A record's place in event time: its timestamp, then its log position."""


def _remember(items: list[str], new: list[str], limit: int) -> list[str]:
    """Newest first, distinct, bounded."""
    if not new:
        return items
    merged = list(dict.fromkeys([*reversed(new), *items]))
    return merged[:limit]


def item_ids(record: dict[str, Any]) -> list[str]:
    """The ids of a record's items, in order."""
    return [i["item_id"] for i in record["items"]]


class Walk(NamedTuple):
    """What enrichment reads of a batch of events, a list per field, aligned
    by row: ``event_timestamp`` (UTC microseconds), ``session_id``,
    ``event_name``, ``value``, ``is_bot`` and each event's item ids."""

    timestamps: list[int]
    session_ids: list[str | None]
    names: list[str]
    values: list[float | None]
    bots: list[bool]
    item_ids: list[list[str]]


class Enrichment(NamedTuple):
    """What enrichment gives each row, a list per column, aligned by row
    (``session_items_before``: what the row's session held before it, for
    the features step only; a record's ``_session_items_before``)."""

    session_key: list[Any]
    session_items_before: list[Any]
    user_event_number: list[Any]
    user_purchases_before: list[Any]
    user_revenue_before: list[Any]
    user_recent_items: list[Any]
    seconds_since_previous_event: list[Any]

    @classmethod
    def of(cls, rows: int) -> Enrichment:
        return cls(*([None] * rows for _ in cls._fields))


def walk_user(
    user_key: str,
    rows: Iterable[int],
    walk: Walk,
    history: UserHistory | None,
    out: Enrichment,
    session_gap_us: int = SESSION_GAP_US,
) -> UserHistory:
    """Enrich one user's new events, the ``rows`` of ``walk`` in event order
    (``EVENT_ORDER``), writing each row's enrichment into ``out``; returns
    the advanced history. The one implementation of enrichment: the
    per-record ``enrich_user`` and the columnar ``arrow_events.enrich_table`` both walk here."""
    rows = list(rows)
    ts_of, session_of, name_of, value_of, bot_of, ids_of = walk
    out_key, out_before, out_number, out_purchases, out_revenue, out_recent, out_since = out
    h = history
    if h is None:
        first = ts_of[rows[0]]
        h = UserHistory(user_key=user_key, first_seen_at=first, last_seen_at=first)
        previous_at: int | None = None
    else:
        # A shallow copy: the lists in a history are replaced, never changed in place.
        h = copy.copy(h)
        previous_at = h.last_seen_at
    # The walk keeps the history in locals and shares lists between rows
    # where it can: a list is replaced when it changes, never changed in place,
    # so a row's ``user_recent_items`` and ``_session_items_before`` stay
    # what they were when it was enriched.
    events, purchases, revenue = h.lifetime_events, h.lifetime_purchases, h.lifetime_revenue
    recent, last_key, session_items = h.recent_items, h.last_session_key, h.last_session_items
    # A stored list is used as it is once, then normalised (distinct, bounded) by the first event.
    tidy = len(session_items) <= SESSION_ITEMS and len(set(session_items)) == len(session_items)
    recent_shown, shown_of = recent[:RECENT_ITEMS_ON_EVENT], recent
    first_seen, last_seen, is_bot = h.first_seen_at, h.last_seen_at, h.is_bot
    for row in rows:
        ts = ts_of[row]
        session_id = session_of[row]
        if session_id is not None:
            session_key = f"{user_key}/{session_id}"
        elif last_key is not None and previous_at is not None and 0 <= ts - previous_at <= session_gap_us:
            session_key = last_key
        else:
            session_key = f"{user_key}/t{ts // 1_000_000}"
        same_session = session_key == last_key
        if recent is not shown_of:
            recent_shown, shown_of = recent[:RECENT_ITEMS_ON_EVENT], recent
        out_key[row] = session_key
        out_before[row] = session_items if same_session else []
        out_number[row] = events + 1
        out_purchases[row] = purchases
        out_revenue[row] = round(revenue, 2)
        out_recent[row] = recent_shown
        out_since[row] = (ts - previous_at) / 1e6 if previous_at is not None else None

        name = name_of[row]
        items = ids_of[row] if name in INTEREST_EVENTS else []
        events += 1
        if name == "purchase":
            purchases += 1
            revenue += value_of[row] or 0.0
        elif name == "refund":
            revenue -= value_of[row] or 0.0
        if items:
            recent = _remember(recent, items, RECENT_ITEMS)
        if not same_session:
            session_items = list(dict.fromkeys(items))[:SESSION_ITEMS] if items else []
            tidy = True
        elif (items and len(session_items) < SESSION_ITEMS) or not tidy:
            session_items = list(dict.fromkeys([*session_items, *items]))[:SESSION_ITEMS]
            tidy = True
        last_key = session_key
        if ts < first_seen:
            first_seen = ts
        if ts > last_seen:
            last_seen = ts
        is_bot = is_bot or bot_of[row]
        previous_at = ts if previous_at is None or ts > previous_at else previous_at
    h.lifetime_events, h.lifetime_purchases, h.lifetime_revenue = events, purchases, revenue
    h.recent_items, h.last_session_key, h.last_session_items = recent, last_key, session_items
    h.first_seen_at, h.last_seen_at, h.is_bot = first_seen, last_seen, is_bot
    return h


def enrich_user(
    user_key: str,
    records: list[dict[str, Any]],
    history: UserHistory | None,
    session_gap_us: int = SESSION_GAP_US,
) -> tuple[list[dict[str, Any]], UserHistory]:
    """Annotate one user's new events and advance their history
    (``walk_user`` over the records).

    Adds to each record: ``user_event_number``, ``user_purchases_before``,
    ``user_revenue_before``, ``user_recent_items``,
    ``seconds_since_previous_event``, ``session_key`` and, for the features
    step only, ``_session_items_before``.
    """
    ordered = sorted(records, key=EVENT_ORDER)
    walk = Walk(
        [rec["event_timestamp"] for rec in ordered],
        [rec["session_id"] for rec in ordered],
        [rec["event_name"] for rec in ordered],
        [rec["value"] for rec in ordered],
        [rec["is_bot"] for rec in ordered],
        [item_ids(rec) for rec in ordered],
    )
    out = Enrichment.of(len(ordered))
    h = walk_user(user_key, range(len(ordered)), walk, history, out, session_gap_us)
    key, before, number, purchases, revenue, recent, since = out
    for i, rec in enumerate(ordered):
        rec["session_key"] = key[i]
        rec["_session_items_before"] = before[i]
        rec["user_event_number"] = number[i]
        rec["user_purchases_before"] = purchases[i]
        rec["user_revenue_before"] = revenue[i]
        rec["user_recent_items"] = recent[i]
        rec["seconds_since_previous_event"] = since[i]
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
