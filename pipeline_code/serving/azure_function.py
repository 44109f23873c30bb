"""The recommendation API as an Azure Functions app (Python v2 programming model).

The Functions host imports ``app`` from ``function_app.py`` (the image copies
``pipeline_code/serving/azure/function_app.py`` there): one ASGI function
serving the same ``RecommendationApi`` every other cloud serves, calling the
model endpoint from ``MODEL_ENDPOINT`` (``azureml:<scoring uri>#<deployment>``).
Authentication happens before the request reaches the function (App Service
authentication, set up by the Azure serve component), so the function itself
is anonymous. With ``DATAFLOW_APP=collector`` the same image serves the
collector instead (``COLLECTOR_SINK=eventhubs:...``, write keys from Key Vault).
"""

from __future__ import annotations

import os

import azure.functions as func

from pipeline_code.serving.api import RecommendationApi, endpoint_from_env


def build(endpoint_value: str | None = None) -> func.AsgiFunctionApp:
    """The API, or with ``DATAFLOW_APP=collector`` the collector (same image)."""
    if os.environ.get("DATAFLOW_APP") == "collector":
        from pipeline_code.collector.__main__ import publisher_for, write_keys_from_env
        from pipeline_code.collector.app import Collector

        env = dict(os.environ)
        publisher = publisher_for(env["COLLECTOR_SINK"], spill_mb=int(env.get("COLLECTOR_SPILL_MB", "0")))
        app = Collector(publisher, write_keys_from_env(env))
    else:
        app = RecommendationApi(endpoint_from_env(endpoint_value or os.environ.get("MODEL_ENDPOINT")))
    return func.AsgiFunctionApp(app=app, http_auth_level=func.AuthLevel.ANONYMOUS)
