"""Segment's tracking calls mapped onto the event contract (v1).

Segment's e-commerce spec names map to the contract's GA4-style names:

| Segment call | event_name |
|---|---|
| ``page``, ``screen`` | ``page_view`` |
| track "Product List Viewed" / "Product List Filtered" | ``view_item_list`` |
| track "Product Clicked" | ``select_item`` |
| track "Product Viewed" | ``view_item`` |
| track "Products Searched" | ``search`` |
| track "Product Added to Wishlist" | ``add_to_wishlist`` |
| track "Product Added" | ``add_to_cart`` |
| track "Product Removed" | ``remove_from_cart`` |
| track "Cart Viewed" | ``view_cart`` |
| track "Checkout Started" | ``begin_checkout`` |
| track "Payment Info Entered" | ``add_payment_info`` |
| track "Order Completed" | ``purchase`` |
| track "Order Refunded" | ``refund`` |

The id is Segment's ``messageId`` (its own dedup key), the time is
``timestamp`` (or ``originalTimestamp``, or when the collector received the
call), the user is ``userId`` / ``anonymousId``, products become ``items``
(``product_id`` or ``sku`` as ``item_id``), ``order_id`` the transaction,
``revenue`` / ``total`` / ``value`` the value, and the page, user agent,
locale and campaign come from ``context``.

Every other call (``identify``, ``alias``, ``group``, a track event the
contract has no name for) is **kept, not dropped**: its JSON goes to the
event log as sent (every field kept), so the pipeline stores it in ``dead_letters`` with
the validation reason (stage ``validate``) and it can be replayed once the
contract covers it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

TRACK_EVENTS = {
    "Product List Viewed": "view_item_list",
    "Product List Filtered": "view_item_list",
    "Product Clicked": "select_item",
    "Product Viewed": "view_item",
    "Products Searched": "search",
    "Product Added to Wishlist": "add_to_wishlist",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Cart Viewed": "view_cart",
    "Checkout Started": "begin_checkout",
    "Payment Info Entered": "add_payment_info",
    "Order Completed": "purchase",
    "Order Refunded": "refund",
}
CALL_TYPES = ("track", "page", "screen", "identify", "alias", "group")


def _item(product: dict[str, Any]) -> dict[str, Any] | None:
    item_id = product.get("product_id") or product.get("sku") or product.get("id")
    if item_id is None:
        return None
    item: dict[str, Any] = {"item_id": str(item_id)}
    for ours, theirs in (("item_name", "name"), ("item_category", "category"), ("item_brand", "brand")):
        if product.get(theirs) is not None:
            item[ours] = product[theirs]
    if product.get("price") is not None:
        item["price"] = product["price"]
    if product.get("quantity") is not None:
        item["quantity"] = product["quantity"]
    return item


def _items(properties: dict[str, Any]) -> list[dict[str, Any]]:
    products = properties.get("products")
    if isinstance(products, list):
        return [i for i in (_item(p) for p in products if isinstance(p, dict)) if i is not None]
    single = _item(properties)  # "Product Viewed" carries one product at the top level
    return [single] if single else []


def _context(message: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    campaign = context.get("campaign") if isinstance(context.get("campaign"), dict) else {}
    out = {
        "page_url": page.get("url") or properties.get("url"),
        "page_referrer": page.get("referrer") or properties.get("referrer"),
        "page_title": page.get("title") or properties.get("title"),
        "user_agent": context.get("userAgent"),
        "locale": context.get("locale"),
        "campaign_source": campaign.get("source"),
        "campaign_medium": campaign.get("medium"),
    }
    return {k: v for k, v in out.items() if v is not None}


def event_name(message: dict[str, Any]) -> str | None:
    """The contract's name for a Segment call, or None (kept as is)."""
    kind = message.get("type")
    if kind in ("page", "screen"):
        return "page_view"
    if kind == "track":
        return TRACK_EVENTS.get(str(message.get("event", "")))
    return None


def to_contract(message: dict[str, Any], received_at: dt.datetime) -> dict[str, Any] | None:
    """One Segment message -> a contract event, or None when the contract has
    no name for it (the caller keeps the original)."""
    name = event_name(message)
    if name is None:
        return None
    properties = message.get("properties") if isinstance(message.get("properties"), dict) else {}
    if message.get("type") == "screen" and message.get("name") and "title" not in properties:
        properties = {**properties, "title": message["name"]}
    event: dict[str, Any] = {
        "event_id": message.get("messageId"),
        "event_name": name,
        "event_timestamp": message.get("timestamp")
        or message.get("originalTimestamp")
        or received_at.isoformat(),
        "user_id": message.get("userId"),
        "anonymous_id": message.get("anonymousId"),
        "session_id": properties.get("session_id") or _context_value(message, "sessionId"),
        "items": _items(properties),
        "search_term": properties.get("query"),
        "transaction_id": properties.get("order_id"),
        "currency": properties.get("currency"),
        "value": next(
            (properties[k] for k in ("revenue", "total", "value") if properties.get(k) is not None), None
        ),
        "context": _context(message, properties) or None,
    }
    return {k: v for k, v in event.items() if v is not None and v != []}


def _context_value(message: dict[str, Any], key: str) -> Any:
    context = message.get("context")
    return context.get(key) if isinstance(context, dict) else None


def encode(message: dict[str, Any], received_at: dt.datetime, as_sent: bytes | None = None) -> bytes:
    """The event-log line for one Segment message: the contract event, or the
    message itself (``as_sent``, when the caller has serialized it already)
    when the contract has no name for it."""
    event = to_contract(message, received_at)
    if event is not None:
        return orjson.dumps(event)
    return as_sent if as_sent is not None else orjson.dumps(message)
