"""The recommendation API: routes, validation, fresh items from the online
user state (and answers without them when the store is slow or down), and
the same answers in-process and over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import pytest

from pipeline_code.fastpath.local import LogFastPath
from pipeline_code.ml.model import Recommender, find_model
from pipeline_code.serving import aws_lambda
from pipeline_code.serving.api import (
    AzureMLEndpoint,
    HttpEndpoint,
    LocalEndpoint,
    RecommendationApi,
    SageMakerEndpoint,
    VertexEndpoint,
    endpoint_from_env,
)
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.userstate.local import LocalUserState
from tests.conftest import event
from tests.pipeline_code.serving.servers import free_port, server_process


@pytest.fixture(scope="module")
def model(trained) -> Recommender:
    return Recommender.load(find_model(trained[1]))


def get(app, path: str) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_recommendations_for_a_known_user(model):
    api = RecommendationApi(LocalEndpoint(model))
    body = get(api, "/recommendations/user-000001?k=5").json()
    assert body["user_id"] == "user-000001" and len(body["items"]) == 5
    assert body["strategy"] == "personalised" and body["model_version"] == model.version
    assert body["fresh_items"] == 0
    assert len(get(api, "/recommendations/user-000001").json()["items"]) == 10


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/recommendations/u?k=0", 400, "k must be an integer from 1 to 100, got '0'"),
        ("/recommendations/u?k=ten", 400, "got 'ten'"),
        ("/recommendations/", 400, "user_id must be 1 to 256 characters"),
        ("/recommendations/a/b", 400, "without '/'"),
        ("/elsewhere", 404, "no route /elsewhere"),
    ],
)
def test_bad_requests_say_what_is_wrong(model, path, status, fragment):
    response = get(RecommendationApi(LocalEndpoint(model)), path)
    assert response.status_code == status
    assert fragment in response.json()["message"]


def test_an_event_through_the_fast_path_changes_recommendations_without_retraining(model, tmp_path):
    log = EventLog(tmp_path / "log")
    store = LocalUserState(tmp_path / "state.sqlite")
    fast = LogFastPath(log, store)
    api = RecommendationApi(LocalEndpoint(model), store)

    before = get(api, "/recommendations/shopper-new?k=10").json()
    assert before["strategy"] == "popularity" and before["fresh_items"] == 0
    item = str(model.item_ids[5])
    log.append(
        [json.dumps(event(event_id="fresh-1", user_id="shopper-new", items=[{"item_id": item}])).encode()]
    )
    assert fast.step() == 1
    after = get(api, "/recommendations/shopper-new?k=10").json()
    assert after["strategy"] == "personalised" and after["fresh_items"] == 1
    assert item not in [i["item_id"] for i in after["items"]]
    assert after["items"] != before["items"]
    assert 'dataflow_api_user_state_total{outcome="hit"} 1.0' in get(api, "/metrics").text


def test_bots_and_removals_are_not_fresh_activity(tmp_path):
    log = EventLog(tmp_path / "log")
    store = LocalUserState(tmp_path / "state.sqlite")
    log.append(
        [
            json.dumps(event(event_id="b", context={"user_agent": "Googlebot/2.1"})).encode(),
            json.dumps(event(event_id="v", items=[{"item_id": "sku-9"}])).encode(),
            json.dumps(
                event(event_id="w", items=[{"item_id": "sku-1"}], event_timestamp="2026-01-01T10:01:00Z")
            ).encode(),
            json.dumps(
                event(event_id="x", items=[{"item_id": "sku-9"}], event_timestamp="2026-01-01T10:02:00Z")
            ).encode(),
            json.dumps(
                event(
                    event_id="r",
                    event_name="remove_from_cart",
                    items=[{"item_id": "sku-1"}],
                    event_timestamp="2026-01-01T10:03:00Z",
                )
            ).encode(),
            b"not json",
        ]
    )
    fast = LogFastPath(log, store)
    fast.step()
    assert (fast.totals.applied, fast.totals.skipped, fast.totals.rejected) == (4, 1, 1)
    from pipeline_code.core.userstate import recent_items

    # sku-1 was viewed then removed from the cart (net weight 0): not fresh.
    assert recent_items(store.get("u-1")) == ["sku-9"]


class SlowStore:
    """A store that takes ``delay`` seconds to answer, or raises."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay, self.error = delay, error
        self.released = threading.Event()

    def get(self, user_key):
        self.released.wait(self.delay)
        if self.error:
            raise self.error
        return None


