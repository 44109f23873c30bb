"""The recommendation API: what the store's web and mobile apps call.

    dataflow api --model-dir .dataflow/models            # model in-process
    dataflow api --endpoint http://127.0.0.1:8080        # a model server

``GET /recommendations/{user_id}?k=10`` answers ``{"user_id", "items":
[{"item_id", "score"}], "strategy", "model_version", "fresh_items"}``.
``user_id`` is the user key the warehouse uses: the user id, or
``anon:<anonymous id>``. Also ``GET /live`` and ``GET /metrics``.

The API reaches the model through one small interface, ``Endpoint``: here
in-process (``LocalEndpoint``) or over HTTP to the model server
(``HttpEndpoint``), a Vertex AI endpoint (``VertexEndpoint``) or a SageMaker
endpoint (``SageMakerEndpoint``) or an Azure ML endpoint (``AzureMLEndpoint``). In a container,
``python -m pipeline_code.serving api`` serves it on ``PORT`` with the
endpoint from ``MODEL_ENDPOINT`` (see ``endpoint_from_env``).

Before asking, it reads the user's recent activity from the online store
the fast path writes (``USER_STATE``; ``FreshItems``), once per request and
within ``USER_STATE_TIMEOUT_MS``, and sends its items as ``recent_items``.
A slow or failing store costs only freshness: the API answers without fresh
items and counts it in ``dataflow_api_user_state_total{outcome}``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Protocol
from urllib.parse import parse_qs

import httpx
import msgspec
from prometheus_client import Counter

from pipeline_code import host
from pipeline_code.core.ports import UserState
from pipeline_code.core.userstate import recent_items
from pipeline_code.ml.model import Recommender
from pipeline_code.serving.model_server import DEFAULT_K, MAX_K, PredictRequest, RequestError, predict
from pipeline_code.web.http import (
    Receive,
    RoutedApp,
    Scope,
    Send,
    respond_error,
    respond_fallback,
    respond_json,
)
from pipeline_code.web.metrics import ServerMetrics

PREFIX = "/recommendations/"
DEFAULT_STATE_TIMEOUT_MS = 150
"""A store read's budget: DynamoDB, Firestore and Cosmos DB answer a point
read in single-digit to tens of milliseconds."""


class EndpointError(Exception):
    """The model endpoint failed or answered something unusable."""


class Endpoint(Protocol):
    """Where predictions come from. ``request`` is the model server's
    request body (``{"instances": [...], "parameters": {...}}``)."""

    async def predict(self, request: dict) -> dict: ...

    async def close(self) -> None: ...


class LocalEndpoint:
    """The model in this process: no network hop."""

    def __init__(self, model: Recommender) -> None:
        self.model = model

    async def predict(self, request: dict) -> dict:
        try:
            decoded = msgspec.convert(request, PredictRequest)
        except msgspec.ValidationError as exc:
            raise RequestError(f"request does not match the schema: {exc}") from None
        return predict(self.model, decoded)

    async def close(self) -> None:
        return None


class HttpEndpoint:
    """A model server over HTTP (ours locally; the same body any platform takes)."""

    def __init__(self, base_url: str, route: str = "/invocations", timeout: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + route
        self.client = httpx.AsyncClient(timeout=timeout)

    async def predict(self, request: dict) -> dict:
        try:
            response = await self.client.post(self.url, content=msgspec.json.encode(request))
        except httpx.HTTPError as exc:
            raise EndpointError(f"model endpoint {self.url} unreachable: {exc!r}") from exc
        if response.status_code == 400:
            raise RequestError(_error_message(response))
        if response.status_code != 200:
            raise EndpointError(
                f"model endpoint {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    async def close(self) -> None:
        await self.client.aclose()


class VertexEndpoint(HttpEndpoint):
    """A Vertex AI endpoint (``projects/P/locations/L/endpoints/E``): the
    same body as our model server, sent to ``:predict`` with the service
    account's token from the metadata server (``google-auth``)."""

    def __init__(self, resource: str, timeout: float = 5.0) -> None:
        match = re.fullmatch(r"projects/[^/]+/locations/([a-z0-9-]+)/endpoints/[0-9]+", resource)
        if not match:
            raise ValueError(f"MODEL_ENDPOINT vertex:{resource!r} is not projects/P/locations/L/endpoints/ID")
        super().__init__(
            f"https://{match.group(1)}-aiplatform.googleapis.com/v1/{resource}", ":predict", timeout
        )
        self.credentials = None

    async def _token(self) -> str:
        import google.auth
        from google.auth.transport.requests import Request

        if self.credentials is None:
            self.credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        if not self.credentials.valid:
            # A blocking refresh, about once an hour: keep it off the event loop.
            await asyncio.to_thread(self.credentials.refresh, Request())
        return self.credentials.token

    async def predict(self, request: dict) -> dict:
        self.client.headers["Authorization"] = f"Bearer {await self._token()}"
        return await super().predict(request)


