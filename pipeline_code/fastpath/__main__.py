"""The fast path's container entrypoint on Cloud Run (the serving image).

    USER_STATE=firestore:projects/P/databases/(default)/user_state PORT=8080 python -m pipeline_code.fastpath

Serves ``pubsub_push.PushApp`` on ``PORT`` over the store in ``USER_STATE``
(TTL from ``USER_STATE_TTL_DAYS``).
"""

from __future__ import annotations

import logging
import os
import sys

from pipeline_code import host


def main() -> int:
    from pipeline_code.fastpath.pubsub_push import PushApp
    from pipeline_code.userstate import store_from_env
    from pipeline_code.web.server import make_server

    logging.basicConfig(level=os.environ.get(host.ENV_LOG_LEVEL, "INFO"), format="%(levelname)s %(message)s")
    try:
        store = store_from_env(os.environ)
        port = int(os.environ.get("PORT", "8080"))
    except ValueError as exc:
        print(f"fast path: {exc}", file=sys.stderr)
        return 1
    make_server(PushApp(store), "0.0.0.0", port, log_level="info").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
