"""The collector's container entrypoint (and ``dataflow collect``'s server).

    COLLECTOR_SINK=kinesis:dataflow-ingest-events DATAFLOW_WRITE_KEYS=k1,k2 python -m pipeline_code.collector

Configuration, from the environment:

- ``COLLECTOR_SINK``: ``eventlog:<dir>``, ``pubsub:projects/P/topics/T``,
  ``kinesis:<stream name>`` or ``eventhubs:<namespace host>/<hub>``;
- ``DATAFLOW_WRITE_KEYS``: comma-separated write keys (required unless
  ``COLLECTOR_OPEN=1``, for a private local collector);
- ``COLLECTOR_SPILL_DIR`` (default: a directory under the system temp dir) and
  ``COLLECTOR_SPILL_MB`` (default 1024): the local spill for broker outages;
- ``PORT`` (default 8080), ``AWS_REGION`` for Kinesis.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from pipeline_code.collector.app import Collector
from pipeline_code.collector.publish import (
    EventHubsPublisher,
    EventLogPublisher,
    KinesisPublisher,
    Publisher,
    PubSubPublisher,
    SpillingPublisher,
)


def publisher_for(sink: str, spill_dir: str | None = None, spill_mb: int = 1024) -> Publisher:
    """``COLLECTOR_SINK`` -> the publisher (cloud ones behind a local spill)."""
    kind, _, target = sink.partition(":")
    if not target:
        raise ValueError(
            f"COLLECTOR_SINK {sink!r} must be KIND:TARGET (eventlog:, pubsub:, kinesis:, eventhubs:)"
        )
    if kind == "eventlog":
        return EventLogPublisher(target)  # already durable and local: no spill in front of it
    if kind == "pubsub":
        inner: Publisher = PubSubPublisher(target)
    elif kind == "kinesis":
        inner = KinesisPublisher(target, os.environ.get("AWS_REGION"))
    elif kind == "eventhubs":
        host, _, hub = target.partition("/")
        if not hub:
            raise ValueError(f"COLLECTOR_SINK eventhubs:{target!r} must be eventhubs:NAMESPACE_HOST/HUB")
        inner = EventHubsPublisher(host, hub)
    else:
        raise ValueError(f"COLLECTOR_SINK kind {kind!r} must be eventlog, pubsub, kinesis or eventhubs")
    spill = spill_dir or str(Path(tempfile.gettempdir()) / "dataflow-collector-spill")
    return SpillingPublisher(inner, spill, spill_mb << 20)


def write_keys_from_env(env: dict[str, str]) -> set[str] | None:
    keys = {k.strip() for k in env.get("DATAFLOW_WRITE_KEYS", "").split(",") if k.strip()}
    if keys:
        return keys
    if env.get("COLLECTOR_OPEN") == "1":
        return None
    raise ValueError(
        "DATAFLOW_WRITE_KEYS is empty (got None); set it, or COLLECTOR_OPEN=1 for a private collector"
    )


def main() -> int:
    from pipeline_code.serving.server import make_server

    logging.basicConfig(
        level=os.environ.get("DATAFLOW_LOG_LEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    try:
        publisher = publisher_for(
            os.environ.get("COLLECTOR_SINK", ""),
            os.environ.get("COLLECTOR_SPILL_DIR"),
            int(os.environ.get("COLLECTOR_SPILL_MB", "1024")),
        )
        keys = write_keys_from_env(dict(os.environ))
        port = int(os.environ.get("PORT", "8080"))
    except ValueError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 1
    make_server(Collector(publisher, keys), os.environ.get("HOST", "0.0.0.0"), port, log_level="info").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
