"""``dataflow up``: the whole chain live on one machine.

    dataflow up                      # collector, processing, fast path, retraining, model server, API
    dataflow up --simulate 200       # and the synthetic store sending 200 events a second

What runs, each the command a user would run on its own:

- children (their own sessions, so Ctrl-C reaches this process only
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

The monitoring page (``pipeline_code.web.monitor``, ``/`` on
``--monitor-port``) shows it live: ingest rate, lag, dead letters by stage
and reason (newest first, payload viewable), freshness, the model and the
last gate decision, API and model-server latency; the demo shop (``/shop``)
sends clicks with analytics.js and shows the list change. Freshness is
measured end to end: every
``probe_seconds`` a ``view_item`` of a new probe user
(``dataflow-probe-N``) goes through the collector, and the time until the
API's list for that user carries it is the sample.

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
from pipeline_code.web.monitor import MonitorApp, MonitorState, latency_quantiles


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
    monitor_port: int = 8090
    probe_seconds: float = 3.0

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


def _die_with_parent() -> None:
    """In a child, before exec: on Linux, ask for SIGTERM when the parent dies,
    so a ``dataflow up`` killed outright (SIGKILL) leaves no server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
                preexec_fn=_die_with_parent,
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


def dead_letter_facts(warehouse: Path, newest: int = 20, reasons: int = 12) -> dict:
    """Dead letters by stage and reason, and the newest with their payloads."""
    with Warehouse(warehouse, read_only=True) as wh:
        by_reason = wh.con.execute(
            "SELECT failed_stage, error_message, count(*) FROM dead_letters GROUP BY ALL "
            "ORDER BY 3 DESC, 1, 2 LIMIT ?",
            [reasons],
        ).fetchall()
        rows = wh.con.execute(
            "SELECT source_offset, dead_lettered_at, failed_stage, error_message, payload FROM dead_letters "
            "ORDER BY dead_lettered_at DESC, source_offset DESC LIMIT ?",
            [newest],
        ).fetchall()
    payloads = {}
    listed = []
    for offset, at, stage, reason, payload in rows:
        text = bytes(payload).decode("utf-8", errors="replace")
        payloads[int(offset)] = {
            "offset": int(offset),
            "stage": stage,
            "reason": reason,
            "payload_text": text,
        }
        preview = text if len(text) <= 80 else text[:77] + "..."
        listed.append({"offset": int(offset), "at": at.isoformat(timespec="seconds"), "stage": stage,
                       "reason": reason, "preview": preview})  # fmt: skip
    return {
        "dead_reasons": [{"stage": st, "reason": r, "rows": n} for st, r, n in by_reason],
        "dead_newest": listed,
        "dead_letter_payloads": payloads,
    }


_AISLE: dict[str, list[str]] = {}


def shop_items(models: Path, n: int = 12) -> list[str]:
    """Products for the demo shop's aisle: a spread (by a hash, so it stays put) of the
    catalogue the served model knows; an item it has not seen cannot move a list."""
    import hashlib

    from pipeline_code.ml.model import ARRAYS_FILE, LATEST_FILE

    latest = models / LATEST_FILE
    if not latest.is_file():
        return []
    version = latest.read_text().strip()
    if version not in _AISLE:
        import numpy as np

        with np.load(models / version / ARRAYS_FILE, allow_pickle=False) as arrays:
            items = [str(i) for i in arrays["item_ids"]]
        _AISLE.clear()
        _AISLE[version] = sorted(items, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:n]
    return _AISLE[version]


def shop_users(warehouse: Path, n: int = 8) -> list[str]:
    """The identified users with the most events (bots and the probe users left out): whom the
    demo shop offers. One row per user in ``user_features``, not a scan of ``events``."""
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.con.execute(
            "SELECT user_key FROM user_features WHERE NOT is_bot AND user_key NOT LIKE 'anon:%' "
            "AND user_key NOT LIKE 'dataflow-probe-%' ORDER BY lifetime_events DESC, 1 LIMIT ?",
            [n],
        ).fetchall()
    return [r[0] for r in rows]


