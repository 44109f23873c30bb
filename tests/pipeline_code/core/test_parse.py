"""Parsing, validation and normalisation: every failure is a dead letter."""

from __future__ import annotations

import itertools

import pytest

from pipeline_code.core.history import shard_of
from pipeline_code.core.parse import (
    RawEvent,
    accepted_ids,
    candidate_keys,
    is_bot_user_agent,
    joined_keys,
    line_keys,
    parse_batch,
    parse_event,
    routed_keys,
)
from tests.conftest import HOSTILE, RECEIVED_US, line


def raw(payload: bytes, offset: int = 0) -> RawEvent:
    return RawEvent(offset, RECEIVED_US, payload)


def test_valid_event_is_normalised():
    rec, dead = parse_event(
        raw(
            line(
                event_name="search",
                search_term="  Red   SHOES ",
                items=None,
                currency="usd",
                user_id=" u-9 ",
                event_timestamp="2026-01-01T11:00:00+01:00",
            ),
            offset=42,
        )
    )
    assert dead is None
    assert rec["search_term"] == "red shoes"
    assert rec["currency"] == "USD"
    assert rec["user_id"] == rec["user_key"] == "u-9"
    assert rec["event_timestamp"] == 1_767_261_600_000_000  # 10:00Z
    assert rec["event_date"] == 20454  # 2026-01-01 in days since epoch
    assert rec["source_offset"] == 42 and rec["received_at"] == RECEIVED_US
    assert rec["items"] == []


def test_anonymous_users_get_a_distinct_key():
    rec, _ = parse_event(raw(line(user_id=None, anonymous_id="a-1")))
    assert rec["user_key"] == "anon:a-1" and rec["user_id"] is None


def test_value_is_derived_from_items_when_missing():
    items = [{"item_id": "a", "price": 2.5, "quantity": 2}, {"item_id": "b", "price": 1.0}]
    rec, _ = parse_event(raw(line(event_name="purchase", transaction_id="t", items=items)))
    assert rec["value"] == 6.0
    rec, _ = parse_event(raw(line(event_name="purchase", transaction_id="t", items=items, value=99)))
    assert rec["value"] == 99


def test_unknown_fields_are_ignored_for_forward_compatibility():
    rec, dead = parse_event(raw(line(new_field={"x": 1})))
    assert dead is None and "new_field" not in rec


@pytest.mark.parametrize(("name", "payload", "stage", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_becomes_a_dead_letter(name, payload, stage, reason):
    rec, dead = parse_event(raw(payload, offset=7))
    assert rec is None
    assert dead["failed_stage"] == stage
    assert reason in dead["error_message"]
    assert dead["payload"] == payload  # byte for byte
    assert dead["source_offset"] == 7
    assert dead["received_at"] == RECEIVED_US
    assert dead["dead_lettered_at"] >= RECEIVED_US


def test_dead_letter_keeps_text_only_when_utf8():
    _, dead = parse_event(raw(b"\xff not utf-8"))
    assert dead["payload_text"] is None
    _, dead = parse_event(raw(b"plain text"))
    assert dead["payload_text"] == "plain text"


def test_dead_letter_names_the_event_id_when_readable():
    _, dead = parse_event(raw(line(event_id="e-77", user_id=None)))
    assert dead["event_id"] == "e-77"


def test_batch_conserves_every_line(hostile_lines):
    raws = [raw(p, i) for i, p in enumerate([*hostile_lines, line(), line(event_id="e-2")])]
    records, dead = parse_batch(raws)
    assert len(records) == 2
    assert len(dead) == len(hostile_lines)


def test_accepted_ids_are_the_records_ids(hostile_lines):
    raws = [raw(p, i) for i, p in enumerate([*hostile_lines, line(event_id="  e-1 "), line(event_id="e-2")])]
    records, _ = parse_batch(raws)
    assert accepted_ids(raws) == [(r["event_id"], r["source_offset"]) for r in records]
    assert accepted_ids(raws)[0] == ("e-1", len(hostile_lines))


@pytest.mark.parametrize(
    ("ua", "bot"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1)", True),
        ("python-requests/2.32", True),
        ("Mozilla/5.0 HeadlessChrome/120", True),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0)", False),
        (None, False),
    ],
)
def test_bot_user_agents(ua, bot):
    assert is_bot_user_agent(ua) is bot


