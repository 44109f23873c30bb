"""Hot model swaps: follow ``MODEL_DIR/LATEST`` and hand each newly named version over.

    watcher = ModelWatcher(Path(".dataflow/models"), on_model=app.swap, current=model.version)
    watcher.start()

``dataflow train`` (when its gate passes), ``dataflow models promote`` and
``dataflow models rollback`` rewrite ``LATEST`` atomically. The watcher
notices within ``interval_s``, loads the version on its own thread (the
checksums are verified, as at startup) and only then calls ``on_model``:
the server keeps answering with the old model until the new one is whole,
requests in flight finish with the model they started with, and readiness
never drops. A version that fails to load is logged and skipped; the old
one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline_code.ml.model import LATEST_FILE, ModelError, Recommender

log = logging.getLogger(__name__)


class ModelWatcher:
    """Polls one registry's ``LATEST``; see the module doc."""

    def __init__(
        self,
        root: Path,
        on_model: Callable[[Recommender], None],
        current: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.root = Path(root)
        self.on_model = on_model
        self.current = current
        self.interval_s = interval_s
        self.failed: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def named(self) -> str | None:
        try:
            return (self.root / LATEST_FILE).read_text().strip() or None
        except OSError:
            return None

    def check(self) -> bool:
        """Load and hand over the version ``LATEST`` names if it is new; True if swapped."""
        version = self.named()
        if version is None or version == self.current or version == self.failed:
            return False
        try:
            model = Recommender.load(self.root / version)
        except ModelError as exc:
            self.failed = version
            log.error("model %s not swapped in, still serving %s: %s", version, self.current, exc)
            return False
        self.on_model(model)
        log.warning("model %s swapped in (was %s)", model.version, self.current)
        self.current, self.failed = model.version, None
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a watcher that dies would silently freeze the model
                log.exception("model watcher: checking %s failed", self.root / LATEST_FILE)

    def start(self) -> ModelWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


POLL_ENV = "MODEL_POLL_SECONDS"


def poll_seconds(env: Mapping[str, str]) -> float:
    """How often to look at ``LATEST``: ``$MODEL_POLL_SECONDS``, else 1."""
    raw = env.get(POLL_ENV, "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{POLL_ENV} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{POLL_ENV} must be above 0, got {raw!r}")
    return value
