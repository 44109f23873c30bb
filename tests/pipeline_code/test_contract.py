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


def test_proto_schema_is_committed_and_accepts_the_contracts_events(tmp_path):
    """The Pub/Sub topic's schema: generated from the contract, compiled by
    protoc, and every valid synthetic event parses under proto3's JSON mapping
    (what Pub/Sub applies to JSON messages)."""
    import pytest

    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools (dev extra) is not installed")
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format
    from google.protobuf.message_factory import GetMessageClass

    from pipeline_code.contract import proto_schema_text
    from pipeline_code.synth import StoreSpec, generate

    committed = Path("pipeline_code/schemas/event.v1.proto").read_text()
    assert committed == proto_schema_text()
    out = tmp_path / "event.pb"
    assert (
        protoc.main(["protoc", "-Ipipeline_code/schemas", f"--descriptor_set_out={out}", "event.v1.proto"])
        == 0
    )
    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(f)
    event_class = GetMessageClass(pool.FindMessageTypeByName("Event"))
    lines = list(generate(StoreSpec(events=1500, malformed_share=0)))
    for raw in lines:
        json_format.Parse(raw, event_class())
    with pytest.raises(json_format.ParseError):
        json_format.Parse(b'{"event_id": "e", "items": "not a list"}', event_class())
