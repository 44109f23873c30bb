"""The columnar features give the per-record core's partial rows, table by table."""

from __future__ import annotations

import pytest

from pipeline_code.core import arrow_features as af
from pipeline_code.core import features as feat
from pipeline_code.core.history import UserHistory, enrich_shard, keep_first_seen, split_by_shard
from pipeline_code.core.parse import RawEvent, parse_batch
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import EVENTS, TABLES, arrow_table

HOUR = 3_600_000_000
T0 = 1_767_225_600_000_000


def _rows(table: str, rows: list[dict]) -> list[tuple]:
    cols = TABLES[table].column_names()
    return sorted(
        (tuple(round(r[c], 9) if isinstance(r[c], float) else r[c] for c in cols) for r in rows), key=repr
    )


def per_record(enriched: list[dict]) -> dict[str, list[tuple]]:
    windows = feat.popularity_counts(enriched, HOUR)
    popularity = [row for start, c in windows.items() for row in feat.popularity_rows(start, HOUR, c)]
    return {
        "sessions": _rows("sessions", feat.session_rows(enriched)),
        "user_item_interactions": _rows("user_item_interactions", feat.user_item_interactions(enriched)),
        "item_features": _rows("item_features", feat.item_features(enriched)),
        "item_cooccurrence": _rows("item_cooccurrence", feat.item_cooccurrence(enriched)),
        "item_popularity": _rows("item_popularity", popularity),
    }


def columnar(enriched: list[dict]) -> dict[str, list[tuple]]:
    events = arrow_table(EVENTS, enriched)
    before = [r["_session_items_before"] for r in enriched]
    return {name: _rows(name, t.to_pylist()) for name, t in af.feature_tables(events, before, HOUR).items()}


def item(item_id, price=2.0, quantity=1, name=None, category="c", brand=None):
    return {
        "item_id": item_id,
        "item_name": name,
        "item_category": category,
        "item_brand": brand,
        "price": price,
        "quantity": quantity,
    }


def rec(offset, minute, name, items, user="u", bot=False, value=None, session="s"):
    return {
        "event_id": f"e{offset}",
        "event_name": name,
        "event_timestamp": T0 + minute * 60_000_000,
        "event_date": 20454,
        "received_at": T0,
        "schema_version": "1",
        "user_id": user,
        "anonymous_id": None,
        "user_key": user,
        "session_id": session,
        "items": [i if isinstance(i, dict) else item(i) for i in items],
        "search_term": None,
        "transaction_id": None,
        "currency": None,
        "value": value,
        "context": None,
        "is_bot": bot,
        "source_offset": offset,
    }


def test_edge_cases_give_the_same_rows():
    records = [
        # Newest first in the batch; the newest names no item_name: the older one's stands.
        rec(5, 30, "view_item", [item("a", price=4.0, name=None)]),
        rec(1, 10, "view_item", [item("a", price=3.0, name="Apple")]),
        # One event, several items, one twice: each pair once per session.
        rec(2, 11, "add_to_cart", ["a", "b", "c", "b"]),
        rec(3, 12, "purchase", [item("b", price=None, quantity=3), item("d", quantity=2)], value=None),
        rec(4, 13, "remove_from_cart", ["c"]),
        rec(6, 14, "page_view", []),
        rec(7, 15, "view_item", ["a"], user="crawler", bot=True),
        rec(8, 70, "view_item", ["e"], session="t"),
        rec(9, 75, "purchase", ["e"], value=12.5, session="t"),
        # Same time and log position order decide between two events.
        rec(10, 75, "view_item", [item("e", name="Eggs")], session="t"),
    ]
    enriched, _ = enrich_shard(records, {})
    assert columnar(enriched) == per_record(enriched)


def test_a_session_continued_from_an_earlier_run_pairs_with_what_it_had():
    history = UserHistory(
        user_key="u",
        first_seen_at=T0,
        last_seen_at=T0,
        lifetime_events=3,
        last_session_key="u/s",
        last_session_items=["x", "y"],
    )
    enriched, _ = enrich_shard(
        [rec(1, 1, "view_item", ["z", "x"]), rec(2, 2, "view_item", ["w"])], {"u": history}
    )
    assert enriched[0]["_session_items_before"] == ["x", "y"]
    got = columnar(enriched)
    assert got == per_record(enriched)
    pairs = {(a, b) for a, b, _ in got["item_cooccurrence"]}
    assert ("x", "y") not in pairs and ("z", "x") in pairs and ("w", "z") in pairs


@pytest.mark.parametrize("seed", [5, 11])
def test_generated_shards_with_history_give_the_same_rows(seed):
    lines = list(generate(StoreSpec(events=6000, days=2, seed=seed)))
    raws = [RawEvent(i, T0 + 3 * 86_400_000_000, line) for i, line in enumerate(lines)]
    records, _ = parse_batch(raws)
    unique, _ = keep_first_seen(records)
    earlier, later = unique[: len(unique) // 2], unique[len(unique) // 2 :]
    for shard, shard_records in split_by_shard(later, "user_key", 8).items():
        users = {r["user_key"] for r in shard_records}
        _, histories = enrich_shard([r for r in earlier if r["user_key"] in users], {})
        enriched, _ = enrich_shard(shard_records, {h.user_key: h for h in histories})
        assert columnar(enriched) == per_record(enriched), f"shard {shard}"


def test_an_empty_batch_has_no_rows():
    tables = af.feature_tables(arrow_table(EVENTS, []), [], HOUR)
    assert {name: t.num_rows for name, t in tables.items()} == dict.fromkeys(tables, 0)
