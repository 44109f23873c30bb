"""AWS: the Lambda behind a Kinesis event source mapping, fed the event
Lambda delivers (base64 data, sequence numbers, partition keys, arrival
times), writing to DynamoDB on moto's server."""

from __future__ import annotations

import base64

import pytest

from pipeline_code.core.userstate import recent_items
from pipeline_code.fastpath import aws_lambda
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.userstate.local import LocalUserState
from tests.conftest import line
from tests.pipeline_code.userstate.test_stores import dynamodb_store

SHARD = "shardId-000000000006"


def kinesis_event(
    payloads: list[bytes], first_seq: int = 49590338271490256608559692538361571095921575989136588898
) -> dict:
    """A Kinesis batch as Lambda invokes the function with it."""
    records = []
    for i, data in enumerate(payloads):
        seq = str(first_seq + i)
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": f"{i:032x}",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": 1767268800.123 + i / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/shop-fresh",
                "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/shop-events",
            }
        )
    return {"Records": records}


@pytest.mark.standin
def test_a_batch_lands_in_dynamodb_and_a_redelivery_changes_nothing(moto_url) -> None:
    store = dynamodb_store(moto_url)
    fast = FastPath(store)
    batch = kinesis_event(
        [
            line(
                event_id=f"k{i}",
                user_id=f"u-{i % 2}",
                items=[{"item_id": f"sku-{i}"}],
                event_timestamp=f"2026-01-01T10:0{i}:00Z",
            )
            for i in range(6)
        ]
        + [b"\x00garbage"]
    )
    assert aws_lambda.apply(fast, batch) == {"batchItemFailures": []}
    assert recent_items(store.get("u-0")) == ["sku-0", "sku-2", "sku-4"]
    assert recent_items(store.get("u-1")) == ["sku-1", "sku-3", "sku-5"]
    before = store.read("u-0")[1]
    assert aws_lambda.apply(fast, batch) == {"batchItemFailures": []}
    assert store.read("u-0")[1] == before  # nothing written again


def test_failed_writes_are_reported_by_sequence_number(tmp_path) -> None:
    from tests.pipeline_code.fastpath.test_handler import FailingFor

    store = LocalUserState(tmp_path / "s.sqlite")
    batch = kinesis_event([line(event_id="a", user_id="ok"), line(event_id="b", user_id="bad"), b"{"])
    answer = aws_lambda.apply(FastPath(FailingFor(store, "bad")), batch)
    assert answer == {
        "batchItemFailures": [{"itemIdentifier": batch["Records"][1]["kinesis"]["sequenceNumber"]}]
    }
    assert store.get("ok") is not None


def test_the_entry_point_opens_the_store_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("USER_STATE", f"sqlite:{tmp_path / 's.sqlite'}")
    monkeypatch.setattr(aws_lambda, "_fast", None)
    assert aws_lambda.handler(kinesis_event([line()]), None) == {"batchItemFailures": []}
    assert LocalUserState(tmp_path / "s.sqlite").get("u-1") is not None


def test_a_bad_ttl_in_the_environment_names_the_variable(tmp_path) -> None:
    from pipeline_code.userstate import store_from_env

    with pytest.raises(ValueError, match="USER_STATE_TTL_DAYS must be a whole number of days, got 'a week'"):
        store_from_env({"USER_STATE": f"sqlite:{tmp_path / 's.sqlite'}", "USER_STATE_TTL_DAYS": "a week"})
