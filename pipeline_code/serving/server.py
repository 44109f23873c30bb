"""Run the servers under uvicorn, with the platforms' environment contract.

Where the model comes from, first match wins: ``--model-dir``, then
``$MODEL_DIR``, ``/opt/ml/model`` (SageMaker unpacks model.tar.gz there),
``$AZUREML_MODEL_DIR`` (Azure ML mounts the registered model there). The
port is ``$AIP_HTTP_PORT`` (Vertex AI), else ``$PORT``, else 8080
(SageMaker's and the default Azure ML custom-container port). When the
model comes from a directory of versions with ``LATEST``, a promotion or
rollback there is served within ``$MODEL_POLL_SECONDS`` (1), no restart.

SIGTERM drains: readiness turns 503 so load balancers stop routing, the
listening socket closes, requests in flight finish (up to 30 s), then the
process exits 0.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from pipeline_code.ml.model import LATEST_FILE, Recommender, find_model
from pipeline_code.serving.model_server import ModelServer
from pipeline_code.serving.watch import poll_seconds
from pipeline_code.web.server import make_server

log = logging.getLogger(__name__)

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


class ServeError(Exception):
    """The server cannot start: no model, a bad port."""


def model_dir_candidates(explicit: Path | None, env: Mapping[str, str]) -> list[Path]:
    """Where to look for the model, in the documented order."""
    found: list[Path] = []
    if explicit is not None:
        found.append(explicit)
    if env.get("MODEL_DIR"):
        found.append(Path(env["MODEL_DIR"]))
    found.append(SAGEMAKER_MODEL_DIR)
    if env.get("AZUREML_MODEL_DIR"):
        found.append(Path(env["AZUREML_MODEL_DIR"]))
    return found


def resolve_model_dir(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """The first candidate that exists, narrowed to one model version."""
    candidates = model_dir_candidates(explicit, env)
    for path in candidates:
        if path.exists():
            try:
                return find_model(path)
            except FileNotFoundError as exc:
                raise ServeError(str(exc)) from exc
    if env.get("AIP_STORAGE_URI", "").startswith("gs://"):
        return find_model(
            download_from_gcs(
                env["AIP_STORAGE_URI"], Path(env.get("MODEL_CACHE_DIR") or tempfile.mkdtemp(prefix="model-"))
            )
        )
    raise ServeError(
        "no model directory: pass --model-dir or set MODEL_DIR (looked in "
        + ", ".join(str(p) for p in candidates)
        + ")"
    )


def download_from_gcs(uri: str, target: Path) -> Path:
    """Vertex AI copies the model's artifact folder to ``AIP_STORAGE_URI``
    and passes only that URI: fetch its files (google-cloud-storage, in the
    image) into ``target``. Any failure is a ``ServeError`` naming the URI."""
    try:
        from google.cloud import storage
    except ImportError as exc:
        raise ServeError(f"AIP_STORAGE_URI {uri!r} needs google-cloud-storage in the image") from exc
    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    try:
        blobs = [
            b for b in storage.Client().list_blobs(bucket_name, prefix=prefix) if not b.name.endswith("/")
        ]
        for blob in blobs:
            local = target / blob.name[len(prefix) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(local))
    except Exception as exc:  # auth, network, permissions: all mean "no model"
        raise ServeError(f"cannot download the model from AIP_STORAGE_URI {uri!r}: {exc}") from exc
    if not blobs:
        raise ServeError(f"AIP_STORAGE_URI {uri!r} holds no files")
    return target


def port_from_env(explicit: int | None, env: Mapping[str, str]) -> int:
    for name, value in (
        ("--port", explicit),
        ("AIP_HTTP_PORT", env.get("AIP_HTTP_PORT")),
        ("PORT", env.get("PORT")),
    ):
        if value is None or value == "":
            continue
        try:
            port = int(value)
        except ValueError:
            raise ServeError(f"{name} must be a port number, got {value!r}") from None
        if not 0 <= port <= 65535:
            raise ServeError(f"{name} must be a port number in 0..65535, got {port}")
        return port
    return 8080


def routes_from_env(env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Predict and health routes: ours plus Vertex AI's when it sets them."""
    predict, health = ["/invocations"], ["/ping"]
    for name, routes in (("AIP_PREDICT_ROUTE", predict), ("AIP_HEALTH_ROUTE", health)):
        route = env.get(name)
        if route:
            if not route.startswith("/"):
                raise ServeError(f"{name} must be a path starting with /, got {route!r}")
            routes.append(route)
    return tuple(predict), tuple(health)


def serve_model(
    model_dir: Path | None = None,
    host: str = "0.0.0.0",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    log_level: str = "warning",
) -> None:
    """Run the model server until a signal stops it; ``ServeError`` if the
    model cannot be found or loaded."""
    from threadpoolctl import threadpool_limits

    # One request's linear algebra is tiny: BLAS threads only contend with
    # the event loop (and with each other when the container has one core).
    threadpool_limits(1)
    env = os.environ if env is None else env
    bound_port = port_from_env(port, env)
    predict_routes, health_routes = routes_from_env(env)
    servers: list[uvicorn.Server] = []
    failed: list[Exception] = []

    def load() -> Recommender:
        return Recommender.load(resolve_model_dir(model_dir, env))

    # Follow the registry the model comes from (a directory with LATEST):
    # promotions and rollbacks swap in without a restart.
    existing = [p for p in model_dir_candidates(model_dir, env) if p.exists()]
    follow = existing[0] if existing and (existing[0] / LATEST_FILE).is_file() else None
    try:
        interval = poll_seconds(env)
    except ValueError as exc:
        raise ServeError(str(exc)) from None

    def on_load_failure(exc: Exception) -> None:
        # A container that cannot load its model should stop, so the
        # platform reports the failure instead of waiting on /ping forever.
        failed.append(exc)
        servers[0].should_exit = True

    app = ModelServer(
        load,
        predict_routes,
        health_routes,
        on_load_failure,
        follow,
        interval,
    )
    server = make_server(app, host, bound_port, lambda: setattr(app, "draining", True), log_level)
    servers.append(server)
    log.warning("model server listening on %s:%d", host, bound_port)
    server.run()
    if failed:
        raise ServeError(f"model failed to load: {failed[0]}")
