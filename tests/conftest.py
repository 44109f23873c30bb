"""Shared fixtures: sample events and a hostile corpus, no network needed."""

from __future__ import annotations

import json

import pytest

RECEIVED_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
FAST_SKIPS = ("slow", "spark", "network", "standin")


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"the inner loop: deselect tests marked {', '.join(FAST_SKIPS)} (CI runs everything)",
    )


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        # Whatever takes the session's local Spark is a Spark test, wherever it lives.
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker("spark")
    if not config.getoption("--fast"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in FAST_SKIPS) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def event(**overrides) -> dict:
    """A valid view_item event; override any field (None removes it)."""
    ev = {
        "event_id": "e-1",
        "event_name": "view_item",
        "event_timestamp": "2026-01-01T10:00:00Z",
        "user_id": "u-1",
        "session_id": "s-1",
        "items": [{"item_id": "sku-1", "item_category": "shoes", "price": 10.0}],
        "context": {"user_agent": "Mozilla/5.0", "device_category": "mobile"},
    }
    for key, value in overrides.items():
        if value is None:
            ev.pop(key, None)
        else:
            ev[key] = value
    return ev


def line(**overrides) -> bytes:
    return json.dumps(event(**overrides)).encode()


# Each entry: (name, payload bytes, failed stage, a fragment of the reason).
HOSTILE = [
    ("not json", b"hello world", "parse", "not valid JSON"),
    ("truncated", line()[:40], "parse", "truncated"),
    ("invalid utf-8", b'{"event_id": "\xff\xfe"}', "parse", "UTF-8"),
    ("five megabytes", b'{"event_id": "' + b"x" * (5 << 20) + b'"}', "parse", "bytes; the limit is"),
    ("deeply nested", b'{"extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "parse", "nested"),
    ("array", b"[" + line() + b"]", "validate", "Expected `object`, got `array`"),
    ("null", b"null", "validate", "Expected `object`, got `null`"),
    ("number id", line(event_id=42), "validate", "$.event_id"),
    ("missing name", line(event_name=None), "validate", "event_name"),
    ("unknown name", line(event_name="teleport"), "validate", "Invalid enum value 'teleport'"),
    ("no timezone", line(event_timestamp="2026-01-01T10:00:00"), "validate", "timezone"),
    ("future", line(event_timestamp="2099-01-01T00:00:00Z"), "validate", "more than 24h after"),
    ("ancient", line(event_timestamp="1971-01-01T00:00:00Z"), "validate", "before 2000-01-01"),
    ("negative price", line(items=[{"item_id": "a", "price": -5}]), "validate", "$.items[0].price"),
    ("no user", line(user_id=None), "validate", "user_id or anonymous_id"),
    ("blank user", line(user_id="   "), "validate", "user_id or anonymous_id"),
    ("items as object", line(items={"item_id": "a"}), "validate", "$.items"),
    ("purchase without transaction", line(event_name="purchase"), "validate", "transaction_id"),
    ("search without term", line(event_name="search", items=None), "validate", "search_term"),
]


@pytest.fixture
def hostile_lines() -> list[bytes]:
    return [payload for _, payload, _, _ in HOSTILE]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A synthetic store's 20k events, processed into a warehouse and
    trained into a model, once per test session."""
    from pipeline_code.local.run import process_files
    from pipeline_code.ml.train import train
    from pipeline_code.synth import StoreSpec, write

    root = tmp_path_factory.mktemp("trained")
    data = root / "events.jsonl"
    with open(data, "wb") as f:
        write(StoreSpec(events=20_000), f)
    warehouse = root / "warehouse.duckdb"
    process_files([data], warehouse)
    result = train(warehouse, root / "models")
    return warehouse, root / "models", result


@pytest.fixture(scope="session")
def growing(tmp_path_factory):
    """A store whose warehouse grows: the first two thirds of 20k events are
    processed and trained on, then the rest, and training runs again. Returns
    ``(warehouse, models, first result, second result)``."""
    from pipeline_code.local.run import process_files
    from pipeline_code.ml.train import train
    from pipeline_code.synth import StoreSpec, write

    root = tmp_path_factory.mktemp("growing")
    with open(root / "all.jsonl", "wb") as f:
        write(StoreSpec(events=20_000), f)
    lines = (root / "all.jsonl").read_bytes().splitlines(keepends=True)
    cut = len(lines) * 2 // 3
    (root / "older.jsonl").write_bytes(b"".join(lines[:cut]))
    (root / "newer.jsonl").write_bytes(b"".join(lines[cut:]))
    warehouse, models = root / "warehouse.duckdb", root / "models"
    process_files([root / "older.jsonl"], warehouse)
    first = train(warehouse, models)
    process_files([root / "newer.jsonl"], warehouse)
    second = train(warehouse, models)
    return warehouse, models, first, second
