"""The user-activity event contract, version 1.

One schema describes every event the chain accepts, on every cloud. It is
modelled on what stores already send: GA4's recommended e-commerce events
(`view_item`, `add_to_cart`, `purchase`, ... with an `items` array) and
Segment's e-commerce spec (`anonymous_id` beside `user_id`, a `context`
object). A tracker that speaks either maps field for field.

The msgspec ``Event`` struct below is the single source of truth: it decodes
and type-checks a JSON line in C, and ``json_schema()`` renders it as the
JSON Schema committed at ``pipeline_code/schemas/event.v1.json`` (regenerate
with ``python -m pipeline_code.contract > pipeline_code/schemas/event.v1.json``,
and the Pub/Sub topic's proto3 schema with ``--proto > .../event.v1.proto``;
tests fail when either drifts). Rules that a JSON Schema cannot express
well (which fields each event name requires, timestamp bounds) live in
``pipeline_code.core.parse`` and are listed in ``EVENT_REQUIREMENTS``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = "1"

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]

EventName = Literal[
    "page_view",
    "view_item_list",
    "select_item",
    "view_item",
    "search",
    "add_to_wishlist",
    "add_to_cart",
    "remove_from_cart",
    "view_cart",
    "begin_checkout",
    "add_shipping_info",
    "add_payment_info",
    "purchase",
    "refund",
]
EVENT_NAMES: tuple[str, ...] = EventName.__args__  # type: ignore[attr-defined]

# Per event name: what must be present beyond the always-required fields.
# Mirrors GA4's "required parameters" for its recommended events.
EVENT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "view_item_list": ("items",),
    "select_item": ("items",),
    "view_item": ("items",),
    "search": ("search_term",),
    "add_to_wishlist": ("items",),
    "add_to_cart": ("items",),
    "remove_from_cart": ("items",),
    "begin_checkout": ("items",),
    "add_shipping_info": ("items",),
    "add_payment_info": ("items",),
    "purchase": ("items", "transaction_id"),
    "refund": ("transaction_id",),
}

DeviceCategory = Literal["desktop", "mobile", "tablet", "tv", "other"]


class Item(msgspec.Struct, forbid_unknown_fields=False):
    """One product in an event's ``items`` array (GA4 item / Segment product)."""

    item_id: Id
    item_name: Text | None = None
    item_category: Text | None = None
    item_brand: Text | None = None
    price: Money | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


class Context(msgspec.Struct, forbid_unknown_fields=False):
    """Where the event happened (Segment's ``context`` / GA4's page and device)."""

    page_url: Text | None = None
    page_referrer: Text | None = None
    page_title: Text | None = None
    user_agent: Text | None = None
    device_category: DeviceCategory | None = None
    locale: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    campaign_source: Text | None = None
    campaign_medium: Text | None = None


class Event(msgspec.Struct, forbid_unknown_fields=False):
    """One user-activity event. Unknown fields are ignored, so newer trackers
    can add fields without breaking older pipelines."""

    event_id: Id
    event_name: EventName
    event_timestamp: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    schema_version: Literal["1"] = "1"
    user_id: Id | None = None
    anonymous_id: Id | None = None
    session_id: Id | None = None
    items: Annotated[list[Item], msgspec.Meta(max_length=200)] = []
    search_term: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    transaction_id: Id | None = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{3}$")] | None = None
    value: Money | None = None
    context: Context | None = None


def _clean_descriptions(node: object) -> None:
    """Dedent every description in place, as ``inspect.cleandoc`` does.

    msgspec copies struct docstrings into the schema, and whether it dedents
    them changed between releases (0.22 did, 0.23 keeps the indentation):
    cleaning them here keeps the committed schema independent of that."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = inspect.cleandoc(value)
            else:
                _clean_descriptions(value)
    elif isinstance(node, list):
        for value in node:
            _clean_descriptions(value)


def json_schema() -> dict:
    """The contract as a JSON Schema (2020-12) document."""
    schema = msgspec.json.schema(Event)
    _clean_descriptions(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://data-flow.dev/schemas/event.v{SCHEMA_VERSION}.json"
    schema["title"] = f"Data-Flow user activity event, version {SCHEMA_VERSION}"
    schema["description"] = (
        "Unknown properties are ignored. Either user_id or anonymous_id is required. "
        "Per event_name requirements: "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in EVENT_REQUIREMENTS.items())
        + ". event_timestamp must carry a time zone, be on or after 2000-01-01 and at "
        "most 24 hours after the event was received."
    )
    return schema


def _proto_type(t: msgspec.inspect.Type) -> tuple[str, bool]:
    """A field's proto3 type, and whether it may be absent."""
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        return _proto_type(inner[0])[0], True
    if isinstance(t, msgspec.inspect.StructType):
        return t.cls.__name__, True
    if isinstance(t, msgspec.inspect.IntType):
        return "int64", False
    if isinstance(t, msgspec.inspect.FloatType):
        return "double", False
    # Strings, enums as their names, and RFC 3339 timestamps: proto3's JSON
    # mapping reads a plain JSON string into each.
    return "string", False


def _proto_message(cls: type, indent: str, nested: list[type]) -> list[str]:
    info = msgspec.inspect.type_info(cls)
    lines = [f"{indent}message {cls.__name__} {{"]
    for sub in nested:
        lines += _proto_message(sub, indent + "  ", [])
    for number, f in enumerate(info.fields, start=1):
        if isinstance(f.type, msgspec.inspect.ListType):
            label, (type_, _) = "repeated ", _proto_type(f.type.item_type)
        else:
            type_, nullable = _proto_type(f.type)
            optional = nullable or not f.required
            label = "optional " if optional and type_ in ("string", "int64", "double") else ""
        lines.append(f"{indent}  {label}{type_} {f.name} = {number};")
    return [*lines, f"{indent}}}"]


def proto_schema_text() -> str:
    """The contract as a proto3 schema for the Pub/Sub topic (one top-level
    message, as Pub/Sub requires). Publishers send JSON; Pub/Sub checks it
    against this with proto3's JSON mapping, so snake_case keys and plain
    values are what it expects."""
    header = [
        f"// Data-Flow user activity event, version {SCHEMA_VERSION}.",
        "// Generated from pipeline_code/contract.py: python -m pipeline_code.contract --proto",
        'syntax = "proto3";',
        "",
    ]
    return "\n".join([*header, *_proto_message(Event, "", [Item, Context])]) + "\n"


def json_schema_text() -> str:
    """The committed file's exact text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    print(proto_schema_text() if "--proto" in sys.argv else json_schema_text(), end="")
