"""The model server app in-process: lifecycle states, validation, fuzzing,
and how the environment picks model, port and routes."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_code.ml.model import Recommender, find_model
from pipeline_code.serving.model_server import ModelServer, RequestError, decode_request
from pipeline_code.serving.server import (
    SAGEMAKER_MODEL_DIR,
    ServeError,
    model_dir_candidates,
    port_from_env,
    resolve_model_dir,
    routes_from_env,
)


@pytest.fixture(scope="module")
def model(trained) -> Recommender:
    return Recommender.load(find_model(trained[1]))


@pytest.fixture(scope="module")
def app(model) -> ModelServer:
    server = ModelServer(lambda: model)
    server.start_loading()
    assert server.wait_loaded(10)
    return server


def call(app, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            return await client.request(method, path, content=body, headers={"content-type": content_type})

    return asyncio.run(go())


def test_ping_is_503_until_the_model_is_loaded_while_live_is_200(model):
    release = threading.Event()

    def slow_load() -> Recommender:
        release.wait(10)
        return model

    app = ModelServer(slow_load)
    app.start_loading()
    assert call(app, "GET", "/live").status_code == 200
    assert call(app, "GET", "/ping").json() == {"status": "loading"}
    assert call(app, "GET", "/ping").status_code == 503
    assert call(app, "POST", "/invocations", b'{"instances": [{}]}').status_code == 503
    release.set()
    assert app.wait_loaded(10)
    assert call(app, "GET", "/ping").status_code == 200


def test_draining_fails_readiness_but_finishes_requests(model):
    app = ModelServer(lambda: model)
    app.start_loading()
    app.wait_loaded(10)
    app.draining = True
    assert call(app, "GET", "/ping").json() == {"status": "draining"}
    assert call(app, "POST", "/invocations", b'{"instances": [{}]}').status_code == 200


def test_a_failed_load_is_reported(tmp_path):
    failures = []
    app = ModelServer(lambda: Recommender.load(tmp_path), on_load_failure=failures.append)
    app.start_loading()
    assert not app.wait_loaded(10)
    assert call(app, "GET", "/ping").json() == {"status": "failed"}
    assert "not a model directory" in str(failures[0])


def test_instance_values_override_parameters(app):
    body = {
        "instances": [{"user_id": "user-000001"}, {"user_id": "user-000001", "k": 2, "include_seen": True}],
        "parameters": {"k": 4},
    }
    preds = call(app, "POST", "/invocations", json.dumps(body).encode()).json()["predictions"]
    assert [len(p["items"]) for p in preds] == [4, 2]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"instances": [{"k": "a"}]}', "Expected `int | null`, got `str` - at `$.instances[0].k`"),
        (b'{"instances": [{"kk": 1}]}', "unknown field `kk` - at `$.instances[0]`"),
        (b'{"instances": []}', "Expected `array` of length >= 1 - at `$.instances`"),
        (b'{"instances": [{"k": 500}]}', "Expected `int` <= 100 - at `$.instances[0].k`"),
        (b'{"parameters": {}}', "missing required field `instances`"),
        (
            b'{"instances": [{"exclude": [""]}]}',
            "Expected `str` of length >= 1 - at `$.instances[0].exclude[0]`",
        ),
        (b'{"instances": [', "not valid JSON"),
        (b'\xff"', "not valid"),
    ],
)
def test_schema_errors_name_the_field(body, fragment):
    with pytest.raises(RequestError) as err:
        decode_request(body)
    assert fragment in str(err.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
instance_like = st.fixed_dictionaries(
    {},
    optional={
        "user_id": json_values,
        "recent_items": st.lists(st.text(max_size=12), max_size=5) | json_values,
        "k": st.integers(-5, 200) | json_values,
        "exclude": st.lists(st.text(max_size=12), max_size=5) | json_values,
        "include_seen": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(instance_like, max_size=3).map(lambda xs: json.dumps({"instances": xs}).encode())
)
def test_fuzzed_bodies_never_get_a_5xx(app, body):
    response = call(app, "POST", "/invocations", body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["message"]


def test_model_dir_order_is_flag_model_dir_sagemaker_azure(tmp_path):
    env = {"MODEL_DIR": "/m", "AZUREML_MODEL_DIR": "/az"}
    assert model_dir_candidates(Path("/flag"), env) == [
        Path("/flag"),
        Path("/m"),
        SAGEMAKER_MODEL_DIR,
        Path("/az"),
    ]
    assert model_dir_candidates(None, {}) == [SAGEMAKER_MODEL_DIR]


def test_resolve_model_dir_takes_the_first_that_exists(trained, tmp_path):
    models = trained[1]
    env = {"MODEL_DIR": str(tmp_path / "missing"), "AZUREML_MODEL_DIR": str(models)}
    if not SAGEMAKER_MODEL_DIR.exists():
        assert resolve_model_dir(None, env) == find_model(models)
    with pytest.raises(ServeError, match="no model in"):
        resolve_model_dir(tmp_path, env)


def test_port_and_routes_from_the_environment():
    assert port_from_env(None, {}) == 8080
    assert port_from_env(None, {"AIP_HTTP_PORT": "7080", "PORT": "9000"}) == 7080
    assert port_from_env(None, {"PORT": "9000"}) == 9000
    assert port_from_env(5000, {"AIP_HTTP_PORT": "7080"}) == 5000
    with pytest.raises(ServeError, match="PORT must be a port number, got 'x'"):
        port_from_env(None, {"PORT": "x"})
    assert routes_from_env({"AIP_PREDICT_ROUTE": "/p", "AIP_HEALTH_ROUTE": "/h"}) == (
        ("/invocations", "/p"),
        ("/ping", "/h"),
    )
    with pytest.raises(ServeError, match="AIP_PREDICT_ROUTE must be a path starting with /, got 'p'"):
        routes_from_env({"AIP_PREDICT_ROUTE": "p"})


def test_a_bad_poll_interval_is_named_before_the_server_starts(tmp_path):
    from pipeline_code.serving.server import ServeError, serve_model
    from pipeline_code.serving.watch import poll_seconds

    assert poll_seconds({}) == 1.0 and poll_seconds({"MODEL_POLL_SECONDS": "0.1"}) == 0.1
    for value, says in (
        ("soon", "must be a number of seconds, got 'soon'"),
        ("0", "must be above 0, got '0'"),
    ):
        with pytest.raises(ServeError, match=f"MODEL_POLL_SECONDS {says}"):
            serve_model(tmp_path, port=0, env={"MODEL_POLL_SECONDS": value})
