"""Features the recommender learns from, computed from enriched records.

Pure functions over a batch of enriched events. Each returns *partial*
rows for the additive tables in ``pipeline_code.tables`` (merge ``add``):
the warehouse sums partials by key on load, so batches, shards and runs can
be processed independently and combined in any order.

Bot traffic is stored in ``events`` but never feeds a feature.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline_code.core.history import EVENT_ORDER

# Implicit-feedback strength of each event for one item (Hu, Koren & Volinsky
# style confidence weights). Removing from the cart is a negative signal;
# training clamps a pair's total at zero.
INTERACTION_WEIGHTS: dict[str, float] = {
    "select_item": 1.0,
    "view_item": 1.0,
    "add_to_wishlist": 2.0,
    "add_to_cart": 3.0,
    "remove_from_cart": -1.0,
    "begin_checkout": 3.0,
    "add_shipping_info": 3.0,
    "add_payment_info": 3.0,
    "purchase": 5.0,
}

# Events that put a pair of items "together in a session".
COOCCURRENCE_EVENTS = frozenset(INTERACTION_WEIGHTS) - {"remove_from_cart"}

Rows = list[dict[str, Any]]

_ATTRIBUTES = (
    ("item_name", "item_name"),
    ("item_category", "item_category"),
    ("item_brand", "item_brand"),
    ("price", "last_price"),
)


def _human(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (r for r in records if not r["is_bot"])


def session_rows(records: Iterable[dict[str, Any]]) -> Rows:
    """Partial ``sessions`` rows, one per session key in the batch."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        ts = r["event_timestamp"]
        s = out.get(r["session_key"])
        if s is None:
            s = out[r["session_key"]] = {
                "session_key": r["session_key"],
                "user_key": r["user_key"],
                "started_at": ts,
                "ended_at": ts,
                "events": 0,
                "item_views": 0,
                "add_to_carts": 0,
                "purchases": 0,
                "revenue": 0.0,
                "is_bot": False,
            }
        s["started_at"] = min(s["started_at"], ts)
        s["ended_at"] = max(s["ended_at"], ts)
        s["events"] += 1
        name = r["event_name"]
        if name == "view_item":
            s["item_views"] += 1
        elif name == "add_to_cart":
            s["add_to_carts"] += 1
        elif name == "purchase":
            s["purchases"] += 1
            s["revenue"] += r["value"] or 0.0
        s["is_bot"] = s["is_bot"] or r["is_bot"]
    return list(out.values())


def user_item_interactions(records: Iterable[dict[str, Any]]) -> Rows:
    """Partial ``user_item_interactions`` rows: weighted implicit feedback."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in _human(records):
        weight = INTERACTION_WEIGHTS.get(r["event_name"])
        if weight is None:
            continue
        for item in r["items"]:
            key = (r["user_key"], item["item_id"])
            row = out.get(key)
            if row is None:
                row = out[key] = {
                    "user_key": key[0],
                    "item_id": key[1],
                    "weight": 0.0,
                    "events": 0,
                    "last_interaction_at": r["event_timestamp"],
                }
            row["weight"] += weight
            row["events"] += 1
            row["last_interaction_at"] = max(row["last_interaction_at"], r["event_timestamp"])
    return list(out.values())


def item_features(records: Iterable[dict[str, Any]]) -> Rows:
    """Partial ``item_features`` rows: each attribute as the newest event
    (by time, then log position, then place in the event) that names it,
    and the item's counts. Whatever order the batch is in."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(_human(records), key=EVENT_ORDER):
        name, ts = r["event_name"], r["event_timestamp"]
        for item in r["items"]:
            row = out.get(item["item_id"])
            if row is None:
                row = out[item["item_id"]] = {
                    "item_id": item["item_id"],
                    "item_name": None,
                    "item_category": None,
                    "item_brand": None,
                    "last_price": None,
                    "first_seen_at": ts,
                    "last_seen_at": ts,
                    "views": 0,
                    "add_to_carts": 0,
                    "purchases": 0,
                    "units_sold": 0,
                    "revenue": 0.0,
                }
            # In event order, a later event's attribute replaces an earlier one's.
            for src, dst in _ATTRIBUTES:
                if item[src] is not None:
                    row[dst] = item[src]
            row["first_seen_at"] = min(row["first_seen_at"], ts)
            row["last_seen_at"] = max(row["last_seen_at"], ts)
            if name == "view_item":
                row["views"] += 1
            elif name == "add_to_cart":
                row["add_to_carts"] += 1
            elif name == "purchase":
                row["purchases"] += 1
                row["units_sold"] += item["quantity"]
                row["revenue"] += (item["price"] or 0.0) * item["quantity"]
    return list(out.values())


def item_cooccurrence(records: Iterable[dict[str, Any]]) -> Rows:
    """Partial ``item_cooccurrence`` rows.

    A pair counts once per session: when an item first appears in a session,
    it is paired with every item the session had before it (known from the
    enrichment's ``_session_items_before``, which spans earlier runs) and
    with the other new items of the same event.
    """
    counts: dict[tuple[str, str], int] = {}
    seen_in_session: dict[str, set[str]] = {}
    ordered = sorted(_human(records), key=lambda r: (r["event_timestamp"], r["source_offset"]))
    for r in ordered:
        if r["event_name"] not in COOCCURRENCE_EVENTS or not r["items"]:
            continue
        before = seen_in_session.get(r["session_key"])
        if before is None:
            before = seen_in_session[r["session_key"]] = set(r["_session_items_before"])
        new = [i for i in dict.fromkeys(it["item_id"] for it in r["items"]) if i not in before]
        for item in new:
            # ``before`` holds this event's earlier new items already.
            for other in before:
                for pair in ((item, other), (other, item)):
                    counts[pair] = counts.get(pair, 0) + 1
            before.add(item)
    return [{"item_id": a, "other_item_id": b, "sessions": n} for (a, b), n in counts.items()]


def popularity_counts(records: Iterable[dict[str, Any]], window_us: int) -> dict[int, dict[str, list]]:
    """Per event-time window start, per item: ``[views, add_to_carts, purchases, revenue]``.

    Engines turn each window's dict into one timestamped element, so a batch
    costs one element per window it touches, not one per event.
    """
    out: dict[int, dict[str, list]] = {}
    for r in _human(records):
        name = r["event_name"]
        if name not in ("view_item", "add_to_cart", "purchase"):
            continue
        window = out.setdefault(r["event_timestamp"] - r["event_timestamp"] % window_us, {})
        for item in r["items"]:
            c = window.get(item["item_id"])
            if c is None:
                c = window[item["item_id"]] = [0, 0, 0, 0.0]
            if name == "view_item":
                c[0] += 1
            elif name == "add_to_cart":
                c[1] += 1
            else:
                c[2] += 1
                c[3] += (item["price"] or 0.0) * item["quantity"]
    return out


def merge_counts(parts: Iterable[dict[str, list]]) -> dict[str, list]:
    """Sum several ``popularity_counts`` windows element-wise."""
    total: dict[str, list] = {}
    for part in parts:
        for item, c in part.items():
            t = total.get(item)
            if t is None:
                total[item] = list(c)
            else:
                for i in range(4):
                    t[i] += c[i]
    return total


def popularity_rows(window_start_us: int, window_us: int, counts: dict[str, list]) -> Rows:
    return [
        {
            "item_id": item,
            "window_start": window_start_us,
            "window_end": window_start_us + window_us,
            "views": c[0],
            "add_to_carts": c[1],
            "purchases": c[2],
            "revenue": round(c[3], 2),
        }
        for item, c in counts.items()
    ]
