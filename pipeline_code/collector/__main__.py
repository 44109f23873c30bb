"""The collector's container entrypoint (and ``dataflow collect``'s server).

    COLLECTOR_SINK=kinesis:dataflow-ingest-events DATAFLOW_WRITE_KEYS=k1,k2 python -m pipeline_code.collector

Configuration, from the environment: ``pipeline_code.collector.settings``
(``COLLECTOR_SINK``, the write keys, the spill: 1 GiB by default here), plus
``HOST``/``PORT`` (default 0.0.0.0:8080) and ``AWS_REGION`` for Kinesis.
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline_code import host
from pipeline_code.collector.settings import collector_from_env


def main() -> int:
    from pipeline_code.web.server import make_server

    logging.basicConfig(level=os.environ.get(host.ENV_LOG_LEVEL, "INFO"), format="%(levelname)s %(message)s")
    try:
        collector = collector_from_env(dict(os.environ), default_spill_mb=1024)
        port = os.environ.get("PORT", "8080")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"PORT must be a port number, got {port!r}")
    except ValueError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 1
    make_server(collector, os.environ.get("HOST", "0.0.0.0"), int(port), log_level="info").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
