"""Feature partials over Arrow: the columnar twin of ``core.features``.

The same partial rows as ``core.features`` (the tests hold the two to the
same tables), computed from a batch of enriched events as one Arrow table
with pyarrow's compute kernels and hash aggregations instead of a Python
loop per event and item. pyarrow is already in every engine's workers:
it is in this package's base install (the Parquet staging), Beam's SDK
depends on it and PySpark's Arrow batches use it, so choosing it adds
nothing to install; DuckDB would have to be added to Dataflow's and Glue's
workers, and Polars to all of them.

Input: an ``events`` table as ``tables.arrow_table(EVENTS, records)`` gives
it (``event_timestamp`` in UTC microseconds, ``items`` a list of structs),
and, for co-occurrence only, each record's ``_session_items_before`` (what
enrichment knew the session held before that record). Output: Arrow tables
with the feature tables' columns, in no particular row order::

    events = arrow_table(EVENTS, enriched)
    tables = feature_tables(events, [r["_session_items_before"] for r in enriched], 3_600_000_000)
    tables["sessions"].num_rows

Bot traffic is stored in ``events`` but feeds no feature but ``sessions``
(whose ``is_bot`` flags it), as in ``core.features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipeline_code.core.features import COOCCURRENCE_EVENTS, INTERACTION_WEIGHTS

_INT = pa.int64()
_FLOAT = pa.float64()
_WEIGHT_NAMES = pa.array(sorted(INTERACTION_WEIGHTS))
_WEIGHTS = pa.array([INTERACTION_WEIGHTS[n] for n in _WEIGHT_NAMES.to_pylist()], _FLOAT)
_COOCCURRENCE_NAMES = pa.array(sorted(COOCCURRENCE_EVENTS))
_POPULARITY_NAMES = pa.array(["view_item", "add_to_cart", "purchase"])


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A UTC timestamp column as int64 microseconds (what the rows hold)."""
    return column.cast(_INT) if pa.types.is_timestamp(column.type) else column


