"""The synthetic store."""

from __future__ import annotations

import io
import itertools
from collections import Counter

import orjson
import pytest

from pipeline_code.synth import StoreSpec, generate, write


def lines(**kw) -> list[bytes]:
    buf = io.BytesIO()
    write(StoreSpec(**kw), buf)
    return buf.getvalue().splitlines()


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert lines(events=400, seed=1) == lines(events=400, seed=1)
    assert lines(events=400, seed=1) != lines(events=400, seed=2)


def test_store_has_funnels_bots_retries_and_malformed_lines():
    out = lines(events=20_000)
    assert len(out) == 20_000
    names, ids, bad, bots = Counter(), Counter(), 0, 0
    for raw in out:
        try:
            ev = orjson.loads(raw)
            names[ev["event_name"]] += 1
            ids[ev["event_id"]] += 1
            bots += "bot" in ev.get("context", {}).get("user_agent", "").lower()
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            bad += 1
    assert names["view_item"] > names["add_to_cart"] > names["purchase"] > 0
    assert names["search"] > 0 and names["begin_checkout"] > 0
    assert sum(1 for n in ids.values() if n > 1) > 50  # tracker retries
    assert bad > 10 and bots > 50


def test_events_arrive_roughly_in_time_order():
    stamps = [orjson.loads(x)["event_timestamp"] for x in lines(events=3000, malformed_share=0)]
    inversions = sum(1 for a, b in itertools.pairwise(stamps) if b < a)
    assert inversions < len(stamps) * 0.2


@pytest.mark.parametrize("bad", [{"events": 0}, {"days": 0}, {"items": 3}, {"bot_share": 0.9}])
def test_bad_spec_names_the_field(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        next(generate(StoreSpec(**bad)))
