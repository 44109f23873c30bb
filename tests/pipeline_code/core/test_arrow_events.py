"""The columnar parse and enrichment give the per-record core's rows,
dead letters and histories (``core.arrow_events`` against ``parse_batch``,
``enrich_shard`` and ``tables.arrow_table``). Both enrichments walk each
user with ``history.walk_user`` (``test_history.py`` holds the walk): what
is held here is what surrounds it, the columns, the grouping and the order."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_code.core.arrow_events import PARSED_SCHEMA, enrich_table, parse_table
from pipeline_code.core.history import UserHistory, enrich_shard
from pipeline_code.core.parse import RawEvent, now_us, parse_batch
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import EVENTS, arrow_schema, arrow_table
from tests.conftest import RECEIVED_US, line

VOLATILE = "dead_lettered_at"


def raws_of(lines: list[bytes], received_us: int = RECEIVED_US) -> list[RawEvent]:
    return [RawEvent(offset * 10, received_us, payload) for offset, payload in enumerate(lines)]


def per_record(raws: list[RawEvent], histories: dict[str, UserHistory] | None = None):
    records, dead = parse_batch(raws)
    parsed = pa.Table.from_pylist(records, schema=PARSED_SCHEMA)
    enriched, updated = enrich_shard([dict(r) for r in records], dict(histories or {}))
    return parsed, dead, enriched, updated


def without_volatile(dead: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != VOLATILE} for d in dead]


def check_same(
    lines: list[bytes], histories: dict[str, UserHistory] | None = None, received_us: int = RECEIVED_US
) -> pa.Table:
    raws = raws_of(lines, received_us)
    parsed, dead, enriched, updated = per_record(raws, histories)
    table, table_dead = parse_table(raws)
    assert table.schema.equals(PARSED_SCHEMA)
    assert table.equals(parsed)
    assert without_volatile(table_dead) == without_volatile(dead)
    assert table.num_rows + len(table_dead) == len(raws)

    out, table_updated = enrich_table(table, dict(histories or {}))
    assert out.table.schema.equals(arrow_schema(EVENTS))
    assert table_updated == updated
    # The rows stay in line order; enrich_shard's are by user, then event time.
    expected = sorted(enriched, key=lambda r: r["source_offset"])
    assert out.table.to_pylist() == arrow_table(EVENTS, expected).to_pylist()
    assert out.before == [r["_session_items_before"] for r in expected]
    return out.table


def test_a_store_and_its_malformed_lines_give_the_same_rows_and_dead_letters():
    lines = list(generate(StoreSpec(events=3_000, malformed_share=0.05, duplicate_share=0)))
    table = check_same(lines, received_us=now_us())
    assert 2_000 < table.num_rows < 3_000


def test_hostile_lines_give_the_same_dead_letters(hostile_lines):
    check_same([*hostile_lines, line(), line(event_id="e-2", user_id=None, anonymous_id="a-1")])


def test_normalisation_is_the_same():
    lines = [
        line(event_id="  e-1 ", user_id=" u-1 ", session_id="   ", search_term="  Red   SHOES "),
        line(event_id="e-2", user_id=None, anonymous_id=" a-9 ", context=None),
        line(
            event_id="e-3",
            event_name="purchase",
            transaction_id=" t-1 ",
            currency="eur",
            value=None,
            items=[{"item_id": "a", "price": 2.5, "quantity": 3}, {"item_id": "b"}],
        ),
        line(event_id="e-4", event_name="purchase", transaction_id="t-2", items=[{"item_id": "a"}]),
        line(event_id="e-5", event_name="refund", transaction_id="t-1", items=None, value=7.5),
        line(event_id="e-6", event_timestamp="2026-01-01T10:00:00.123456+05:30", items=[]),
        line(event_id="e-7", context={"user_agent": "Googlebot/2.1", "extra": 1}),
        line(event_id="e-8", items=[{"item_id": "x", "unknown": [1, 2], "quantity": 2}], extra={"a": 1}),
    ]
    table = check_same(lines)
    rows = {r["event_id"]: r for r in table.to_pylist()}
    assert rows["e-1"]["search_term"] == "red shoes" and rows["e-1"]["session_id"] is None
    assert rows["e-3"]["value"] == 7.5 and rows["e-3"]["currency"] == "EUR"
    assert rows["e-4"]["value"] is None
    assert rows["e-7"]["is_bot"] and rows["e-2"]["context"] is None


def test_histories_continue_as_in_the_per_record_core():
    lines = [
        line(event_id="e-1", user_id="u-1", session_id=None, event_timestamp="2026-01-01T10:10:00Z"),
        line(
            event_id="e-2",
            user_id="u-1",
            session_id=None,
            event_timestamp="2026-01-01T09:55:00Z",
            event_name="purchase",
            transaction_id="t",
            value=3.0,
        ),
        line(event_id="e-3", user_id="u-2", event_timestamp="2026-01-01T11:00:00Z"),
    ]
    stored = UserHistory(
        user_key="u-1",
        first_seen_at=1_767_258_000_000_000,
        last_seen_at=1_767_261_000_000_000,  # 09:50
        lifetime_events=4,
        lifetime_purchases=1,
        lifetime_revenue=12.5,
        recent_items=["sku-9", "sku-1"],
        last_session_key="u-1/t1767260000",
        last_session_items=["sku-9"],
    )
    table = check_same(lines, {"u-1": stored})
    rows = {r["event_id"]: r for r in table.to_pylist()}
    assert rows["e-2"]["session_key"] == "u-1/t1767260000"  # 5 minutes after the stored session
    assert rows["e-1"]["user_event_number"] == 6 and rows["e-1"]["user_revenue_before"] == 15.5


def test_nothing_accepted_gives_an_empty_table():
    table, dead = parse_table(raws_of([b"{}", b"nope"]))
    assert table.num_rows == 0 and table.schema.equals(PARSED_SCHEMA) and len(dead) == 2
    out, updated = enrich_table(table, {})
    assert out.table.num_rows == 0 and out.before == [] and updated == []


# Mostly what the contract accepts, with the edges normalisation treats
# (blanks, Unicode spaces and case, missing values), and now and then what
# it rejects, so that a batch mixes rows and dead letters.
_WORDS = ["a", " b ", "Red  SHOES", "\u00a0c\u2003", "İx", "d\te", "e", "f", "g", "h"]
_id = st.one_of(
    st.sampled_from([*_WORDS, "  "]), st.sampled_from([*_WORDS, "x" * 129]), st.text(min_size=1, max_size=4)
)
_optional_id = st.one_of(st.none(), _id)
_money = st.one_of(st.none(), st.floats(0, 1e6), st.integers(0, 50))
_item = st.fixed_dictionaries(
    {"item_id": _id},
    optional={
        "price": _money,
        "quantity": st.integers(1, 5),
        "item_name": _optional_id,
        "item_brand": _optional_id,
        "other": st.integers(),
    },
)
_event = st.fixed_dictionaries(
    {
        "event_id": _id,
        "event_name": st.sampled_from(
            [
                "view_item",
                "page_view",
                "add_to_cart",
                "purchase",
                "search",
                "refund",
                "page_view",
                "select_item",
                "no",
            ]
        ),
        "event_timestamp": st.sampled_from(
            [
                "2026-01-01T10:00:00Z",
                "2026-01-01T09:59:59.5-01:00",
                "2026-01-01T11:30:00.000001+00:00",
                "2026-01-01T11:00:00Z",
                "2026-01-01T10:20:00Z",
                "2026-01-01T10:45:00.25Z",
                "2026-01-01T12:00:00+01:00",
                "2026",
            ]
        ),
    },
    optional={
        "anonymous_id": _optional_id,
        "session_id": _optional_id,
        "search_term": _optional_id,
        "transaction_id": _optional_id,
        "currency": st.sampled_from(["eur", "USD", "gbp", None, None, None, "e1"]),
        "value": _money,
        "items": st.lists(_item, max_size=3),
        "context": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "user_agent": st.sampled_from(["Mozilla/5.0", "curl/8.1", "Googlebot", None]),
                    "device_category": st.sampled_from(["tv", "mobile", "watch"]),
                    "page_url": _optional_id,
                },
            ),
        ),
    },
)


_history = st.builds(
    UserHistory,
    user_key=st.just("u"),
    first_seen_at=st.just(1_767_258_000_000_000),
    last_seen_at=st.sampled_from([1_767_258_000_000_000, 1_767_261_000_000_000, 1_767_265_000_000_000]),
    lifetime_events=st.integers(1, 9),
    lifetime_purchases=st.integers(0, 2),
    lifetime_revenue=st.floats(0, 100),
    recent_items=st.lists(st.sampled_from(_WORDS), max_size=25),
    last_session_key=st.sampled_from([None, "u/s", "u/t1767261000", "u/a"]),
    last_session_items=st.lists(st.sampled_from(_WORDS), max_size=55),
    is_bot=st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_event, st.sampled_from(["u", "v", " u ", "w", None])), min_size=1, max_size=12),
    st.one_of(st.none(), _history),
)
def test_any_batch_gives_the_same_rows_as_the_per_record_core(events, stored):
    lines = []
    for ev, user in events:
        ev["user_id"] = user  # a few users, so histories walk more than one event
        lines.append(json.dumps(ev).encode())
    check_same(lines, {"u": stored} if stored is not None else None)


@pytest.mark.parametrize("payload", [b"", b" ", b"\n"])
def test_blank_lines_are_dead_letters(payload):
    check_same([payload])
