"""The fast path on Azure: a Function with an Event Hubs trigger.

The Functions image serves it when ``DATAFLOW_APP=fresh``
(``pipeline_code/serving/azure/function_app.py``). Settings: the hub in
``EVENTHUB_NAME``, the fast path's own consumer group in
``EVENTHUB_CONSUMER_GROUP``, the namespace by identity in
``EVENTHUB__fullyQualifiedNamespace`` (no connection string), and
``USER_STATE=tables:https://ACCOUNT.table.core.windows.net/TABLE``.

The trigger delivers batches (``cardinality=many``) per partition and
checkpoints after each; a batch whose writes failed raises, so the retry
policy (exponential, up to ``RETRIES``) runs it again before the checkpoint
moves. Rejected events are acknowledged (see ``pipeline_code.fastpath``).
A timer (``purge``, daily) deletes users whose state expired: Table storage
has no TTL of its own (``pipeline_code.userstate.tables``).
"""

from __future__ import annotations

import logging
import os
import time

import azure.functions as func

from pipeline_code import host
from pipeline_code.core.parse import RawEvent
from pipeline_code.core.ports import to_us
from pipeline_code.fastpath.handler import FastPath
from pipeline_code.streams.records import stream_offset

log = logging.getLogger("dataflow.fresh")
CONNECTION = host.EVENTHUB_CONNECTION
RETRIES = "8"


class BatchFailed(Exception):
    """Some users' states could not be written: the batch is retried."""


def raw_event(event: func.EventHubEvent) -> RawEvent:
    """An Event Hubs event -> ``RawEvent`` (arrival from the enqueued time;
    the offset from partition key and sequence number, as Capture's)."""
    enqueued = to_us(event.enqueued_time) if event.enqueued_time else time.time_ns() // 1000
    key = f"{event.partition_key or ''}:{event.sequence_number}"
    return RawEvent(stream_offset(key, enqueued // 1000), enqueued, event.get_body())


LAG_LINE = "fresh batch events={events} failed={failed} lag_s={lag:.3f}"
"""Logged per batch (to Application Insights ``traces``): Azure Monitor's
fast-path lag alert reads ``lag_s``, how long the batch's oldest event had
waited on the hub. Event Hubs publishes no per-consumer-group lag metric."""


def apply(fast: FastPath, events: list[func.EventHubEvent]) -> None:
    raws = [raw_event(e) for e in events]
    outcome = fast.apply(raws)
    if raws:
        lag = max(0, time.time_ns() // 1000 - min(r.received_at_us for r in raws)) / 1e6
        log.info(LAG_LINE.format(events=len(raws), failed=len(outcome.failed), lag=lag))
    if outcome.failed:
        raise BatchFailed(f"{len(outcome.failed)} of {len(events)} events' user states were not written")


def build(fast: FastPath | None = None) -> func.FunctionApp:
    """The Function App: one Event Hubs trigger over the store in ``USER_STATE``."""
    if fast is None:
        from pipeline_code.userstate import store_from_env

        fast = FastPath(store_from_env(os.environ))
    app = func.FunctionApp()

    @app.function_name("fresh")
    @app.event_hub_message_trigger(
        arg_name="events",
        connection=CONNECTION,
        event_hub_name=f"%{host.ENV_EVENTHUB_NAME}%",
        consumer_group=f"%{host.ENV_EVENTHUB_CONSUMER_GROUP}%",
        cardinality=func.Cardinality.MANY,
        data_type=func.DataType.BINARY,
    )
    @app.retry(
        strategy="exponential_backoff",
        max_retry_count=RETRIES,
        minimum_interval="00:00:01",
        maximum_interval="00:00:30",
    )
    def fresh(events: list[func.EventHubEvent]) -> None:
        apply(fast, events)

    store = fast.store
    if hasattr(store, "purge"):
        from pipeline_code.userstate.tables import PURGE_SCHEDULE

        @app.function_name("purge")
        @app.timer_trigger(arg_name="timer", schedule=PURGE_SCHEDULE, run_on_startup=False)
        def purge(timer: func.TimerRequest) -> None:
            log.info("purged %d expired user states", store.purge())

    return app