def _is(names: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    return pc.cast(pc.equal(names, name), _INT)


def _human_named(events: pa.Table, names: pa.Array) -> pa.ChunkedArray:
    """Which events are not bots' and have one of these ``event_name``s."""
    return pc.and_(pc.invert(events["is_bot"]), pc.is_in(events["event_name"], value_set=names))


def _items_of(
    events: pa.Table, keep: pa.ChunkedArray, columns: Sequence[str], fields: Sequence[str]
) -> dict[str, pa.Array]:
    """One row per item of each event that ``keep`` marks, in event order:
    the item's ``fields`` (``item_id``, ``price``, ...) beside the event's
    ``columns``, and the event's row number (``_event``). Only what is
    asked for is copied: ``events`` has nested columns the features never read."""
    items = events["items"].combine_chunks()
    parents = pc.list_parent_indices(items)
    mask = pc.take(keep, parents)
    flat = pc.list_flatten(items)
    out = {name: pc.struct_field(flat, name).filter(mask) for name in fields}
    parents = parents.filter(mask)
    for name in columns:
        out[name] = pc.take(events[name], parents)
    out["_event"] = parents
    return out


def session_rows(events: pa.Table) -> pa.Table:
    """Partial ``sessions`` rows, one per session key in the batch."""
    names = events["event_name"]
    purchase = pc.equal(names, "purchase")
    per_event = pa.table(
        {
            "session_key": events["session_key"],
            "user_key": events["user_key"],
            "ts": _micros(events["event_timestamp"]),
            "item_views": _is(names, "view_item"),
            "add_to_carts": _is(names, "add_to_cart"),
            "purchases": pc.cast(purchase, _INT),
            "revenue": pc.if_else(purchase, pc.fill_null(events["value"], 0.0), 0.0),
            "is_bot": events["is_bot"],
        }
    )
    g = per_event.group_by("session_key", use_threads=False).aggregate(
        [
            ("user_key", "last"),
            ("ts", "min"),
            ("ts", "max"),
            ("ts", "count"),
            ("item_views", "sum"),
            ("add_to_carts", "sum"),
            ("purchases", "sum"),
            ("revenue", "sum"),
            ("is_bot", "any"),
        ]
    )
    return pa.table(
        {
            "session_key": g["session_key"],
            "user_key": g["user_key_last"],
            "started_at": g["ts_min"],
            "ended_at": g["ts_max"],
            "events": g["ts_count"],
            "item_views": g["item_views_sum"],
            "add_to_carts": g["add_to_carts_sum"],
            "purchases": g["purchases_sum"],
            "revenue": g["revenue_sum"],
            "is_bot": g["is_bot_any"],
        }
    )


def user_item_interactions(events: pa.Table) -> pa.Table:
    """Partial ``user_item_interactions`` rows: weighted implicit feedback."""
    items = _items_of(
        events,
        _human_named(events, _WEIGHT_NAMES),
        ("user_key", "event_name", "event_timestamp"),
        ("item_id",),
    )
    weights = pc.take(_WEIGHTS, pc.index_in(items["event_name"], value_set=_WEIGHT_NAMES))
    g = pa.table(
        {
            "user_key": items["user_key"],
            "item_id": items["item_id"],
            "weight": weights,
            "ts": _micros(items["event_timestamp"]),
        }
    ).group_by(["user_key", "item_id"], use_threads=False)
    g = g.aggregate([("weight", "sum"), ("ts", "count"), ("ts", "max")])
    return pa.table(
        {
            "user_key": g["user_key"],
            "item_id": g["item_id"],
            "weight": g["weight_sum"],
            "events": g["ts_count"],
            "last_interaction_at": g["ts_max"],
        }
    )


def item_features(events: pa.Table) -> pa.Table:
    """Partial ``item_features`` rows: each attribute as the newest event
    (by time, then log position, then place in the event) that names it,
    and the item's counts."""
    items = _items_of(
        events,
        pc.invert(events["is_bot"]),
        ("event_name", "event_timestamp", "source_offset"),
        ("item_id", "item_name", "item_category", "item_brand", "price", "quantity"),
    )
    ts = _micros(items["event_timestamp"])
    names = items["event_name"]
    purchase = pc.equal(names, "purchase")
    quantity = items["quantity"]
    per_item = pa.table(
        {
            "item_id": items["item_id"],
            "item_name": items["item_name"],
            "item_category": items["item_category"],
            "item_brand": items["item_brand"],
            "last_price": items["price"],
            "ts": ts,
            "offset": items["source_offset"],
            "views": _is(names, "view_item"),
            "add_to_carts": _is(names, "add_to_cart"),
            "purchases": pc.cast(purchase, _INT),
            "units_sold": pc.if_else(purchase, quantity, 0),
            "revenue": pc.if_else(
                purchase, pc.multiply(pc.fill_null(items["price"], 0.0), pc.cast(quantity, _FLOAT)), 0.0
            ),
        }
    )
    # "last" in a group is the last in the table's order (one thread keeps
    # it); the sort is stable, so items of one event keep their order.
    newest_last = per_item.sort_by([("ts", "ascending"), ("offset", "ascending")])
    g = newest_last.group_by("item_id", use_threads=False).aggregate(
        [
            ("item_name", "last"),
            ("item_category", "last"),
            ("item_brand", "last"),
            ("last_price", "last"),
            ("ts", "min"),
            ("ts", "max"),
            ("views", "sum"),
            ("add_to_carts", "sum"),
            ("purchases", "sum"),
            ("units_sold", "sum"),
            ("revenue", "sum"),
        ]
    )
    return pa.table(
        {
            "item_id": g["item_id"],
            "item_name": g["item_name_last"],
            "item_category": g["item_category_last"],
            "item_brand": g["item_brand_last"],
            "last_price": g["last_price_last"],
            "first_seen_at": g["ts_min"],
            "last_seen_at": g["ts_max"],
            "views": g["views_sum"],
            "add_to_carts": g["add_to_carts_sum"],
            "purchases": g["purchases_sum"],
            "units_sold": g["units_sold_sum"],
            "revenue": g["revenue_sum"],
        }
    )


def _distinct(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.group_by(keys, use_threads=False).aggregate([])


def item_cooccurrence(events: pa.Table, session_items_before: Sequence[list[str]]) -> pa.Table:
    """Partial ``item_cooccurrence`` rows, as ``core.features`` counts them:
    in each session, every ordered pair of distinct items of which at least
    one is new in this batch counts once. A session's items are those its
    first event here (that pairs items) had before it (``session_items_before``,
    by row: earlier runs') and the items of its events here that pair items."""
    items = pa.table(
        _items_of(
            events,
            _human_named(events, _COOCCURRENCE_NAMES),
            ("session_key", "event_timestamp", "source_offset"),
            ("item_id",),
        )
    )
    first = (
        items.select(["session_key", "event_timestamp", "source_offset", "_event"])
        .sort_by([("event_timestamp", "ascending"), ("source_offset", "ascending")])
        .group_by("session_key", use_threads=False)
        .aggregate([("_event", "first")])
    )
    before_lists = pa.array(
        [session_items_before[i] for i in first["_event_first"].to_pylist()], pa.list_(pa.string())
    )
    before = _distinct(
        pa.table(
            {
                "session_key": pc.take(first["session_key"], pc.list_parent_indices(before_lists)),
                "item_id": pc.list_flatten(before_lists),
            }
        ),
        ["session_key", "item_id"],
    )
    seen = _distinct(items.select(["session_key", "item_id"]), ["session_key", "item_id"])
    new = seen.join(before, ["session_key", "item_id"], join_type="left anti", use_threads=False)
    members = pa.concat_tables(
        [
            before.append_column("new", pa.array([False] * before.num_rows, pa.bool_())),
            new.append_column("new", pa.array([True] * new.num_rows, pa.bool_())),
        ]
    )
    others = members.rename_columns(["session_key", "other_item_id", "other_new"])
    pairs = members.join(others, "session_key", join_type="inner", use_threads=False)
    pairs = pairs.filter(
        pc.and_(
            pc.not_equal(pairs["item_id"], pairs["other_item_id"]),
            pc.or_(pairs["new"], pairs["other_new"]),
        )
    )
    g = pairs.group_by(["item_id", "other_item_id"], use_threads=False).aggregate([("session_key", "count")])
    return pa.table(
        {"item_id": g["item_id"], "other_item_id": g["other_item_id"], "sessions": g["session_key_count"]}
    )


def item_popularity(events: pa.Table, window_us: int) -> pa.Table:
    """Partial ``item_popularity`` rows: per item and event-time window of
    ``window_us``, its views, cart adds, purchases and purchase revenue
    (unrounded: the warehouse rounds the sum of the partials)."""
    items = _items_of(
        events,
        _human_named(events, _POPULARITY_NAMES),
        ("event_name", "event_timestamp"),
        ("item_id", "price", "quantity"),
    )
    names = items["event_name"]
    purchase = pc.equal(names, "purchase")
    # Timestamps after 2000 are positive: integer division floors them.
    start = pc.multiply(pc.divide(_micros(items["event_timestamp"]), window_us), window_us)
    g = (
        pa.table(
            {
                "item_id": items["item_id"],
                "window_start": start,
                "views": _is(names, "view_item"),
                "add_to_carts": _is(names, "add_to_cart"),
                "purchases": pc.cast(purchase, _INT),
                "revenue": pc.if_else(
                    purchase,
                    pc.multiply(pc.fill_null(items["price"], 0.0), pc.cast(items["quantity"], _FLOAT)),
                    0.0,
                ),
            }
        )
        .group_by(["item_id", "window_start"], use_threads=False)
        .aggregate([("views", "sum"), ("add_to_carts", "sum"), ("purchases", "sum"), ("revenue", "sum")])
    )
    return pa.table(
        {
            "item_id": g["item_id"],
            "window_start": g["window_start"],
            "window_end": pc.add(g["window_start"], window_us),
            "views": g["views_sum"],
            "add_to_carts": g["add_to_carts_sum"],
            "purchases": g["purchases_sum"],
            "revenue": g["revenue_sum"],
        }
    )


def feature_tables(
    events: pa.Table, session_items_before: Sequence[list[str]], window_us: int
) -> dict[str, pa.Table]:
    """Every feature table's partial rows from one batch (not ``user_features``,
    which enrichment gives)."""
    return {
        "sessions": session_rows(events),
        "user_item_interactions": user_item_interactions(events),
        "item_features": item_features(events),
        "item_cooccurrence": item_cooccurrence(events, session_items_before),
        "item_popularity": item_popularity(events, window_us),
    }
