"""Dedup, sessionization and history enrichment."""

from __future__ import annotations

from pipeline_code.core.history import (
    UserHistory,
    enrich_shard,
    enrich_user,
    keep_first_seen,
    losing_copies,
    shard_of,
    split_by_shard,
)

MIN = 60_000_000


def rec(event_id, ts_min, name="view_item", items=("a",), session_id=None, user="u", offset=None, value=None):
    return {
        "event_id": event_id,
        "event_name": name,
        "event_timestamp": 1_767_225_600_000_000 + ts_min * MIN,
        "user_key": user,
        "session_id": session_id,
        "items": [{"item_id": i, "price": 1.0, "quantity": 1} for i in items],
        "value": value,
        "is_bot": False,
        "source_offset": offset if offset is not None else ts_min,
    }


def test_shards_are_stable_and_in_range():
    assert shard_of("user-1", 8) == shard_of("user-1", 8)
    assert all(0 <= shard_of(f"u{i}", 8) < 8 for i in range(100))
    parts = split_by_shard([rec("e1", 0, user=f"u{i}") for i in range(50)], "user_key", 4)
    assert sum(len(v) for v in parts.values()) == 50


def test_keep_first_seen_drops_known_and_repeated_ids_first_offset_wins():
    records = [rec("e2", 1, offset=5), rec("e1", 0, offset=9), rec("e2", 2, offset=3), rec("e3", 3)]
    unique, dropped = keep_first_seen(records, known_ids=["e3"])
    assert [(r["event_id"], r["source_offset"]) for r in unique] == [("e2", 3), ("e1", 9)]
    assert dropped == 2


def test_losing_copies_are_the_copies_keep_first_seen_drops():
    records = [rec(f"e{i % 7}", i, offset=(i * 37) % 50) for i in range(50)]
    unique, dropped = keep_first_seen(records, known_ids=["e3", "never"])
    losers = losing_copies([(r["event_id"], r["source_offset"]) for r in records], ["e3", "never"])
    kept = {(r["event_id"], r["source_offset"]) for r in unique}
    assert len(losers) == dropped == 50 - len(kept)
    assert set(losers) == {(r["event_id"], r["source_offset"]) for r in records} - kept


def test_enrichment_counts_history_before_each_event():
    events = [
        rec("e1", 0, items=("a",)),
        rec("e2", 1, "add_to_cart", items=("a",)),
        rec("e3", 2, "purchase", items=("a",), value=10.0),
        rec("e4", 3, items=("b",)),
    ]
    out, h = enrich_user("u", list(reversed(events)), None)
    assert [r["event_id"] for r in out] == ["e1", "e2", "e3", "e4"]  # event-time order
    assert [r["user_event_number"] for r in out] == [1, 2, 3, 4]
    assert [r["user_purchases_before"] for r in out] == [0, 0, 0, 1]
    assert out[3]["user_revenue_before"] == 10.0
    assert out[3]["user_recent_items"] == ["a"]
    assert out[0]["seconds_since_previous_event"] is None
    assert out[1]["seconds_since_previous_event"] == 60.0
    assert h.lifetime_events == 4 and h.lifetime_purchases == 1 and h.lifetime_revenue == 10.0
    assert h.recent_items == ["b", "a"]


def test_sessions_split_on_a_30_minute_gap_without_session_ids():
    out, _ = enrich_user("u", [rec("e1", 0), rec("e2", 29), rec("e3", 29 + 31)], None)
    keys = [r["session_key"] for r in out]
    assert keys[0] == keys[1] != keys[2]


def test_tracker_session_ids_win_over_the_gap():
    out, _ = enrich_user("u", [rec("e1", 0, session_id="s1"), rec("e2", 120, session_id="s1")], None)
    assert {r["session_key"] for r in out} == {"u/s1"}


def test_history_carries_sessions_and_counts_across_runs():
    _, h = enrich_user("u", [rec("e1", 0, items=("a",)), rec("e2", 5, items=("b",))], None)
    row = h.to_row()
    out, h2 = enrich_user("u", [rec("e3", 10, items=("c",))], UserHistory.from_row(row))
    assert out[0]["user_event_number"] == 3
    assert out[0]["session_key"] == h.last_session_key  # 5 minutes later: same session
    assert out[0]["_session_items_before"] == ["a", "b"]
    assert h2.last_session_items == ["a", "b", "c"]
    assert h.lifetime_events == 2  # the input history is not mutated


def test_enrich_shard_handles_each_user_separately():
    records = [rec("e1", 0, user="x"), rec("e2", 1, user="y"), rec("e3", 2, user="x")]
    out, histories = enrich_shard(records, {})
    assert {h.user_key: h.lifetime_events for h in histories} == {"x": 2, "y": 1}
    assert len(out) == 3


def test_session_items_stay_distinct_and_bounded_and_records_keep_what_they_saw():
    """A session's items are its interest items, first seen first, at most 50;
    a stored list that is not (written by hand, say) is seen as stored by
    the first event and normalised after it; each record keeps the items
    before it even as the session grows."""
    stored = UserHistory(
        "u", 0, 1_767_225_600_000_000, last_session_key="u/s", last_session_items=["p", "p", "q"]
    )
    events = [rec("e1", 1, items=(), session_id="s", name="page_view")]
    events += [rec(f"e{i}", i, items=(f"i{i}", "p"), session_id="s") for i in range(2, 60)]
    out, h = enrich_user("u", events, stored)
    assert out[0]["_session_items_before"] == ["p", "p", "q"]
    assert out[1]["_session_items_before"] == ["p", "q"]
    assert out[2]["_session_items_before"] == ["p", "q", "i2"]
    assert h.last_session_items == ["p", "q", *(f"i{i}" for i in range(2, 50))]
    assert out[-1]["_session_items_before"] == h.last_session_items
    assert out[0]["user_recent_items"] == [] and out[-1]["user_recent_items"][:2] == ["p", "i58"]
    assert stored.last_session_items == ["p", "p", "q"]  # the stored history is not changed


def test_a_history_row_has_every_column_and_reads_back():
    import dataclasses

    from pipeline_code.tables import TABLES

    h = UserHistory("u", 1, 2, 3, 1, 9.5, ["b", "a"], "u/s", ["a"], True)
    row = h.to_row()
    assert list(row) == TABLES["user_features"].column_names()
    assert row == dataclasses.asdict(h) and UserHistory.from_row(row) == h
