"""The model server's container entrypoint.

    python -m pipeline_code.serving          # Vertex AI, Azure ML
    python -m pipeline_code.serving serve    # SageMaker runs the image with `serve`
    python -m pipeline_code.serving api      # the recommendation API (Cloud Run)

Everything else comes from the environment (see ``serving.server``).
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline_code.serving.server import ServeError, serve_model


def serve_api() -> int:
    """The recommendation API in front of ``MODEL_ENDPOINT``, on ``PORT``,
    reading fresh items from ``USER_STATE`` when it is set."""
    from pipeline_code import host
    from pipeline_code.serving.api import RecommendationApi, endpoint_from_env, state_timeout_from_env
    from pipeline_code.serving.server import port_from_env
    from pipeline_code.userstate import open_store
    from pipeline_code.web.server import make_server

    try:
        endpoint = endpoint_from_env(os.environ.get(host.ENV_MODEL_ENDPOINT))
        port = port_from_env(None, os.environ)
        timeout = state_timeout_from_env(dict(os.environ))
        state = os.environ.get(host.ENV_USER_STATE)
        store = open_store(state, timeout=timeout) if state else None
    except (ValueError, ServeError) as exc:
        print(f"recommendation api: {exc}", file=sys.stderr)
        return 1
    make_server(RecommendationApi(endpoint, store, timeout), "0.0.0.0", port, log_level="info").run()
    return 0


def main(argv: list[str]) -> int:
    if argv not in ([], ["serve"], ["api"]):
        print(f"usage: python -m pipeline_code.serving [serve|api]; got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("DATAFLOW_LOG_LEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    if argv == ["api"]:
        return serve_api()
    try:
        serve_model(log_level="info")
    except ServeError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
