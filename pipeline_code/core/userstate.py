"""Each user's recent activity as the fast path keeps it: pure functions, no store.

The fast path (a stream function per cloud, ``dataflow fresh`` locally)
turns every valid event into a ``Touch`` and merges it into that user's
``Activity`` in an online store; the API reads the activity and sends its
items to the model as ``recent_items``, so a click changes the user's
recommendations without retraining.

An ``Activity`` is a function of the *set* of touches applied to it, not of
their order or count:

- it keeps the ``WINDOW`` newest touches by event time (ties by event id),
  so a touch older than a full window can change nothing and is ignored;
- a touch whose event id is already in the window is ignored, so a
  redelivery or a retry changes nothing;
- ``last_seen_at`` is the newest event time ever applied (a maximum).

So redelivered, duplicated and out-of-order events give the same state as
the same events once, in event-time order; the conformance test holds every
store to that. Bots are left out, as in training.

Example::

    >>> t = Touch("e1", 1_000_000, "view_item", ("sku-1",), 1.0)
    >>> a = merge(None, "u1", [t, t], now_us=5_000_000)
    >>> recent_items(a), a.last_seen_at
    (['sku-1'], 1000000)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from pipeline_code.core.features import INTERACTION_WEIGHTS

WINDOW = 32
"""Touches kept per user: enough for the model's ``MAX_RECENT`` (20) items."""

ITEMS_PER_TOUCH = 8
"""Items kept from one event (a purchase of 40 lines is still one touch)."""

MAX_DOC_BYTES = 30_000
"""Largest encoded window. Azure Table caps a string property at 64 KiB of
UTF-16 (32K characters), DynamoDB an item at 400 KB, Firestore a document at
1 MiB: the oldest touches go first until the window fits the smallest."""

MAX_RECENT_ITEMS = 20
"""As ``pipeline_code.ml.model.MAX_RECENT``: what the model folds in."""


class Touch(msgspec.Struct, array_like=True, frozen=True):
    """What one event contributes: its id, event time (microseconds), name,
    item ids and interaction weight (``INTERACTION_WEIGHTS``; 0 for events
    without one, such as ``search``)."""

    event_id: str
    at: int
    name: str
    items: tuple[str, ...]
    weight: float

    def key(self) -> tuple[int, str]:
        return (self.at, self.event_id)


class Activity(msgspec.Struct, frozen=True):
    """One user's state: touches newest first, the newest event time applied,
    and when the store last wrote it (wall clock, microseconds; the TTL
    counts from it)."""

    user_key: str
    touches: tuple[Touch, ...] = ()
    last_seen_at: int = 0
    updated_at: int = 0


_encoder = msgspec.json.Encoder()
_touches = msgspec.json.Decoder(tuple[Touch, ...])


def touch_of(record: dict[str, Any]) -> Touch | None:
    """A parsed event (``core.parse``'s record) -> its touch, or None for a bot."""
    if record["is_bot"]:
        return None
    items = tuple(dict.fromkeys(i["item_id"] for i in record["items"]))[:ITEMS_PER_TOUCH]
    weight = INTERACTION_WEIGHTS.get(record["event_name"], 0.0)
    return Touch(record["event_id"], record["event_timestamp"], record["event_name"], items, weight)


def merge(state: Activity | None, user_key: str, touches: Iterable[Touch], now_us: int) -> Activity | None:
    """``state`` with ``touches`` applied, or None when they change nothing
    (all already there, or older than a full window): no write needed."""
    old = state.touches if state is not None else ()
    last_seen = state.last_seen_at if state is not None else 0
    by_id = {t.event_id: t for t in old}
    for t in touches:
        by_id.setdefault(t.event_id, t)
        last_seen = max(last_seen, t.at)
    kept = sorted(by_id.values(), key=Touch.key, reverse=True)[:WINDOW]
    while len(kept) > 1 and len(encode_touches(kept)) > MAX_DOC_BYTES:
        kept.pop()
    if state is not None and tuple(kept) == old and last_seen == state.last_seen_at:
        return None
    return Activity(user_key, tuple(kept), last_seen, now_us)


def item_weights(state: Activity) -> dict[str, tuple[float, int]]:
    """Per item in the window: the summed interaction weight and the newest
    time the user touched it, newest first."""
    out: dict[str, tuple[float, int]] = {}
    for t in state.touches:
        for item in t.items:
            weight, at = out.get(item, (0.0, t.at))
            out[item] = (weight + t.weight, max(at, t.at))
    return out


def recent_items(state: Activity | None) -> list[str]:
    """What the model folds in: items the user engaged with (net weight
    above zero, so a removal from the cart cancels an add), oldest first,
    at most ``MAX_RECENT_ITEMS``."""
    if state is None:
        return []
    engaged = [(at, item) for item, (weight, at) in item_weights(state).items() if weight > 0]
    engaged.sort()
    return [item for _, item in engaged[-MAX_RECENT_ITEMS:]]


def encode_touches(touches: Iterable[Touch]) -> bytes:
    """The window as compact JSON (one array per touch): what every store keeps."""
    return _encoder.encode(tuple(touches))


def decode_touches(data: bytes | str) -> tuple[Touch, ...]:
    return _touches.decode(data)
