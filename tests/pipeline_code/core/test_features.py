"""Feature partials: what the recommender learns from."""

from __future__ import annotations

from pipeline_code.core import features as feat
from pipeline_code.core.history import enrich_shard

HOUR = 3_600_000_000
T0 = 1_767_225_600_000_000


def rec(event_id, minute, name, items, user="u", bot=False, value=None, session="s"):
    return {
        "event_id": event_id,
        "event_name": name,
        "event_timestamp": T0 + minute * 60_000_000,
        "user_key": user,
        "session_id": session,
        "items": [
            {
                "item_id": i,
                "price": 2.0,
                "quantity": 1,
                "item_name": None,
                "item_category": "c",
                "item_brand": None,
            }
            for i in items
        ],
        "value": value,
        "is_bot": bot,
        "source_offset": minute,
    }


def enriched(records):
    out, _ = enrich_shard(records, {})
    return out


def test_interactions_weight_events_and_ignore_bots():
    rows = feat.user_item_interactions(
        enriched(
            [
                rec("1", 0, "view_item", ["a"]),
                rec("2", 1, "add_to_cart", ["a"]),
                rec("3", 2, "purchase", ["a"], value=2.0),
                rec("4", 3, "remove_from_cart", ["b"]),
                rec("5", 4, "view_item", ["a"], user="bot", bot=True),
                rec("6", 5, "page_view", []),
            ]
        )
    )
    weights = {(r["user_key"], r["item_id"]): r["weight"] for r in rows}
    assert weights == {("u", "a"): 1 + 3 + 5, ("u", "b"): -1}


def test_sessions_summarise_funnels():
    [s] = feat.session_rows(
        enriched(
            [
                rec("1", 0, "view_item", ["a"]),
                rec("2", 3, "add_to_cart", ["a"]),
                rec("3", 9, "purchase", ["a"], value=12.5),
            ]
        )
    )
    assert (s["events"], s["item_views"], s["add_to_carts"], s["purchases"], s["revenue"]) == (
        3,
        1,
        1,
        1,
        12.5,
    )
    assert s["ended_at"] - s["started_at"] == 9 * 60_000_000


def test_cooccurrence_counts_each_pair_once_per_session():
    rows = feat.item_cooccurrence(
        enriched(
            [
                rec("1", 0, "view_item", ["a"]),
                rec("2", 1, "view_item", ["b"]),
                rec("3", 2, "view_item", ["a"]),  # a again: no new pair
                rec("4", 3, "add_to_cart", ["c"]),
                rec("5", 0, "view_item", ["a"], session="other"),
                rec("6", 1, "view_item", ["b"], session="other"),
            ]
        )
    )
    counts = {(r["item_id"], r["other_item_id"]): r["sessions"] for r in rows}
    assert counts == {
        ("a", "b"): 2,
        ("b", "a"): 2,
        ("c", "a"): 1,
        ("a", "c"): 1,
        ("c", "b"): 1,
        ("b", "c"): 1,
    }


def test_cooccurrence_continues_a_session_seen_in_an_earlier_run():
    [r] = enriched([rec("9", 0, "view_item", ["z"])])
    r["_session_items_before"] = ["a"]
    rows = feat.item_cooccurrence([r])
    assert {(x["item_id"], x["other_item_id"]) for x in rows} == {("z", "a"), ("a", "z")}


def test_popularity_counts_per_window_and_merges():
    records = enriched(
        [
            rec("1", 0, "view_item", ["a"]),
            rec("2", 61, "view_item", ["a"]),
            rec("3", 62, "purchase", ["a"], value=2.0),
        ]
    )
    windows = feat.popularity_counts(records, HOUR)
    assert windows == {T0: {"a": [1, 0, 0, 0.0]}, T0 + HOUR: {"a": [1, 0, 1, 2.0]}}
    merged = feat.merge_counts([windows[T0], windows[T0 + HOUR]])
    assert merged == {"a": [2, 0, 1, 2.0]}
    [row] = feat.popularity_rows(T0, HOUR, merged)
    assert row["window_end"] == T0 + HOUR and row["purchases"] == 1


def test_item_features_take_the_newest_attributes():
    records = enriched([rec("1", 0, "view_item", ["a"]), rec("2", 5, "purchase", ["a"], value=2.0)])
    records[1]["items"][0]["price"] = 3.0
    [row] = feat.item_features(records)
    assert row["last_price"] == 3.0 and row["views"] == 1 and row["purchases"] == 1 and row["revenue"] == 3.0


def test_cooccurrence_counts_items_of_one_event_once():
    rows = feat.item_cooccurrence(enriched([rec("1", 0, "view_item", ["a", "b", "c"])]))
    counts = {(r["item_id"], r["other_item_id"]): r["sessions"] for r in rows}
    assert counts == {(x, y): 1 for x in "abc" for y in "abc" if x != y}


def test_item_features_take_each_attribute_from_the_newest_event_that_names_it():
    older, newer = enriched([rec("1", 0, "view_item", ["a"]), rec("2", 5, "view_item", ["a"])])
    older["items"][0]["item_name"] = "Apple"
    newer["items"][0]["item_category"] = None
    for batch in ([older, newer], [newer, older]):
        [row] = feat.item_features(batch)
        assert (row["item_name"], row["item_category"]) == ("Apple", "c"), batch
