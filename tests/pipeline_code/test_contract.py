"""The event contract: the committed JSON Schema and the decoder agree."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from pipeline_code import contract
from pipeline_code.synth import StoreSpec, write
from tests.conftest import event

SCHEMA_FILE = Path(contract.__file__).parent / "schemas" / "event.v1.json"


def test_committed_schema_is_generated_from_the_contract():
    assert SCHEMA_FILE.read_text() == contract.json_schema_text(), (
        "regenerate: python -m pipeline_code.contract > pipeline_code/schemas/event.v1.json"
    )


def test_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_every_event_name_is_in_the_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    names = schema["$defs"]["Event"]["properties"]["event_name"]["enum"]
    assert sorted(names) == sorted(contract.EVENT_NAMES)
    assert set(contract.EVENT_REQUIREMENTS) <= set(contract.EVENT_NAMES)


def _both_verdicts(obj) -> tuple[bool, bool]:
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
    )
    js_ok = validator.is_valid(obj)
    try:
        msgspec.json.decode(json.dumps(obj).encode(), type=contract.Event)
        ms_ok = True
    except msgspec.ValidationError:
        ms_ok = False
    return js_ok, ms_ok


def test_generated_store_events_pass_the_json_schema():
    buf = io.BytesIO()
    write(StoreSpec(events=300, malformed_share=0, seed=3), buf)
    for raw in buf.getvalue().splitlines():
        assert _both_verdicts(json.loads(raw)) == (True, True)


@pytest.mark.parametrize(
    "bad",
    [
        event(event_id=7),
        event(event_name="teleport"),
        event(items=[{"item_id": ""}]),
        event(items=[{"item_id": "a", "quantity": 0}]),
        event(items=[{"item_id": "a", "price": -1}]),
        event(currency="dollars"),
        event(context={"device_category": "fridge"}),
        event(event_timestamp=None),
    ],
)
def test_json_schema_and_decoder_reject_the_same_events(bad):
    assert _both_verdicts(bad) == (False, False)
