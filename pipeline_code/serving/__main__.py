"""The model server's container entrypoint.

    python -m pipeline_code.serving          # Vertex AI, Azure ML
    python -m pipeline_code.serving serve    # SageMaker runs the image with `serve`

Everything else comes from the environment (see ``serving.server``).
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline_code.serving.server import ServeError, serve_model


def main(argv: list[str]) -> int:
    if argv not in ([], ["serve"]):
        print(f"usage: python -m pipeline_code.serving [serve]; got {' '.join(argv)!r}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("DATAFLOW_LOG_LEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    try:
        serve_model(log_level="info")
    except ServeError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
