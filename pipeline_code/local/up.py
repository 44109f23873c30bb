"""``dataflow up``: the whole chain live on one machine.

    dataflow up                      # collector, processing, fast path, retraining, model server, API
    dataflow up --simulate 200       # and the synthetic store sending 200 events a second

What runs, each the command a user would run on its own:

- children (their own process groups, so Ctrl-C reaches this process only
  and it decides the order things stop in): the collector (``dataflow
  collect``), the fast path (``dataflow fresh``), and once a model exists the
  model server (``dataflow serve``, following the registry's ``LATEST``) and
  the API (``dataflow api``, calling the model server);
- here: micro-batch processing of the event log every ``--batch-seconds``
  (the same Beam chain and commit as ``dataflow process``: the log's
  checkpoint moves with the rows), gated retraining every
  ``--retrain-minutes`` (``dataflow train``'s gate; the first model once the
  warehouse holds ``--min-train-events``), a status line per batch with the
  lag in events and seconds; with ``--simulate RATE`` the synthetic store
  posted to the collector's ``/v1/events`` (fresh ids and the send time as
  event time).

Ctrl-C (or SIGTERM) stops the simulator, then the collector (it answers
what it holds first), processes what the collector acknowledged, stops the
rest and exits 0. State lives under ``--workdir``: a restart resumes from
the warehouse's checkpoint (nothing processed twice, nothing skipped) and
the fast path from its own offset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_code.core.parse import now_us
from pipeline_code.host import ProcessingSettings
from pipeline_code.local.run import default_log_dir, process_log
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.warehouses.duckdb import Warehouse


class UpError(Exception):
    """The chain cannot start or a part of it stopped; the message says which."""


@dataclass(frozen=True)
class UpSettings:
    workdir: Path = Path(".dataflow")
    batch_seconds: float = 5.0
    retrain_minutes: float = 10.0
    min_train_events: int = 2000
    simulate: float = 0.0
    host: str = "127.0.0.1"
    collector_port: int = 8088
    model_port: int = 8080
    api_port: int = 8000

    def __post_init__(self) -> None:
        if self.batch_seconds <= 0:
            raise ValueError(f"--batch-seconds must be above 0, got {self.batch_seconds}")
        if self.retrain_minutes <= 0:
            raise ValueError(f"--retrain-minutes must be above 0, got {self.retrain_minutes}")
        if self.simulate < 0:
            raise ValueError(f"--simulate must be 0 or more events a second, got {self.simulate}")
        if self.min_train_events < 1:
            raise ValueError(f"--min-train-events must be at least 1, got {self.min_train_events}")

    @property
    def warehouse(self) -> Path:
        return self.workdir / "warehouse.duckdb"

    @property
    def models(self) -> Path:
        return self.workdir / "models"

    @property
    def log_dir(self) -> Path:
        return default_log_dir(self.warehouse)


def _dataflow(*args: str) -> list[str]:
    """The ``dataflow`` command, run by this interpreter."""
    return [sys.executable, "-m", "pipeline_code.cli", *args]


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class Children:
    """The chain's servers as child processes, each logging to ``logs/NAME.log``."""

    log_dir: Path
    running: dict[str, _Child] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}.log"
        with open(path, "ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches dataflow up only.
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.running[name] = _Child(name, process, path)

    def check(self) -> None:
        """Raise if a child stopped by itself, with the end of its log."""
        for child in self.running.values():
            code = child.process.poll()
            if code is not None:
                tail = child.log.read_text(errors="replace").splitlines()[-5:]
                raise UpError(
                    f"{child.name} stopped (exit {code}); its log {child.log} ends:\n" + "\n".join(tail)
                )

    def stop(self, name: str, timeout: float = 15.0) -> None:
        child = self.running.pop(name, None)
        if child is None or child.process.poll() is not None:
            return
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200 (or the process exits, or time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UpError(f"{url}: the process exited ({process.returncode}) before it answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise UpError(f"{url} did not answer within {timeout:.0f} s")


class Simulator(threading.Thread):
    """The synthetic store sent through the collector at ``rate`` events a
    second: a batch every 100 ms to ``/v1/events``, as a shop's server would.
    Ids are new for every run (the seed is the start time) and each event is
    stamped with its send time; lines the generator makes malformed on
    purpose are sent too when they are JSON objects (they become dead
    letters), the rest are skipped (a collector answers them 400)."""

    TICK = 0.1

    def __init__(self, host: str, port: int, rate: float) -> None:
        super().__init__(name="simulator", daemon=True)
        self.host, self.port, self.rate = host, port, rate
        self.stopping = threading.Event()
        self.sent = self.acknowledged = self.refused = 0
        self.error: str | None = None

    def _lines(self):
        from pipeline_code.synth import StoreSpec, generate

        seed = int(time.time())
        while True:
            yield from generate(StoreSpec(events=100_000, seed=seed, start=dt.datetime.now(dt.UTC), days=1))
            seed += 1

    def run(self) -> None:
        lines = self._lines()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        owed = 0.0
        try:
            while not self.stopping.wait(self.TICK):
                owed += self.rate * self.TICK
                batch = []
                while len(batch) < int(owed):
                    try:
                        event = json.loads(next(lines))
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    event["event_timestamp"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                    batch.append(event)
                owed -= len(batch)
                if batch:
                    self._send(conn, batch)
        except Exception as exc:  # reported by dataflow up, which stops
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _send(self, conn: http.client.HTTPConnection, batch: list[dict]) -> None:
        body = json.dumps(batch).encode()
        self.sent += len(batch)
        conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status == 200:
            self.acknowledged += len(batch)
        else:
            self.refused += len(batch)

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)


@dataclass
class Totals:
    """What processing did since the warehouse was created (``_dataflow_runs``)."""

    read: int
    stored: int
    duplicates: int
    dead_letters: int

    @property
    def balanced(self) -> bool:
        return self.read == self.stored + self.duplicates + self.dead_letters


def totals(warehouse: Path) -> Totals:
    with Warehouse(warehouse, read_only=True) as wh:
        read, stored, dups, dead = wh.con.execute(
            "SELECT coalesce(sum(events_read), 0), coalesce(sum(events_stored), 0), "
            "coalesce(sum(duplicates_skipped), 0), coalesce(sum(dead_lettered), 0) FROM _dataflow_runs"
        ).fetchone()
    return Totals(int(read), int(stored), int(dups), int(dead))


def lag(log: EventLog, warehouse: Path) -> tuple[int, float | None]:
    """Events the log holds past the checkpoint, and how old the oldest is (s)."""
    with Warehouse(warehouse, read_only=True) as wh:
        checkpoint = wh.checkpoint(log.log_id)
    end = log.durable_end()
    if checkpoint >= end:
        return 0, None
    raws = [r for lo, hi in log.ranges(checkpoint, end, 8 << 20) for r in log.read_range(lo, hi)]
    return len(raws), ((now_us() - raws[0].received_at_us) / 1e6 if raws else None)


class Chain:
    """``dataflow up``'s loop (see the module doc)."""

    def __init__(self, settings: UpSettings, say: Callable[[str], None] = print) -> None:
        self.s = settings
        self.say = say
        self.stopping = threading.Event()
        self.children = Children(settings.workdir / "logs")
        self.simulator: Simulator | None = None
        self.trained_at = 0.0
        self.processing = ProcessingSettings(batch_seconds=max(1, int(settings.batch_seconds)))

    # --- parts ------------------------------------------------------------

    def _url(self, port: int, path: str) -> str:
        return f"http://{self.s.host}:{port}{path}"

    def _start_collector(self) -> None:
        self.children.start(
            "collector",
            _dataflow("collect", "--warehouse", str(self.s.warehouse), "--host", self.s.host,
                      "--port", str(self.s.collector_port)),
        )  # fmt: skip
        wait_until_up(self._url(self.s.collector_port, "/live"), self.children.running["collector"].process)

    def _start_serving(self) -> None:
        if "model-server" in self.children.running or not (self.s.models / "LATEST").is_file():
            return
        self.children.start(
            "model-server",
            _dataflow("serve", "--model-dir", str(self.s.models), "--host", self.s.host,
                      "--port", str(self.s.model_port)),
        )  # fmt: skip
        wait_until_up(self._url(self.s.model_port, "/ping"), self.children.running["model-server"].process)
        self.children.start(
            "api",
            _dataflow("api", "--endpoint", self._url(self.s.model_port, ""),
                      "--warehouse", str(self.s.warehouse),
                      "--host", self.s.host, "--port", str(self.s.api_port)),
        )  # fmt: skip
        wait_until_up(self._url(self.s.api_port, "/live"), self.children.running["api"].process)
        self.say(
            f"serving: model server {self._url(self.s.model_port, '/invocations')}, "
            f"API {self._url(self.s.api_port, '/recommendations/<user_id>')}"
        )

    def _process(self) -> str:
        log = EventLog(self.s.log_dir)
        waiting, age = lag(log, self.s.warehouse)
        if not waiting:
            return "lag 0 events"
        summary = process_log(log.path, self.s.warehouse, self.processing)
        return (
            f"batch {summary.events_read:,} read, {summary.events_stored:,} stored, "
            f"{summary.duplicates_skipped:,} duplicates, {summary.dead_lettered:,} dead letters "
            f"in {summary.seconds:.1f} s; lag was {waiting:,} events, {age or 0:.1f} s"
        )

    def _holdout_days(self) -> float | None:
        """The newest quarter of the events' time span, at most ``dataflow train``'s 7 days: a
        live chain holds minutes of events, not weeks."""
        with Warehouse(self.s.warehouse, read_only=True) as wh:
            lo, hi = wh.con.execute(
                "SELECT epoch_us(min(event_timestamp)), epoch_us(max(event_timestamp)) FROM events"
            ).fetchone()
        if lo is None or hi <= lo:
            return None
        return min(7.0, (hi - lo) / 86_400e6 / 4)

    def _retrain(self) -> str | None:
        from pipeline_code.ml.train import TrainingError, TrainSettings, train

        first = not (self.s.models / "LATEST").is_file()
        if not first and time.monotonic() - self.trained_at < self.s.retrain_minutes * 60:
            return None
        if first and totals(self.s.warehouse).stored < self.s.min_train_events:
            return None
        holdout = self._holdout_days()
        if holdout is None:
            return None
        try:
            result = train(self.s.warehouse, self.s.models, TrainSettings(holdout_days=holdout))
        except TrainingError as exc:
            if not first:
                self.trained_at = time.monotonic()
            return f"training skipped: {exc}"
        self.trained_at = time.monotonic()
        verdict = "promoted" if result.promoted else "refused"
        reason = result.decision.reason if result.decision is not None else ""
        return f"model {result.version} {verdict}: {reason}"

    # --- the loop ---------------------------------------------------------

    def run(self) -> int:
        self.s.workdir.mkdir(parents=True, exist_ok=True)
        Warehouse(self.s.warehouse).close()
        EventLog(self.s.log_dir)  # created here, before the collector and the fast path open it
        try:
            self._start_collector()
            self.children.start("fast-path", _dataflow("fresh", "--warehouse", str(self.s.warehouse)))
            self._start_serving()
            self.say(
                f"collector {self._url(self.s.collector_port, '/v1/batch')} (and /v1/events); "
                f"processing every {self.s.batch_seconds:g} s; "
                f"retraining every {self.s.retrain_minutes:g} min; "
                f"logs in {self.children.log_dir}; Ctrl-C stops"
            )
            if self.s.simulate:
                self.simulator = Simulator(self.s.host, self.s.collector_port, self.s.simulate)
                self.simulator.start()
            while not self.stopping.is_set():
                started = time.monotonic()
                self.children.check()
                if self.simulator is not None and self.simulator.error:
                    raise UpError(f"the simulator stopped: {self.simulator.error}")
                line = self._process()
                trained = self._retrain()
                if trained:
                    self.say(trained)
                    self._start_serving()
                self.say(line + self._simulated())
                self.stopping.wait(max(0.0, self.s.batch_seconds - (time.monotonic() - started)))
            return self._drain()
        finally:
            if self.simulator is not None:
                self.simulator.stop()
            self.children.stop_all()

    def _simulated(self) -> str:
        if self.simulator is None:
            return ""
        return f"; simulated {self.simulator.acknowledged:,} acknowledged"

    def _drain(self) -> int:
        """Stop taking events, process what was acknowledged, stop the rest."""
        if self.simulator is not None:
            self.simulator.stop()
        self.children.stop("collector")
        self.say(self._process())
        self.children.stop_all()
        t = totals(self.s.warehouse)
        line = (
            f"stopped: {t.read:,} events processed = {t.stored:,} stored + {t.duplicates:,} duplicates "
            f"+ {t.dead_letters:,} dead letters" + ("" if t.balanced else " (does not balance)")
        )
        if self.simulator is not None:
            sim = self.simulator
            line += f"; the simulator had {sim.acknowledged:,} acknowledged, {sim.refused:,} refused"
        self.say(line)
        return 0 if t.balanced else 1

    def stop(self, *_args) -> None:
        self.stopping.set()
