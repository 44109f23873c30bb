"""The recommendation API as an Azure Functions app (Python v2 programming model).

The Functions host imports ``app`` from ``function_app.py`` (the image copies
``pipeline_code/serving/azure/function_app.py`` there): one ASGI function
serving the same ``RecommendationApi`` every other cloud serves, calling the
model endpoint from ``MODEL_ENDPOINT`` (``azureml:<scoring uri>#<deployment>``).
Authentication happens before the request reaches the function (App Service
authentication, set up by the Azure serve component), so the function itself
is anonymous. With ``DATAFLOW_APP=collector`` the same image serves the
collector instead (``pipeline_code.collector.azure_function``).
"""

from __future__ import annotations

import os

import azure.functions as func

from pipeline_code import host
from pipeline_code.serving.api import RecommendationApi, endpoint_from_env


def build(endpoint_value: str | None = None) -> func.AsgiFunctionApp:
    """The API, calling ``MODEL_ENDPOINT`` (or ``endpoint_value``)."""
    app = RecommendationApi(endpoint_from_env(endpoint_value or os.environ.get(host.ENV_MODEL_ENDPOINT)))
    return func.AsgiFunctionApp(app=app, http_auth_level=func.AuthLevel.ANONYMOUS)
