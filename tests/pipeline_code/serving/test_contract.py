"""The model server as each ML platform runs it: a real process, the
platform's exact environment variables, routes and payload shapes."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline_code.serving.servers import free_port, server_process

JSON = {"content-type": "application/json"}


def _instances(response: httpx.Response, n: int) -> list[dict]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == n
    return body["predictions"]


def test_vertex_ai_routes_port_and_payload(trained):
    _, models, result = trained
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/v1/endpoints/123/deployedModels/456",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/123/deployedModels/456:predict",
        "MODEL_DIR": str(models),
    }
    # Vertex starts the container with no arguments.
    with server_process(env, (), port, ready=env["AIP_HEALTH_ROUTE"]) as (_, base):
        payload = {
            "instances": [{"user_id": "user-000001"}, {"recent_items": ["sku-00003"], "k": 3}],
            "parameters": {"k": 5},
        }
        preds = _instances(httpx.post(base + env["AIP_PREDICT_ROUTE"], json=payload), 2)
        assert [len(p["items"]) for p in preds] == [5, 3]
        assert {p["model_version"] for p in preds} == {result.version}
        # The generic routes stay available alongside Vertex's.
        assert httpx.get(base + "/ping").status_code == 200


def test_sagemaker_serve_argument_port_8080_and_unpacked_archive(trained, tmp_path):
    _, _, result = trained
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(result.archive) as tar:
        tar.extractall(unpacked, filter="data")
    with server_process({"MODEL_DIR": str(unpacked)}, ("serve",), 8080) as (_, base):
        # SageMaker's InvokeEndpoint may send no Content-Type at all.
        body = json.dumps({"instances": [{"user_id": "user-000002", "k": 10}]}).encode()
        preds = _instances(httpx.post(base + "/invocations", content=body), 1)
        assert len(preds[0]["items"]) == 10
        assert httpx.get(base + "/ping").json() == {"status": "ready", "model_version": result.version}


def test_azure_ml_mounted_folder_liveness_readiness_scoring(trained, tmp_path):
    _, _, result = trained
    mount = tmp_path / "azureml-models" / "recommender" / "1"
    shutil.copytree(result.directory, mount / "recommender")
    port = free_port()
    env = {"AZUREML_MODEL_DIR": str(mount), "PORT": str(port)}
    with server_process(env, (), port, ready="/ping") as (_, base):
        assert httpx.get(base + "/live").status_code == 200
        preds = _instances(httpx.post(base + "/invocations", json={"instances": [{"user_id": "x"}]}), 1)
        assert preds[0]["strategy"] == "popularity"


def test_hostile_bodies_over_real_http_get_4xx_and_the_server_survives(trained):
    _, models, _ = trained
    port = free_port()
    rng = random.Random(11)
    good = json.dumps({"instances": [{"user_id": "user-000001", "k": 10}]}).encode()
    bodies = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"instances": []}',
        b'{"instances": [{"k": 0}]}',
        b'{"instances": [{"k": 101}]}',
        b'{"instances": [{"user_id": ""}]}',
        b'{"instances": [{"recent_items": "sku-1"}]}',
        b'{"instances": [{"user_id": 12}]}',
        b'{"instances": [{}], "parameters": {"k": "ten"}}',
        b'{"instances": [' + b"{}," * 1000 + b"{}]}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"instances": [{"user_id": "\xff\xfe"}]}',
        b'{"instances": [{"k": 1e400}]}',
        *(good[: rng.randrange(len(good))] for _ in range(20)),
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(40)),
    ]
    env = {"MODEL_DIR": str(models), "AIP_HTTP_PORT": str(port)}
    with server_process(env, (), port) as (proc, base), httpx.Client() as client:
        for body in bodies:
            r = client.post(base + "/invocations", content=body, headers=JSON)
            assert r.status_code == 400, (body[:80], r.status_code, r.text)
            assert r.json()["message"]
        big = client.post(base + "/invocations", content=b" " * (1_572_864 + 1), headers=JSON)
        assert big.status_code == 413
        assert (
            client.post(base + "/invocations", content=good, headers={"content-type": "text/csv"}).status_code
            == 415
        )
        assert client.get(base + "/invocations").status_code == 405
        assert client.get(base + "/nope").status_code == 404
        assert client.post(base + "/invocations", content=good, headers=JSON).status_code == 200
        assert proc.poll() is None
        families = {f.name: f for f in text_string_to_metric_families(client.get(base + "/metrics").text)}
    codes = {
        s.labels["code"]: s.value
        for s in families["dataflow_model_requests"].samples
        if s.name.endswith("_total") and s.labels["route"] == "predict"
    }
    assert codes == {"400": len(bodies), "413": 1, "415": 1, "405": 1, "200": 1}
    assert "500" not in codes
    latency = families["dataflow_model_request_duration_seconds"]
    assert any(s.name.endswith("_count") and s.value >= len(bodies) for s in latency.samples)
    info = next(s for s in families["dataflow_served_model_info"].samples)
    assert info.labels["version"] and info.value == 1


def test_sigterm_drains_and_exits_zero(trained):
    _, models, _ = trained
    port = free_port()
    with server_process({"MODEL_DIR": str(models), "AIP_HTTP_PORT": str(port)}, (), port) as (proc, base):
        client = httpx.Client()
        assert client.get(base + "/ping").status_code == 200  # a kept-alive connection
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
        assert "Shutting down" in proc.stderr.read()
        client.close()


def test_a_missing_model_stops_the_container_with_a_message(tmp_path):
    env = {"MODEL_DIR": str(tmp_path), "AIP_HTTP_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.serving"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"no model in {tmp_path}" in done.stderr


def test_unknown_arguments_are_refused():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.serving", "train"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and "usage: python -m pipeline_code.serving [serve|api]" in done.stderr


@pytest.mark.parametrize("value", ["eighty", "70000"])
def test_a_bad_port_is_named(value):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.serving"],
        env={"AIP_HTTP_PORT": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        done.returncode == 1 and "AIP_HTTP_PORT must be a port number" in done.stderr and value in done.stderr
    )


def test_the_entrypoint_needs_only_the_images_requirements():
    """The image installs pipeline_code/serving/requirements.txt only: every
    third-party module the entrypoint imports must come from it (or be
    installed with it), and training, Beam and DuckDB must stay out."""
    probe = (
        "import sys, pipeline_code.serving.__main__, pipeline_code.serving.server; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", probe], text=True).split())
    # cython_runtime is no package: CPython creates it when a Cython extension
    # (httptools' parser, which the guarded server protocol subclasses) loads.
    loaded = {m for m in loaded if not m.startswith(("_", "pipeline_code")) and m != "cython_runtime"}
    requirements = Path("pipeline_code/serving/requirements.txt").read_text().splitlines()
    named = {r.split(">=")[0].replace("-", "_") for r in requirements if r and not r.startswith("#")}
    named |= {"google"}  # google-auth's package
    # uvicorn's own dependencies, and what msgspec uses only when it is present.
    installed_with_them = {"click", "h11", "typing_extensions"}
    assert loaded <= named | installed_with_them, loaded - named - installed_with_them
    assert {"numpy", "msgspec", "uvicorn", "prometheus_client"} <= loaded