def test_candidate_keys_hold_every_key_parsing_can_give():
    """The snapshot filter: every accepted line's id and user key is among
    the candidates, whatever the spelling (padding, duplicate keys, escapes),
    and lines that cannot parse add nothing that is not theirs."""
    lines = [
        line(event_id=" padded ", user_id=" u-pad "),
        line(event_id="anon", user_id=None, anonymous_id="  a-1 "),
        line(event_id="both", user_id="   ", anonymous_id="a-2"),
        line(event_id="accent", user_id="u-\u00e9"),  # json.dumps escapes it: \u00e9
        b'{"event_id": "first", "event_id": "dup", "event_name": "page_view", "user_id": "u",'
        b' "event_timestamp": "2026-01-01T10:00:00Z"}',
        b'{"event_id": "\\u0078-esc", "event_name": "page_view", "user_id": "\\u0075-esc",'
        b' "event_timestamp": "2026-01-01T10:00:00Z"}',
        *(payload for _, payload, _, _ in HOSTILE),
    ]
    raws = [raw(p, offset=i) for i, p in enumerate(lines)]
    ids, users, repeated, count = candidate_keys(raws)
    records, dead = parse_batch(raws)
    assert count == len(raws)
    # Each accepted line's keys read without parsing are the ones parsing gives.
    accepted = {r["source_offset"]: (r["event_id"], r["user_key"]) for r in records}
    assert {r.offset: line_keys(r.payload) for r in raws if r.offset in accepted} == accepted
    # Only ids on more than one line are repeated: the hostile lines share the default one.
    assert repeated == {"e-1"}
    assert len(records) == 6 and len(dead) == len(HOSTILE)
    assert {r["event_id"] for r in records} <= ids
    assert {r["user_key"] for r in records} <= users
    assert {"padded", "dup", "x-esc"} <= ids
    assert {"u-pad", "anon:a-1", "anon:a-2", "u-esc", "u-\u00e9"} <= users
    # Nothing invented: beyond the accepted lines' keys, only the hostile lines' own (the default id).
    assert ids - {r["event_id"] for r in records} == {"e-1"}


def test_routed_keys_give_each_line_its_id_and_user_shard():
    """The run's key pass, routed: the same candidate keys, and per line, in
    order, the id ``line_keys`` reads and the shard of its user (0 for a
    line with none), so that each process takes its lines without reading them."""
    payloads = [
        line(event_id=" a ", user_id="u1"),
        line(event_id="b", user_id=None, anonymous_id="x"),
        line(event_id="a", user_id="u2"),
        b"not json",
        line(event_id="c", user_id=None, anonymous_id=None),
    ]
    keys, routes = routed_keys(payloads, 7)
    assert keys == candidate_keys(raw(p, i) for i, p in enumerate(payloads))
    assert routes.ids == ["a", "b", "a", None, "c"]
    assert list(routes.shards) == [shard_of("u1", 7), shard_of("anon:x", 7), shard_of("u2", 7), 0, 0]
    assert routes.contested({"a"}) == (0, 2) and routes.contested(set()) == ()
    for shards in (0, 257):
        with pytest.raises(ValueError, match=f"between 1 and 256 to route lines, got {shards}"):
            routed_keys(payloads, shards)


def test_keys_read_in_shares_join_to_the_keys_read_at_once():
    """A run's key pass shared by processes, a range of lines each: an id
    on lines of two ranges is repeated, and the routes follow the lines' order."""
    payloads = [line(event_id=f"e{i % 4}", user_id=f"u{i}") for i in range(9)] + [b"{", line(event_id="e9")]
    whole = routed_keys(payloads, 5)
    for cuts in ([3, 6], [1], [4, 4, 8], [10]):
        bounds = [0, *cuts, len(payloads)]
        shares = [routed_keys(payloads[a:b], 5) for a, b in itertools.pairwise(bounds)]
        assert joined_keys(shares) == whole
    first = candidate_keys(raw(p) for p in payloads[:5])
    assert joined_keys([(first, None), routed_keys(payloads[5:], 5)]) == (whole[0], None)
