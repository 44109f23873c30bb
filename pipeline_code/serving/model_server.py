"""The model server: one process that meets the custom-container contracts
of Vertex AI, SageMaker and Azure ML at once.

    dataflow serve --model-dir .dataflow/models
    python -m pipeline_code.serving serve          # the container entrypoint

Routes, and which platform calls them:

- ``GET /live``: Azure ML liveness; 200 as soon as the process is up;
- ``GET /ping`` and ``$AIP_HEALTH_ROUTE``: readiness for SageMaker, Vertex AI
  and Azure ML; 200 once the model is loaded, 503 before and while draining;
- ``POST /invocations`` and ``$AIP_PREDICT_ROUTE``: scoring, all three;
- ``GET /metrics``: Prometheus text exposition.

Given a registry directory to ``follow`` (one with ``LATEST``), the server
swaps in each newly promoted version without a restart
(``pipeline_code.serving.watch``); readiness stays 200 through the swap.

Request: ``{"instances": [{"user_id": "u1", "recent_items": ["sku-1"], "k": 10,
"exclude": ["sku-2"]}], "parameters": {"k": 10, "include_seen": false}}``;
answer: ``{"predictions": [{"items": [{"item_id": ..., "score": ...}],
"strategy": ..., "model_version": ...}], "model_version": ...}``.

Bad requests get a 4xx with a message and never a 5xx: 415 for a body
that is not declared JSON, 413 over 1.5 MB (Vertex's request limit), 400
for malformed JSON or a schema error (the message names the field), 404 and
405 for unknown routes and methods. Scoring answers 503 only while the model
is still loading; while draining it keeps answering (readiness is what turns
503), so requests already routed here finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import msgspec

from pipeline_code.ml.model import Recommender
from pipeline_code.serving.watch import ModelWatcher
from pipeline_code.web.http import (
    BodyTooLarge,
    ClientGone,
    Receive,
    RoutedApp,
    Scope,
    Send,
    discard_body,
    error_body,
    is_json,
    read_body,
    respond_error,
    respond_fallback,
    respond_json,
)
from pipeline_code.web.metrics import ServerMetrics

log = logging.getLogger(__name__)

INLINE_INSTANCES = 16
"""Requests with more instances are scored off the event loop (health never waits on them)."""
MAX_BODY_BYTES = 1_572_864  # 1.5 MiB, Vertex AI's online prediction limit
MAX_INSTANCES = 1000
MAX_K = 100
DEFAULT_K = 10

ItemId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Instance(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    recent_items: Annotated[list[ItemId], msgspec.Meta(max_length=200)] = []
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] | None = None
    exclude: Annotated[list[ItemId], msgspec.Meta(max_length=1000)] = []
    include_seen: bool | None = None


class Parameters(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] = DEFAULT_K
    include_seen: bool = False


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    instances: Annotated[list[Instance], msgspec.Meta(min_length=1, max_length=MAX_INSTANCES)]
    parameters: Parameters = Parameters()


_decoder = msgspec.json.Decoder(PredictRequest)


class RequestError(ValueError):
    """A request the client must fix; the message says what."""


def decode_request(body: bytes) -> PredictRequest:
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(f"request does not match the schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(f"request is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RequestError(f"request is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise RequestError("request JSON is nested too deeply") from None


def predict(model: Recommender, request: PredictRequest) -> dict:
    """Answer a decoded request; pure, so the API can call it in-process."""
    params = request.parameters
    predictions = []
    for inst in request.instances:
        rec = model.recommend(
            inst.user_id,
            inst.recent_items,
            k=inst.k or params.k,
            exclude=inst.exclude,
            include_seen=params.include_seen if inst.include_seen is None else inst.include_seen,
        )
        predictions.append(
            {
                "items": [{"item_id": i, "score": s} for i, s in zip(rec.item_ids, rec.scores, strict=True)],
                "strategy": rec.strategy,
                "unknown_recent_items": rec.unknown_recent,
                "model_version": model.version,
            }
        )
    return {"predictions": predictions, "model_version": model.version}


class ModelServer(RoutedApp):
    """The ASGI app. ``load`` is called in a background thread at startup so
    that ``/live`` answers while a large model is still loading."""

    def __init__(
        self,
        load: Callable[[], Recommender],
        predict_routes: tuple[str, ...] = ("/invocations",),
        health_routes: tuple[str, ...] = ("/ping",),
        on_load_failure: Callable[[Exception], None] | None = None,
        follow: Path | None = None,
        follow_interval_s: float = 1.0,
    ) -> None:
        self._load = load
        self.follow = follow
        self.follow_interval_s = follow_interval_s
        self.watcher: ModelWatcher | None = None
        self.predict_routes = frozenset(predict_routes)
        self.health_routes = frozenset(health_routes)
        self._on_load_failure = on_load_failure
        self.model: Recommender | None = None
        self.draining = False
        self.load_error: Exception | None = None
        self.metrics = ServerMetrics("dataflow_model")
        self._loader: threading.Thread | None = None
        self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")

    # -- lifecycle ---------------------------------------------------------------
    def start_loading(self) -> None:
        if self._loader is None:
            self._loader = threading.Thread(target=self._load_model, name="model-loader", daemon=True)
            self._loader.start()

    def _load_model(self) -> None:
        started = time.perf_counter()
        try:
            model = self._load()
        except Exception as exc:  # any failure to load is reported, then the process stops
            self.load_error = exc
            log.error("model failed to load: %s", exc)
            if self._on_load_failure is not None:
                self._on_load_failure(exc)
            return
        self.swap(model)
        log.info("model %s loaded in %.2fs", model.version, time.perf_counter() - started)
        if self.follow is not None:
            self.watcher = ModelWatcher(self.follow, self.swap, model.version, self.follow_interval_s).start()

    def swap(self, model: Recommender) -> None:
        """Serve ``model`` from the next request on; requests in flight keep theirs."""
        self.model = model
        self.metrics.set_model(model.version)

    def wait_loaded(self, timeout: float) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self.model is not None

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.draining

    # -- ASGI --------------------------------------------------------------------
    def startup(self) -> None:
        self.start_loading()

    async def route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        path, method = scope["path"], scope["method"]
        if path in self.predict_routes:
            if method != "POST":
                return "predict", await _method_not_allowed(send, "POST")
            return "predict", await self._predict(scope, receive, send)
        if path in self.health_routes:
            if method not in ("GET", "HEAD"):
                return "health", await _method_not_allowed(send, "GET")
            if self.ready:
                await respond_json(send, 200, {"status": "ready", "model_version": self.model.version})
                return "health", 200
            state = "draining" if self.draining else "failed" if self.load_error else "loading"
            await respond_json(send, 503, {"status": state})
            return "health", 503
        return await respond_fallback(send, path, self.metrics.exposition)

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> int:
        if not is_json(scope):
            await discard_body(receive)
            await respond_error(send, 415, "send the request as application/json")
            return 415
        try:
            body = await read_body(scope, receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            await respond_error(send, 413, f"request body is over the {MAX_BODY_BYTES}-byte limit")
            return 413
        except ClientGone:
            return 499  # nobody to answer (nginx's code for it, in the metrics only)
        model = self.model
        if model is None:
            await respond_error(send, 503, "the model is still loading; retry after /ping answers 200")
            return 503
        try:
            request = decode_request(body)
            if len(request.instances) <= INLINE_INSTANCES:
                answer = predict(model, request)  # a few hundred microseconds: inline is cheapest
            else:
                # A big request scores for seconds: off the event loop, one at a time,
                # so /ping and /live keep answering (SageMaker gives /ping 2 s).
                answer = await asyncio.get_running_loop().run_in_executor(
                    self._scorer, predict, model, request
                )
        except RequestError as exc:
            await respond_error(send, 400, str(exc))
            return 400
        for p in answer["predictions"]:
            self.metrics.predictions.labels(p["strategy"]).inc()
        await respond_json(send, 200, answer)
        return 200


async def _method_not_allowed(send: Send, allowed: str) -> int:
    await respond_json(
        send,
        405,
        error_body(405, f"use {allowed} on this route"),
        headers=[(b"allow", allowed.encode())],
    )
    return 405
