"""The collector as an Azure Functions app (Python v2 programming model).

The Functions image serves it when ``DATAFLOW_APP=collector``
(``pipeline_code/serving/azure/function_app.py`` picks the app): one ASGI
function around the same ``Collector``, publishing to Event Hubs
(``COLLECTOR_SINK=eventhubs:<namespace host>/<hub>``) with write keys from
Key Vault references (``DATAFLOW_WRITE_KEYS``). No local spill: the
instance's disk does not outlive it, so a broker outage answers 503 and
trackers resend.
"""

from __future__ import annotations

import os

import azure.functions as func

from pipeline_code.collector.settings import collector_from_env


def build() -> func.AsgiFunctionApp:
    """The collector from the Function App's settings."""
    app = collector_from_env(dict(os.environ), default_spill_mb=0)
    return func.AsgiFunctionApp(app=app, http_auth_level=func.AuthLevel.ANONYMOUS)