@pytest.mark.parametrize(
    ("store", "outcome"),
    [(SlowStore(delay=2.0), "timeout"), (SlowStore(error=ConnectionError("down")), "error")],
)
def test_a_slow_or_failing_store_costs_freshness_not_the_answer(model, store, outcome):
    api = RecommendationApi(LocalEndpoint(model), store, state_timeout_s=0.05)

    async def timed():
        # Timed inside the loop: asyncio.run also waits for the stuck read's thread.
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            started = time.perf_counter()
            response = await client.get("/recommendations/user-000001?k=5")
            elapsed = time.perf_counter() - started
        store.released.set()
        return response, elapsed

    response, elapsed = asyncio.run(timed())
    assert response.status_code == 200 and response.json()["fresh_items"] == 0
    assert len(response.json()["items"]) == 5
    assert elapsed < 1.0
    assert f'dataflow_api_user_state_total{{outcome="{outcome}"}} 1.0' in get(api, "/metrics").text


def test_the_api_over_a_real_model_server_matches_in_process(trained, model):
    port = free_port()
    with server_process({"MODEL_DIR": str(trained[1]), "AIP_HTTP_PORT": str(port)}, (), port) as (_, base):
        remote = get(RecommendationApi(HttpEndpoint(base)), "/recommendations/user-000003?k=7").json()
    local = get(RecommendationApi(LocalEndpoint(model)), "/recommendations/user-000003?k=7").json()
    assert remote == local


def test_an_unreachable_endpoint_is_a_502_with_the_reason():
    api = RecommendationApi(HttpEndpoint(f"http://127.0.0.1:{free_port()}"))
    response = get(api, "/recommendations/u")
    assert response.status_code == 502
    assert "unreachable" in response.json()["message"]
    assert (
        'dataflow_api_errors_total{kind="upstream",route="recommendations"} 1.0' in get(api, "/metrics").text
    )


def test_the_api_container_mode_serves_in_front_of_a_model_server(trained, model):
    """``python -m pipeline_code.serving api`` as Cloud Run starts it: PORT and MODEL_ENDPOINT."""
    model_port, api_port = free_port(), free_port()
    model_env = {"MODEL_DIR": str(trained[1]), "AIP_HTTP_PORT": str(model_port)}
    with server_process(model_env, (), model_port) as (_, model_base):
        api_env = {"MODEL_ENDPOINT": model_base, "PORT": str(api_port)}
        with server_process(api_env, ("api",), api_port, ready="/live") as (_, api_base):
            remote = httpx.get(api_base + "/recommendations/user-000003?k=7", timeout=5).json()
    local = get(RecommendationApi(LocalEndpoint(model)), "/recommendations/user-000003?k=7").json()
    assert remote == local


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "MODEL_ENDPOINT is not set"),
        ("ftp://x", "MODEL_ENDPOINT 'ftp://x' must start with"),
        ("vertex:endpoints/1", "vertex:'endpoints/1' is not projects/P/locations/L/endpoints/ID"),
    ],
)
def test_bad_model_endpoints_name_the_value(value, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        endpoint_from_env(value)


def test_vertex_endpoints_post_to_the_regional_predict_url():
    endpoint = endpoint_from_env("vertex:projects/shop/locations/europe-west1/endpoints/1234567890")
    assert isinstance(endpoint, VertexEndpoint)
    assert endpoint.url == (
        "https://europe-west1-aiplatform.googleapis.com/v1/projects/shop/locations/europe-west1/endpoints/1234567890:predict"
    )


def function_url_event(path: str, query: str = "", method: str = "GET") -> dict:
    """A Lambda function-URL event (payload format 2.0) as AWS sends it."""
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "application/json", "host": "abc.lambda-url.eu-west-1.on.aws"},
        "requestContext": {
            "domainName": "abc.lambda-url.eu-west-1.on.aws",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
        },
        "isBase64Encoded": False,
    }