class SageMakerEndpoint:
    """A SageMaker endpoint by name: the same body, sent with
    ``InvokeEndpoint`` (boto3, signed with the function's role)."""

    def __init__(self, name: str, region: str | None = None) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name):
            raise ValueError(f"MODEL_ENDPOINT sagemaker:{name!r} is not a SageMaker endpoint name")
        self.name = name
        self.region = region
        self.client = None

    def _invoke(self, body: bytes) -> dict:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        if self.client is None:
            self.client = boto3.client("sagemaker-runtime", region_name=self.region)
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.name, ContentType="application/json", Accept="application/json", Body=body
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationError":
                raise RequestError(str(exc)) from None
            raise EndpointError(f"SageMaker endpoint {self.name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise EndpointError(f"SageMaker endpoint {self.name} unreachable: {exc}") from exc
        return msgspec.json.decode(response["Body"].read())

    async def predict(self, request: dict) -> dict:
        # boto3 blocks: keep it off the event loop.
        return await asyncio.to_thread(self._invoke, msgspec.json.encode(request))

    async def close(self) -> None:
        return None


class AzureMLEndpoint(HttpEndpoint):
    """An Azure ML managed online endpoint: the same body, sent to its scoring
    URI with an Entra ID token (the Function App's managed identity, through
    ``azure-identity``) and the deployment named in ``azureml-model-deployment``."""

    SCOPE = "https://ml.azure.com/.default"

    def __init__(self, scoring_uri: str, deployment: str | None, timeout: float = 5.0) -> None:
        if not re.fullmatch(r"https://[a-z0-9-]+\.[a-z0-9]+\.inference\.ml\.azure\.com/score", scoring_uri):
            raise ValueError(
                f"MODEL_ENDPOINT azureml:{scoring_uri!r} is not https://ENDPOINT.REGION.inference.ml.azure.com/score"
            )
        super().__init__(scoring_uri, "", timeout)
        if deployment:
            self.client.headers["azureml-model-deployment"] = deployment
        self.credential = None

    async def predict(self, request: dict) -> dict:
        if self.credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self.credential = DefaultAzureCredential()
        token = await self.credential.get_token(self.SCOPE)
        self.client.headers["Authorization"] = f"Bearer {token.token}"
        return await super().predict(request)


def endpoint_from_env(value: str | None) -> Endpoint:
    """``MODEL_ENDPOINT`` (``pipeline_code.host.parse_endpoint``'s grammar) -> the
    endpoint: ``http(s)://host[:port]`` (a model server),
    ``vertex:projects/P/locations/L/endpoints/ID``, ``sagemaker:<endpoint name>``
    or ``azureml:<scoring uri>#<deployment>``."""
    parsed = host.parse_endpoint(value)
    if parsed.kind == "vertex":
        return VertexEndpoint(parsed.target)
    if parsed.kind == "sagemaker":
        return SageMakerEndpoint(parsed.target)
    if parsed.kind == "azureml":
        return AzureMLEndpoint(parsed.target, parsed.deployment)
    return HttpEndpoint(parsed.target)


class FreshItems:
    """A user's recent items from the online store: one read, bounded in time.

    The store's clients block, so the read runs in a thread; past
    ``timeout_s`` (or on any error) the answer is "no fresh items", counted
    by outcome (``hit``, ``miss``, ``timeout``, ``error``)."""

    def __init__(
        self, store: UserState, counter: Counter, timeout_s: float = DEFAULT_STATE_TIMEOUT_MS / 1000
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.outcomes = {name: counter.labels(name) for name in ("hit", "miss", "timeout", "error")}

    async def recent(self, user_key: str) -> list[str]:
        try:
            state = await asyncio.wait_for(asyncio.to_thread(self.store.get, user_key), self.timeout_s)
        except TimeoutError:
            self.outcomes["timeout"].inc()
            return []
        except Exception:  # any store failure costs freshness, never the answer
            self.outcomes["error"].inc()
            return []
        self.outcomes["hit" if state is not None else "miss"].inc()
        return recent_items(state)


def state_timeout_from_env(env: dict[str, str]) -> float:
    """``USER_STATE_TIMEOUT_MS`` -> seconds; ``ValueError`` names the variable and value."""
    raw = env.get(host.ENV_USER_STATE_TIMEOUT_MS, str(DEFAULT_STATE_TIMEOUT_MS))
    try:
        ms = int(raw)
        if not 1 <= ms <= 10_000:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{host.ENV_USER_STATE_TIMEOUT_MS} must be 1 to 10000 milliseconds, got {raw!r}"
        ) from None
    return ms / 1000


class RecommendationApi(RoutedApp):
    """The ASGI app; ``store`` is the fast path's user state (None: no fresh items)."""

    def __init__(
        self,
        endpoint: Endpoint,
        store: UserState | None = None,
        state_timeout_s: float = DEFAULT_STATE_TIMEOUT_MS / 1000,
    ) -> None:
        self.endpoint = endpoint
        self.metrics = ServerMetrics("dataflow_api")
        counter = Counter(
            "dataflow_api_user_state_total",
            "Reads of the online user state, by outcome (hit, miss, timeout, error).",
            ("outcome",),
            registry=self.metrics.registry,
        )
        self.fresh = FreshItems(store, counter, state_timeout_s) if store is not None else None

    async def shutdown(self) -> None:
        await self.endpoint.close()

    async def route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await respond_error(send, 405, "this API only answers GET")
            return "other", 405
        if path.startswith(PREFIX):
            return "recommendations", await self._recommend(path[len(PREFIX) :], scope, send)
        return await respond_fallback(send, path, self.metrics.exposition, f"; try {PREFIX}<user_id>?k=10")

    async def _recommend(self, user_id: str, scope: Scope, send: Send) -> int:
        if not user_id or "/" in user_id or len(user_id) > 256:
            await respond_error(
                send, 400, f"user_id must be 1 to 256 characters without '/', got {user_id[:300]!r}"
            )
            return 400
        try:
            query = parse_qs(scope["query_string"].decode("latin-1"), strict_parsing=False)
            raw_k = query.get("k", [str(DEFAULT_K)])[-1]
            k = int(raw_k)
            if not 1 <= k <= MAX_K:
                raise ValueError
        except ValueError:
            await respond_error(send, 400, f"k must be an integer from 1 to {MAX_K}, got {raw_k!r}")
            return 400
        fresh = await self.fresh.recent(user_id) if self.fresh is not None else []
        request = {"instances": [{"user_id": user_id, "recent_items": fresh, "k": k}]}
        try:
            answer = await self.endpoint.predict(request)
            prediction = answer["predictions"][0]
        except RequestError as exc:
            await respond_error(send, 400, str(exc))
            return 400
        except (EndpointError, KeyError, IndexError, TypeError, ValueError) as exc:
            self.metrics.errors.labels("recommendations", "upstream").inc()
            await respond_error(send, 502, f"the model endpoint failed: {exc}")
            return 502
        self.metrics.predictions.labels(prediction.get("strategy", "unknown")).inc()
        await respond_json(
            send,
            200,
            {
                "user_id": user_id,
                "items": prediction["items"],
                "strategy": prediction.get("strategy"),
                "model_version": prediction.get("model_version"),
                "fresh_items": len(fresh),
            },
        )
        return 200


def _error_message(response: httpx.Response) -> str:
    """The model server's 4xx message (``web.http.error_body``), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("message", response.text) if isinstance(body, dict) else response.text