def model_facts(models: Path) -> dict:
    """The served version with its NDCG next to the baseline's, and the newest gate decision."""
    out: dict = {"model": None, "gate": None}
    latest = models / "LATEST"
    if latest.is_file():
        version = latest.read_text().strip()
        with contextlib.suppress(OSError, ValueError, KeyError):
            meta = json.loads((models / version / "metadata.json").read_text())
            out["model"] = {
                "version": version,
                "ndcg": meta["metrics"]["blend"]["ndcg"],
                "baseline_ndcg": meta["metrics"]["popularity"]["ndcg"],
            }
    versions = (
        sorted(p for p in models.glob("*") if p.is_dir() and (p / "metadata.json").is_file())
        if models.is_dir()
        else []
    )
    if versions:
        with contextlib.suppress(OSError, ValueError):
            gate = json.loads((versions[-1] / "metadata.json").read_text()).get("gate") or {}
            if gate:
                out["gate"] = {"version": versions[-1].name, "decision": gate.get("decision"),
                               "reason": gate.get("reason")}  # fmt: skip
    return out


class FreshnessProbe(threading.Thread):
    """Every ``every`` seconds: a ``view_item`` of a new probe user through the
    collector, then the API asked for that user's list until it carries the
    event (``fresh_items``); the milliseconds between are the sample."""

    def __init__(self, host: str, collector_port: int, api_port: int, every: float) -> None:
        super().__init__(name="freshness-probe", daemon=True)
        self.host, self.collector_port, self.api_port, self.every = host, collector_port, api_port, every
        self.stopping = threading.Event()
        self._samples: list[float] = []
        self._lock = threading.Lock()
        self.n = 0
        self.sent = 0

    def _event(self) -> dict:
        from pipeline_code.synth import StoreSpec, generate

        self.n += 1
        user = f"dataflow-probe-{int(time.time())}-{self.n}"
        # A view_item of the synthetic store (a different item for each seed); lines the
        # generator makes malformed on purpose are passed over.
        for line in generate(StoreSpec(events=200, seed=self.n, malformed_share=0.0)):
            event = json.loads(line)
            if event.get("event_name") == "view_item":
                break
        now = dt.datetime.now(dt.UTC)
        event.update(
            event_id=f"probe-{now.timestamp():.6f}-{self.n}",
            user_id=user,
            session_id=f"{user}-s",
            event_timestamp=now.isoformat(timespec="milliseconds"),
        )
        return event

    def _once(self) -> float | None:
        event = self._event()
        body = json.dumps([event]).encode()
        sent = time.perf_counter()
        request = urllib.request.Request(
            f"http://{self.host}:{self.collector_port}/v1/events", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()
        self.sent += 1
        url = f"http://{self.host}:{self.api_port}/recommendations/{event['user_id']}?k=10"
        while time.perf_counter() - sent < 10 and not self.stopping.is_set():
            with urllib.request.urlopen(url, timeout=5) as answer:
                if json.loads(answer.read()).get("fresh_items", 0) > 0:
                    return (time.perf_counter() - sent) * 1000
            time.sleep(0.01)
        return None

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            with contextlib.suppress(OSError, ValueError):
                ms = self._once()
                if ms is not None:
                    with self._lock:
                        self._samples.append(ms)

    def take(self) -> float | None:
        """The newest sample since the last take (None if none)."""
        with self._lock:
            samples, self._samples = self._samples, []
        return round(samples[-1], 1) if samples else None

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)


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
        self.monitor = MonitorState()
        self.probe: FreshnessProbe | None = None
        self._scrapes: dict[str, str] = {}
        # (when, log end, records up to it): each sample counts only what the log gained.
        self._last_count: tuple[float, int, int] | None = None
        self._batch: dict[str, float | None] = {}

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
        if self.s.probe_seconds > 0:
            self.probe = FreshnessProbe(
                self.s.host, self.s.collector_port, self.s.api_port, self.s.probe_seconds
            )
            self.probe.start()
        self.say(
            f"serving: model server {self._url(self.s.model_port, '/invocations')}, "
            f"API {self._url(self.s.api_port, '/recommendations/<user_id>')}"
        )

    def _process(self) -> str:
        log = EventLog(self.s.log_dir)
        waiting, age = lag(log, self.s.warehouse)
        self._batch = {"lag_events": waiting, "lag_seconds": age, "processed_per_batch": 0}
        if not waiting:
            return "lag 0 events"
        # In this process: forking a process that runs servers on threads could
        # copy a lock one of them holds (a backlog runs in ``RUN_BYTES`` runs all the same).
        summary = process_log(log.path, self.s.warehouse, self.processing, workers=1)
        self._batch["processed_per_batch"] = summary.events_read
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

    _monitor_server = None

    def _start_monitor(self) -> None:
        from pipeline_code.web.server import make_server

        app = MonitorApp(
            self.monitor,
            api_url=self._url(self.s.api_port, ""),
            collector_url=f"{self.s.host}:{self.s.collector_port}",
        )
        server = make_server(app, self.s.host, self.s.monitor_port, log_level="warning")
        self._monitor_server = server
        threading.Thread(target=server.run, name="monitor", daemon=True).start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise UpError(f"the monitoring page could not listen on {self.s.host}:{self.s.monitor_port}")
            time.sleep(0.05)
        self.say(
            f"monitoring page {self._url(self.s.monitor_port, '/')}, "
            f"demo shop {self._url(self.s.monitor_port, '/shop')}"
        )

    def _latency(
        self, name: str, child: str, port: int, histogram: str, route: str
    ) -> dict[str, float | None]:
        if child not in self.children.running:
            return {f"{name}_p50_ms": None, f"{name}_p99_ms": None}
        try:
            with urllib.request.urlopen(self._url(port, "/metrics"), timeout=2) as answer:
                now = answer.read().decode()
        except OSError:
            return {f"{name}_p50_ms": None, f"{name}_p99_ms": None}
        q = latency_quantiles(self._scrapes.get(name), now, histogram, route)
        self._scrapes[name] = now
        return {f"{name}_p50_ms": q[0.5], f"{name}_p99_ms": q[0.99]}

    def _observe(self) -> None:
        """One sample for the monitoring page, and its facts."""
        log = EventLog(self.s.log_dir)
        end, now = log.durable_end(), time.time()
        then, start, before = self._last_count or (now, 0, 0)
        count = before + log.count_records(start, end)
        rate = round((count - before) / (now - then), 1) if self._last_count and now > then else None
        self._last_count = (now, end, count)
        sample: dict[str, float | None] = {"t": now, "ingest_per_s": rate, **self._batch}
        sample["freshness_ms"] = self.probe.take() if self.probe is not None else None
        api, model = self.s.api_port, self.s.model_port
        sample |= self._latency("api", "api", api, "dataflow_api_request_duration_seconds", "recommendations")
        sample |= self._latency(
            "model", "model-server", model, "dataflow_model_request_duration_seconds", "predict"
        )
        t = totals(self.s.warehouse)
        facts = dead_letter_facts(self.s.warehouse)
        self.monitor.record(
            sample,
            totals={"log_events": count, "read": t.read, "stored": t.stored, "duplicates": t.duplicates,
                    "dead_letters": t.dead_letters},
            lag={"events": self._batch.get("lag_events"), "seconds": self._batch.get("lag_seconds")},
            **model_facts(self.s.models),
            **facts,
            shop_users=shop_users(self.s.warehouse),
            shop_items=shop_items(self.s.models),
        )  # fmt: skip

    # --- the loop ---------------------------------------------------------

    def run(self) -> int:
        self.s.workdir.mkdir(parents=True, exist_ok=True)
        Warehouse(self.s.warehouse).close()
        EventLog(self.s.log_dir)  # created here, before the collector and the fast path open it
        try:
            self._start_monitor()
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
                self._observe()
                self.stopping.wait(max(0.0, self.s.batch_seconds - (time.monotonic() - started)))
            return self._drain()
        finally:
            if self.simulator is not None:
                self.simulator.stop()
            if self.probe is not None:
                self.probe.stop()
            self.children.stop_all()
            if self._monitor_server is not None:
                self._monitor_server.should_exit = True

    def _simulated(self) -> str:
        if self.simulator is None:
            return ""
        return f"; simulated {self.simulator.acknowledged:,} acknowledged"

    def _drain(self) -> int:
        """Stop taking events, process what was acknowledged, stop the rest."""
        if self.probe is not None:
            self.probe.stop()
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
        if self.probe is not None:
            line += f"; {self.probe.sent:,} freshness probes sent"
        self.say(line)
        return 0 if t.balanced else 1

    def stop(self, *_args) -> None:
        self.stopping.set()