def test_the_lambda_bridge_answers_as_the_container_does(model):
    api = RecommendationApi(LocalEndpoint(model))
    lam = asyncio.run(aws_lambda.invoke(api, function_url_event("/recommendations/user-000001", "k=5")))
    assert lam["statusCode"] == 200 and lam["headers"]["content-type"].startswith("application/json")
    assert json.loads(lam["body"]) == get(api, "/recommendations/user-000001?k=5").json()
    bad = asyncio.run(aws_lambda.invoke(api, function_url_event("/recommendations/u", "k=0")))
    assert bad["statusCode"] == 400 and "k must be an integer" in bad["body"]
    post = asyncio.run(aws_lambda.invoke(api, function_url_event("/recommendations/u", method="POST")))
    assert post["statusCode"] == 405


def test_sagemaker_endpoints_are_named_and_checked():
    endpoint = endpoint_from_env("sagemaker:dataflow-dev-model")
    assert isinstance(endpoint, SageMakerEndpoint) and endpoint.name == "dataflow-dev-model"
    with pytest.raises(ValueError, match=re.escape("sagemaker:'bad_name!' is not a SageMaker endpoint name")):
        endpoint_from_env("sagemaker:bad_name!")


def test_the_azure_function_serves_the_api_in_front_of_a_model_server(trained, model):
    """The Functions app's own function (the Python worker's ASGI path) over
    real HTTP to a model server answers as the in-process API does."""
    import azure.functions as func

    from pipeline_code.serving.azure_function import build

    port = free_port()
    with server_process({"MODEL_DIR": str(trained[1]), "AIP_HTTP_PORT": str(port)}, (), port) as (_, base):
        (function,) = build(base).get_functions()
        request = func.HttpRequest(
            "GET",
            "https://api.example/recommendations/user-000003?k=7",
            headers={},
            params={"k": "7"},
            body=b"",
        )
        context = type(
            "Context", (), {"invocation_id": "1", "function_name": "api", "function_directory": "/"}
        )()
        answer = function.get_user_function()(request, context)
        answer = asyncio.run(answer) if asyncio.iscoroutine(answer) else answer
    assert answer.status_code == 200
    local = get(RecommendationApi(LocalEndpoint(model)), "/recommendations/user-000003?k=7").json()
    assert json.loads(answer.get_body()) == local


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (
            "azureml:https://x.westeurope.inference.ml.azure.com/predict",
            "is not https://ENDPOINT.REGION.inference",
        ),
        (
            "azureml:http://x.westeurope.inference.ml.azure.com/score",
            "is not https://ENDPOINT.REGION.inference",
        ),
    ],
)
def test_bad_azureml_endpoints_name_the_value(value, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        endpoint_from_env(value)


def test_azureml_endpoints_target_the_named_deployment():
    endpoint = endpoint_from_env(
        "azureml:https://dataflow-ml-endpoint.westeurope.inference.ml.azure.com/score#primary"
    )
    assert isinstance(endpoint, AzureMLEndpoint)
    assert endpoint.url == "https://dataflow-ml-endpoint.westeurope.inference.ml.azure.com/score"
    assert endpoint.client.headers["azureml-model-deployment"] == "primary"
    # What the chain deploys: no deployment named, the endpoint's traffic decides.
    from pipeline_code.host import azureml_endpoint

    uri = "https://dataflow-ml-endpoint.westeurope.inference.ml.azure.com/score"
    follows = endpoint_from_env(azureml_endpoint(uri))
    assert isinstance(follows, AzureMLEndpoint) and "azureml-model-deployment" not in follows.client.headers
