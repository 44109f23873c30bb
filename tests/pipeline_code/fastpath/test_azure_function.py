"""Azure: the Function with an Event Hubs trigger, fed a batch as the
Functions host hands it to the Python worker (bodies, then per event the
enqueued time, sequence number, offset and partition key in
``SystemPropertiesArray``, the partition context), decoded by
azure-functions' own converter, writing to Azure Table on Azurite."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter

from pipeline_code.core.userstate import recent_items
from pipeline_code.fastpath import azure_function
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.userstate.local import LocalUserState
from tests.conftest import line
from tests.pipeline_code.userstate.test_stores import table_store


def host_batch(payloads: list[bytes], partition: str = "3") -> list[func.EventHubEvent]:
    """The worker's decoding of one trigger invocation (cardinality many)."""
    system = [
        {
            "EnqueuedTimeUtc": f"2026-01-01T12:00:0{i}.5+00:00",
            "SequenceNumber": 1000 + i,
            "Offset": str(4096 * i),
            "PartitionKey": None,
        }
        for i in range(len(payloads))
    ]
    metadata = {
        "Cardinality": meta.Datum("Many", "string"),
        "SystemPropertiesArray": meta.Datum(json.dumps(system), "json"),
        "PartitionContext": meta.Datum(
            json.dumps({"EventHubName": "events", "ConsumerGroup": "fresh", "PartitionId": partition}), "json"
        ),
    }
    data = meta.Datum(type="collection_bytes", value=type("C", (), {"bytes": payloads})())
    return EventHubTriggerConverter.decode(data, trigger_metadata=metadata)


@pytest.mark.standin
def test_a_batch_lands_in_azure_table_and_a_retry_changes_nothing(azurite_url) -> None:
    store = table_store(azurite_url)
    fast = FastPath(store)
    events = host_batch(
        [
            line(
                event_id=f"h{i}",
                user_id="anon-ish/user#1",
                items=[{"item_id": f"sku-{i}"}],
                event_timestamp=f"2026-01-01T10:0{i}:00Z",
            )
            for i in range(4)
        ]
        + [b'{"event_id": 5}']
    )
    assert events[0].sequence_number == 1000 and events[0].enqueued_time.year == 2026
    azure_function.apply(fast, events)
    azure_function.apply(fast, events)  # the host's retry of the same batch
    state = store.get("anon-ish/user#1")
    assert recent_items(state) == ["sku-0", "sku-1", "sku-2", "sku-3"] and len(state.touches) == 4


def test_a_failed_write_raises_so_the_retry_policy_runs_the_batch_again(tmp_path) -> None:
    from tests.pipeline_code.fastpath.test_handler import FailingFor

    store = LocalUserState(tmp_path / "s.sqlite")
    with pytest.raises(azure_function.BatchFailed, match="1 of 2"):
        azure_function.apply(
            FastPath(FailingFor(store, "bad")), host_batch([line(user_id="ok"), line(user_id="bad")])
        )


def test_the_function_is_declared_with_its_consumer_group_batches_and_retries(tmp_path) -> None:
    app = azure_function.build(FastPath(LocalUserState(tmp_path / "s.sqlite")))
    (function,) = app.get_functions()
    described = json.loads(function.get_function_json())
    (trigger,) = described["bindings"]
    assert trigger["type"] == "eventHubTrigger" and trigger["direction"] == "IN"
    assert trigger["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    assert trigger["eventHubName"] == "%EVENTHUB_NAME%" and trigger["connection"] == "EVENTHUB"
    assert trigger["cardinality"].lower() == "many" and trigger["dataType"].lower() == "binary"
    # What the worker reports to the host as the function's retry policy.
    retry = function.get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == azure_function.RETRIES


def test_with_a_table_store_the_app_also_purges_expired_users_daily(tmp_path) -> None:
    from pipeline_code.userstate.tables import PURGE_SCHEDULE

    class PurgingStore(LocalUserState):
        def purge(self) -> int:
            return 0

    app = azure_function.build(FastPath(PurgingStore(tmp_path / "s.sqlite")))
    functions = {f.get_function_name(): f for f in app.get_functions()}
    assert set(functions) == {"fresh", "purge"}
    (timer,) = json.loads(functions["purge"].get_function_json())["bindings"]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == PURGE_SCHEDULE
