"""``dataflow``: the command line of the local chain.

    dataflow demo                                   # generate, process, train, report
    dataflow generate --events 100000 --out events.jsonl
    dataflow process --input events.jsonl --warehouse warehouse.duckdb
    dataflow train --warehouse warehouse.duckdb --model-dir models
    dataflow serve --model-dir models               # the model server, port 8080
    dataflow api --model-dir models                 # GET /recommendations/{user}, port 8000
    dataflow status --warehouse warehouse.duckdb --model-dir models

Errors a user can cause (a missing input, a warehouse that cannot be
opened, an unknown option) print one line naming the problem and exit
non-zero; they never print a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from pipeline_code.host import ProcessingSettings
from pipeline_code.synth import DEFAULT_START, StoreSpec, write

RUN_MB = 96
"""``dataflow process``'s default ``--run-mb``: ``local.run.RUN_BYTES`` in MB
(not imported from there, which would load Beam for every command)."""

if TYPE_CHECKING:
    from pipeline_code.core.ports import RunSummary
    from pipeline_code.ml.train import TrainResult, TrainSettings

# Modules that import Beam are imported inside the commands: Beam logs about
# optional cloud clients at import, before logging is configured, and
# importing it makes `dataflow --help` slow.

out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _generate(events: int, out_path: Path, seed: int, start: dt.datetime, days: int) -> int:
    try:
        spec = StoreSpec(events=events, seed=seed, start=start, days=days)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with _progress() as progress, open(out_path, "wb") as f:
            task = progress.add_task("generating events", total=events)
            return write(spec, f, lambda n: progress.advance(task, n))
    except OSError as exc:
        raise UserError(f"cannot write {out_path}: {exc.strerror}") from exc


def _process(
    inputs: list[Path],
    warehouse: Path,
    log_dir: Path | None,
    settings: ProcessingSettings,
    engine: str = "beam",
    run_bytes: int | None = None,
    workers: int | None = None,
) -> RunSummary:
    from pipeline_code.local.run import InputError, process_files
    from pipeline_code.spark.local import SparkUnavailable
    from pipeline_code.streams.eventlog import EventLogError
    from pipeline_code.warehouses.duckdb import WarehouseError

    try:
        with _progress() as progress:
            task = progress.add_task("ingesting, processing, loading", total=None)
            done = [0, 0]  # events, runs: a long log is processed in several committed runs

            def on_run(run: RunSummary) -> None:
                done[0] += run.events_read
                done[1] += 1
                progress.update(task, description=f"processed {done[0]:,} events in {done[1]} committed runs")

            summary = process_files(
                inputs,
                warehouse,
                log_dir,
                settings,
                lambda n: progress.advance(task, n),
                engine,
                run_bytes,
                on_run,
                workers,
            )
    except (InputError, WarehouseError, EventLogError, SparkUnavailable) as exc:
        raise UserError(str(exc)) from exc
    return summary


def _print_summary(s: RunSummary, title: str = "dataflow process") -> None:
    t = Table(title=title, show_header=False)
    t.add_row("events read", f"{s.events_read:,}")
    t.add_row("stored", f"{s.events_stored:,}")
    t.add_row("duplicates skipped", f"{s.duplicates_skipped:,}")
    t.add_row("dead-lettered", f"{s.dead_lettered:,}")
    if s.runs > 1:
        t.add_row("committed runs", f"{s.runs:,}")
    t.add_row("seconds", f"{s.seconds:.2f}")
    t.add_row("events/s", f"{s.events_per_second:,.0f}")
    out.print(t)
    if not s.balanced:
        raise UserError(
            f"counts do not add up: read {s.events_read} != stored {s.events_stored} + "
            f"duplicates {s.duplicates_skipped} + dead-lettered {s.dead_lettered}"
        )


def _print_table(title: str, columns: tuple[str, ...], rows) -> None:
    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    out.print(t)


def _report(warehouse: Path) -> None:
    from pipeline_code.warehouses.duckdb import Warehouse

    with Warehouse(warehouse, read_only=True) as wh:
        _print_table("warehouse tables", ("table", "rows"), wh.row_counts().items())
        dead = wh.con.execute(
            "SELECT failed_stage, count(*) AS n, left(any_value(error_message), 80) FROM dead_letters "
            "GROUP BY 1 ORDER BY n DESC"
        ).fetchall()
        _print_table("dead letters by stage", ("stage", "count", "example reason"), dead)
        top = wh.con.execute(
            "SELECT item_id, item_category, views, purchases, round(revenue, 2) FROM item_features "
            "ORDER BY purchases DESC, views DESC LIMIT 5"
        ).fetchall()
        _print_table("top items", ("item", "category", "views", "purchases", "revenue"), top)


def cmd_generate(args: argparse.Namespace) -> None:
    """Write a synthetic store's activity as newline-delimited JSON."""
    n = _generate(args.events, args.out, args.seed, args.start, args.days)
    out.print(f"wrote {n:,} events to {args.out}")


def cmd_process(args: argparse.Namespace) -> None:
    """Ingest files into the event log, process them, and load the warehouse."""

    try:
        settings = ProcessingSettings(
            shards=args.shards,
            window_minutes=args.window_minutes,
            session_gap_minutes=args.session_gap_minutes,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.run_mb is not None and args.run_mb < 1:
        raise UserError(f"--run-mb must be at least 1, got {args.run_mb}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    _print_summary(
        _process(
            args.input,
            args.warehouse,
            args.log_dir,
            settings,
            args.engine,
            (args.run_mb or RUN_MB) << 20,
            args.workers,
        )
    )


def _train(warehouse: Path, model_dir: Path, settings: TrainSettings, tolerance: float = 0.02) -> TrainResult:
    from pipeline_code.ml.train import TrainingError, train

    try:
        with _progress() as progress:
            progress.add_task("evaluating on the holdout against production, training", total=None)
            return train(warehouse, model_dir, settings, tolerance=tolerance)
    except TrainingError as exc:
        raise UserError(str(exc)) from exc


def _print_training(r: TrainResult) -> None:
    t = Table(
        title=f"holdout after {r.holdout_cutoff:%Y-%m-%d %H:%M} UTC, {r.metrics['blend'].users:,} users"
    )
    for col in ("recommender", "precision@10", "recall@10", "NDCG@10", "coverage"):
        t.add_column(col, justify="left" if col == "recommender" else "right")
    labels = {"popularity": "popularity (baseline)", "blend": "blend (candidate)"}
    if r.decision is not None and r.decision.production_version:
        how = " refit" if r.decision.production_scored_as == "refit" else ""
        labels["production"] = f"production {r.decision.production_version}{how}"
    for name, m in r.metrics.items():
        label = labels.get(name, name)
        t.add_row(label, f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.ndcg:.4f}", f"{m.coverage:.1%}")
    out.print(t)
    out.print(
        f"model {r.version}: {r.interactions:,} interactions, {r.users:,} users, {r.items:,} items, "
        f"{r.seconds:.1f}s; NDCG@10 {r.lift('ndcg'):.2f}x the popularity baseline"
    )
    out.print(f"  directory {r.directory}\n  SageMaker archive {r.archive}")
    if r.decision is not None:
        verdict = "[green]promoted[/]" if r.promoted else "[yellow]refused[/], not served"
        out.print(f"gate: {verdict}: {r.decision.reason}", highlight=False)


def _sample_recommendations(model_dir: Path, users: int = 3) -> None:
    from pipeline_code.ml.model import Recommender, find_model

    model = Recommender.load(find_model(model_dir))
    t = Table(title="sample recommendations")
    for col in ("user", "recent items", "top 5"):
        t.add_column(col)
    # The users with the longest histories make the most telling sample.
    lengths = model.history_indptr[1:] - model.history_indptr[:-1]
    for u in sorted(range(len(model.user_ids)), key=lambda i: (-lengths[i], i))[:users]:
        user = str(model.user_ids[u])
        recent = model.item_ids[model.recent_items[model.recent_indptr[u] : model.recent_indptr[u + 1]][:3]]
        rec = model.recommend(user, k=5)
        t.add_row(user, ", ".join(recent.tolist()), ", ".join(rec.item_ids))
    t.add_row("(new visitor)", "", ", ".join(model.recommend(None, k=5).item_ids))
    out.print(t)


def cmd_train(args: argparse.Namespace) -> None:
    """Evaluate on a time holdout, train on everything, write a versioned model."""
    from pipeline_code.ml.train import TrainSettings

    try:
        settings = TrainSettings(
            factors=args.factors, iterations=args.iterations, holdout_days=args.holdout_days
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _print_training(_train(args.warehouse, args.model_dir, settings, args.tolerance))


def cmd_models(args: argparse.Namespace) -> None:
    """List the model versions with their metrics and decisions; promote; roll back."""
    from pipeline_code.ml.registry import Registry, RegistryError

    registry = Registry(args.model_dir)
    try:
        if args.action == "promote":
            if not args.version:
                raise UserError("dataflow models promote: name the VERSION to serve (see `dataflow models`)")
            entry = registry.promote(
                args.version, f"promoted by hand{': ' + args.reason if args.reason else ''}"
            )
        elif args.action == "rollback":
            entry = registry.rollback()
        else:
            entry = None
    except RegistryError as exc:
        raise UserError(str(exc)) from exc
    if entry is not None:
        _mark_serving(args.warehouse, entry["version"])
        out.print(
            f"serving {entry['version']} (was {entry['previous']}); running servers swap within seconds"
        )
        return
    served = registry.served()
    t = Table(title=f"model versions in {registry.root}")
    for col in ("version", "trained", "NDCG@10", "baseline", "production then", "decision", "reason"):
        t.add_column(col, justify="right" if col in ("NDCG@10", "baseline", "production then") else "left")
    for v in registry.versions():
        gate = v.gate
        prod = gate.get("production_ndcg")
        name = f"[bold]{v.version}[/] (serving)" if v.version == served else v.version
        t.add_row(
            name,
            v.trained_at[:16],
            f"{v.ndcg():.4f}" if v.ndcg() is not None else "",
            f"{v.ndcg('popularity'):.4f}" if v.ndcg("popularity") is not None else "",
            f"{prod:.4f}" if prod is not None else "",
            gate.get("decision", ""),
            gate.get("reason", ""),
        )
    out.print(t)
    if served is None:
        out.print("no version is served yet: `dataflow train`, or `dataflow models promote VERSION`")


def _mark_serving(warehouse: Path, version: str) -> None:
    """Keep ``model_versions.serving`` in step with a hand promotion or rollback."""
    import time

    from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError

    if not warehouse.exists():
        return
    try:
        with Warehouse(warehouse) as wh:
            wh.mark_serving(version, int(time.time() * 1_000_000))
    except WarehouseError as exc:
        err.print(f"warning: model_versions in {warehouse} not updated: {exc}")


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the model server (the container contract of all three ML platforms)."""
    from pipeline_code.serving.server import ServeError, resolve_model_dir, serve_model

    try:
        # Fail before binding the port when there is no model at all; the
        # server itself loads in the background so that /live answers at once.
        resolve_model_dir(args.model_dir, os.environ)
        out.print(f"model server on http://{args.host}:{args.port or 8080}  (POST /invocations, GET /ping)")
        serve_model(args.model_dir, args.host, args.port, log_level="warning")
    except ServeError as exc:
        raise UserError(str(exc)) from exc


def cmd_api(args: argparse.Namespace) -> None:
    """Run the recommendation API in front of the model (in-process or over HTTP)."""
    from pipeline_code.ml.model import ModelError, Recommender, find_model
    from pipeline_code.serving.api import HttpEndpoint, LocalEndpoint, RecommendationApi
    from pipeline_code.serving.watch import ModelWatcher, poll_seconds
    from pipeline_code.userstate.local import LocalUserState, path_beside
    from pipeline_code.web.server import make_server

    if args.endpoint:
        endpoint = HttpEndpoint(args.endpoint)
    else:
        try:
            model = Recommender.load(find_model(args.model_dir))
        except (FileNotFoundError, ModelError) as exc:
            raise UserError(str(exc)) from exc
        endpoint = LocalEndpoint(model)
        if (args.model_dir / "LATEST").is_file():
            # Promotions and rollbacks in the registry are served without a restart.
            try:
                interval = poll_seconds(os.environ)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            watcher = ModelWatcher(
                args.model_dir, lambda m: setattr(endpoint, "model", m), model.version, interval
            )
            watcher.start()
    state_path = args.user_state or path_beside(args.warehouse)
    store = LocalUserState(state_path) if state_path.exists() else None
    out.print(
        f"recommendation API on http://{args.host}:{args.port}/recommendations/<user_id>?k=10"
        + (
            f"  (fresh items from {state_path})"
            if store
            else f"  (no user state at {state_path}: run dataflow fresh)"
        )
    )
    make_server(RecommendationApi(endpoint, store), args.host, args.port).run()


def cmd_fresh(args: argparse.Namespace) -> None:
    """Run the fast path over the event log into the user-state store."""
    import signal
    import threading

    from pipeline_code.fastpath.local import FreshError, LogFastPath
    from pipeline_code.local.run import default_log_dir
    from pipeline_code.streams.eventlog import EventLog, EventLogError
    from pipeline_code.userstate.local import LocalUserState, path_beside

    if args.ttl_days < 1:
        raise UserError(f"--ttl-days must be at least 1, got {args.ttl_days}")
    log_dir = args.log_dir or default_log_dir(args.warehouse)
    state_path = args.user_state or path_beside(args.warehouse)
    try:
        fast = LogFastPath(EventLog(log_dir), LocalUserState(state_path, ttl_days=args.ttl_days))
        if args.once:
            fast.step()
        else:
            out.print(f"fast path: {log_dir} -> {state_path} (Ctrl-C stops)")
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                fast.follow(stop, args.poll_seconds)
    except (EventLogError, FreshError, OSError) as exc:
        raise UserError(str(exc)) from exc
    t = fast.totals
    out.print(
        f"fast path: {t.read:,} events read, {t.applied:,} applied, {t.skipped:,} from bots skipped, "
        f"{t.rejected:,} rejected (dead letters are processing's), {t.users_written:,} user states written; "
        f"{fast.store.users():,} users in {state_path}"
    )


def cmd_replay(args: argparse.Namespace) -> None:
    """Re-run dead letters after a fix, or an archive range after a code change."""
    from pipeline_code.local.replay import ReplayError, replay_archive, replay_dead_letters
    from pipeline_code.local.run import default_log_dir
    from pipeline_code.streams.eventlog import EventLogError
    from pipeline_code.warehouses.duckdb import WarehouseError

    if args.dead_letters == args.archive:
        raise UsageError("dataflow replay: give exactly one of --dead-letters or --archive")
    if args.dead_letters and (args.start or args.end or args.archive_dir):
        raise UsageError(
            "dataflow replay --dead-letters takes --stage and --since, not --from, --to or --archive-dir"
        )
    if args.archive and (args.start is None or args.end is None):
        raise UsageError("dataflow replay --archive needs --from and --to")
    if args.archive and (args.stage or args.since):
        raise UsageError(
            "dataflow replay --archive takes --from, --to and --archive-dir, not --stage or --since"
        )
    if not args.warehouse.exists():
        raise UserError(f"warehouse {args.warehouse} does not exist: nothing to replay into")
    try:
        if args.dead_letters:
            summary = replay_dead_letters(args.warehouse, args.stage, args.since)
            title = "dataflow replay --dead-letters"
        else:
            log_dir = args.log_dir or default_log_dir(args.warehouse)
            summary = replay_archive(
                args.warehouse, log_dir, args.start, args.end, archive_dir=args.archive_dir
            )
            title = "dataflow replay --archive"
    except (ReplayError, EventLogError, WarehouseError, OSError) as exc:
        raise UserError(str(exc)) from exc
    _print_summary(summary, title)


def cmd_archive(args: argparse.Namespace) -> None:
    """Write the events that arrived in a time range as Avro files by arrival hour."""
    from pipeline_code.local.replay import archive_range
    from pipeline_code.local.run import default_log_dir
    from pipeline_code.streams.eventlog import EventLog, EventLogError

    if args.end <= args.start:
        raise UserError(f"--to {args.end.isoformat()} must be after --from {args.start.isoformat()}")
    log_dir = args.log_dir or default_log_dir(args.warehouse)
    if not log_dir.exists():
        raise UserError(f"event log {log_dir} does not exist")
    try:
        n = archive_range(EventLog(log_dir), _as_us(args.start), _as_us(args.end), args.out)
    except (EventLogError, OSError) as exc:
        raise UserError(str(exc)) from exc
    out.print(
        f"archived {n:,} events that arrived {args.start.isoformat()} .. {args.end.isoformat()}"
        f" into {args.out}"
    )


def _as_us(when: dt.datetime) -> int:
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def cmd_collect(args: argparse.Namespace) -> None:
    """Run the Segment-compatible collector in front of the local event log."""
    from pipeline_code import host
    from pipeline_code.collector.app import Collector
    from pipeline_code.collector.settings import allowed_origins_from_env
    from pipeline_code.local.run import default_log_dir
    from pipeline_code.streams.eventlog import EventLogError
    from pipeline_code.streams.publish import EventLogPublisher
    from pipeline_code.web.server import make_server

    keys = set(args.write_key or []) or None
    if keys is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"--host {args.host} is reachable from other machines: give at least one --write-key")
    log_dir = args.log_dir or default_log_dir(args.warehouse)
    try:
        origins = allowed_origins_from_env({host.ENV_ALLOWED_ORIGINS: ",".join(args.allow_origin or [])})
    except ValueError as exc:
        raise UserError(str(exc).replace(host.ENV_ALLOWED_ORIGINS, "--allow-origin")) from exc
    try:
        publisher = EventLogPublisher(log_dir)
    except EventLogError as exc:
        raise UserError(str(exc)) from exc
    out.print(
        f"collector on http://{args.host}:{args.port} -> {log_dir} "
        f"({'write keys: ' + str(len(keys)) if keys else 'no write key required (loopback only)'}); "
        f"then: dataflow process --input ... or python -m pipeline_code.local --event_log_dir {log_dir}"
    )
    make_server(Collector(publisher, keys, origins), args.host, args.port, log_level="warning").run()


def cmd_status(args: argparse.Namespace) -> None:
    """Show the local chain's state: ingest lag, processing, the served model."""
    from pipeline_code.local.run import default_log_dir
    from pipeline_code.local.status import chain_status
    from pipeline_code.warehouses.duckdb import WarehouseError

    try:
        st = chain_status(args.warehouse, args.log_dir or default_log_dir(args.warehouse), args.model_dir)
    except WarehouseError as exc:
        raise UserError(str(exc)) from exc
    t = Table(title="dataflow status", show_header=False)
    t.add_row("events in (processed + waiting)", f"{st.events_read + st.unprocessed_events:,}")
    t.add_row("waiting to be processed (lag)", f"{st.unprocessed_events:,}")
    if st.oldest_unprocessed_age_seconds is not None:
        t.add_row("oldest waiting event, age", f"{st.oldest_unprocessed_age_seconds:,.0f} s")
    t.add_row("runs", f"{st.runs:,}")
    t.add_row("events stored", f"{st.events_stored:,}")
    t.add_row("duplicates skipped", f"{st.duplicates_skipped:,}")
    t.add_row("dead letters", f"{st.dead_letters:,}")
    t.add_row("last run", f"{st.last_run_at:%Y-%m-%d %H:%M:%S %Z}" if st.last_run_at else "never")
    if st.model is None:
        t.add_row("model", "none trained" if args.model_dir else "(pass --model-dir to show it)")
    else:
        t.add_row("model", st.model["model_version"])
        t.add_row("trained at", st.model["trained_at"])
        window = st.model["training_window"]
        t.add_row("training window", f"{window['from']} .. {window['to']}")
        for name, m in st.model["metrics"].items():
            t.add_row(f"NDCG@10 {name}", f"{m['ndcg']:.4f}")
    out.print(t)


def cmd_up(args: argparse.Namespace) -> None:
    """Run the whole chain live until Ctrl-C (``pipeline_code.local.up``)."""
    import signal

    from pipeline_code.local.up import Chain, UpError, UpSettings
    from pipeline_code.streams.eventlog import EventLogError
    from pipeline_code.warehouses.duckdb import WarehouseError

    try:
        settings = UpSettings(
            workdir=args.workdir,
            batch_seconds=args.batch_seconds,
            retrain_minutes=args.retrain_minutes,
            min_train_events=args.min_train_events,
            simulate=args.simulate,
            host=args.host,
            collector_port=args.collector_port,
            model_port=args.model_port,
            api_port=args.api_port,
            monitor_port=args.monitor_port,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    chain = Chain(settings, lambda line: out.print(line, highlight=False, markup=False, soft_wrap=True))
    signal.signal(signal.SIGINT, chain.stop)
    signal.signal(signal.SIGTERM, chain.stop)
    try:
        code = chain.run()
    except (UpError, EventLogError, WarehouseError, OSError) as exc:
        raise UserError(str(exc)) from exc
    if code:
        raise UserError("the totals do not balance: see the last line")


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate a store's events, run the whole local chain, train, and report."""
    from pipeline_code.ml.train import TrainSettings

    data = args.workdir / "events.jsonl"
    warehouse = args.workdir / "warehouse.duckdb"
    models = args.workdir / "models"
    n = _generate(args.events, data, 7, DEFAULT_START, 30)
    out.print(f"generated {n:,} events into {data}")
    _print_summary(_process([data], warehouse, None, ProcessingSettings()))
    _report(warehouse)
    _print_training(_train(warehouse, models, TrainSettings()))
    if (models / "LATEST").exists():
        _sample_recommendations(models)
    out.print(f"warehouse: {warehouse}  (try: duckdb {warehouse} 'from sessions limit 5')")
    out.print(f"serve it:  dataflow serve --model-dir {models}   and   dataflow api --model-dir {models}")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, via ``UsageError``, instead of exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


class UsageError(Exception):
    pass


def _when(value: str) -> dt.datetime:
    """A date or an ISO 8601 time; UTC unless it names an offset."""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date or time like 2026-10-01 or 2026-10-01T12:00:00Z, got {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _date(value: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-10-01, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dataflow", description="Data-Flow: the e-commerce event chain, locally.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    g = sub.add_parser("generate", help="write a synthetic store's events as NDJSON")
    g.add_argument("--events", "-n", type=int, default=100_000, help="lines to write (default 100000)")
    g.add_argument("--out", "-o", type=Path, required=True, help="NDJSON file to write")
    g.add_argument("--seed", type=int, default=7, help="random seed: same seed, same file (default 7)")
    g.add_argument("--start", type=_date, default=DEFAULT_START, help="first day, UTC (default 2026-10-01)")
    g.add_argument("--days", type=int, default=30, help="days of activity (default 30)")
    g.set_defaults(func=cmd_generate)

    p = sub.add_parser("process", help="ingest NDJSON, process it, load the warehouse")
    p.add_argument(
        "--input",
        "-i",
        type=Path,
        action="append",
        required=True,
        help="NDJSON file or directory (.jsonl/.ndjson/.json, optionally .gz); repeatable",
    )
    p.add_argument(
        "--warehouse",
        type=Path,
        default=Path(".dataflow/warehouse.duckdb"),
        help="DuckDB warehouse file (default .dataflow/warehouse.duckdb)",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="event log directory (default: next to the warehouse, NAME.eventlog)",
    )
    # The processing defaults have one source, shared with every cloud's jobs (pipeline_code.host).
    defaults = ProcessingSettings()
    p.add_argument(
        "--shards",
        type=int,
        default=defaults.shards,
        help=f"hash shards for keyed work (default {defaults.shards})",
    )
    p.add_argument(
        "--window-minutes",
        type=int,
        default=defaults.window_minutes,
        help=f"item popularity window (default {defaults.window_minutes})",
    )
    p.add_argument(
        "--session-gap-minutes",
        type=int,
        default=defaults.session_gap_minutes,
        help=f"inactivity that ends an unnamed session (default {defaults.session_gap_minutes})",
    )
    p.add_argument(
        "--engine",
        choices=["beam", "spark"],
        default="beam",
        help="beam: Beam's local runner (default); spark: the Spark adapter Glue and Synapse run",
    )
    p.add_argument(
        "--run-mb",
        type=int,
        default=None,
        help=f"log MB per committed run (beam): memory grows with this, not the input (default {RUN_MB})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes a run is shared by (beam; default on Linux: one a core, up to 4, for runs of 8 MB+)",
    )
    p.set_defaults(func=cmd_process)

    default_wh = Path(".dataflow/warehouse.duckdb")
    default_models = Path(".dataflow/models")
    t = sub.add_parser("train", help="evaluate and train the recommender, write a versioned model")
    t.add_argument(
        "--warehouse", type=Path, default=default_wh, help="DuckDB warehouse (default %(default)s)"
    )
    t.add_argument(
        "--model-dir", type=Path, default=default_models, help="where models go (default %(default)s)"
    )
    t.add_argument("--factors", type=int, default=32, help="ALS latent factors (default 32)")
    t.add_argument("--iterations", type=int, default=15, help="ALS iterations (default 15)")
    t.add_argument(
        "--holdout-days", type=float, default=7.0, help="newest days held out for evaluation (default 7)"
    )
    t.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="share of production's NDCG@10 a candidate may lose and still be promoted (default 0.02)",
    )
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="list model versions and gate decisions; promote or roll back")
    m.add_argument("action", nargs="?", choices=["list", "promote", "rollback"], default="list")
    m.add_argument("version", nargs="?", help="the version to promote")
    m.add_argument("--reason", default="", help="why, recorded with a hand promotion")
    m.add_argument(
        "--model-dir", type=Path, default=default_models, help="where models are (default %(default)s)"
    )
    m.add_argument(
        "--warehouse",
        type=Path,
        default=default_wh,
        help="whose model_versions to keep in step (default %(default)s)",
    )
    m.set_defaults(func=cmd_models)

    s = sub.add_parser("serve", help="run the model server (Vertex AI / SageMaker / Azure ML contract)")
    s.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model or directory of versions (default: $MODEL_DIR, /opt/ml/model, $AZUREML_MODEL_DIR)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default $AIP_HTTP_PORT, $PORT or 8080)")
    s.add_argument("serve", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    a = sub.add_parser("api", help="run the recommendation API (GET /recommendations/{user_id})")
    a.add_argument(
        "--model-dir",
        type=Path,
        default=default_models,
        help="model served in-process (default %(default)s)",
    )
    a.add_argument("--endpoint", default=None, help="call a model server at this URL instead of in-process")
    a.add_argument(
        "--warehouse",
        type=Path,
        default=default_wh,
        help="the user state beside it feeds fresh items (default %(default)s)",
    )
    a.add_argument(
        "--user-state", type=Path, default=None, help="user-state file (default: next to the warehouse)"
    )
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    a.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    a.set_defaults(func=cmd_api)

    fr = sub.add_parser("fresh", help="run the fast path: the event log into each user's recent activity")
    fr.add_argument("--warehouse", type=Path, default=default_wh, help="warehouse whose event log to follow")
    fr.add_argument("--log-dir", type=Path, default=None, help="event log (default: next to the warehouse)")
    fr.add_argument(
        "--user-state",
        type=Path,
        default=None,
        help="user-state file (default: next to the warehouse, NAME.userstate.sqlite)",
    )
    fr.add_argument("--once", action="store_true", help="apply what the log holds, then exit")
    fr.add_argument(
        "--poll-seconds", type=float, default=0.05, help="idle wait between looks at the log (default 0.05)"
    )
    fr.add_argument("--ttl-days", type=int, default=30, help="days a user's state outlives their last event")
    fr.set_defaults(func=cmd_fresh)

    st = sub.add_parser("status", help="show ingest lag, processing counts and the served model")
    st.add_argument(
        "--warehouse", type=Path, default=default_wh, help="DuckDB warehouse (default %(default)s)"
    )
    st.add_argument("--log-dir", type=Path, default=None, help="event log (default: next to the warehouse)")
    st.add_argument("--model-dir", type=Path, default=default_models, help="models (default %(default)s)")
    st.set_defaults(func=cmd_status)

    co = sub.add_parser("collect", help="accept events from Segment-compatible trackers into the event log")
    co.add_argument("--warehouse", type=Path, default=default_wh, help="warehouse whose event log to fill")
    co.add_argument("--log-dir", type=Path, default=None, help="event log (default: next to the warehouse)")
    co.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    co.add_argument("--port", type=int, default=8088, help="port (default 8088)")
    co.add_argument("--write-key", action="append", help="accepted write key (repeatable)")
    co.add_argument(
        "--allow-origin",
        action="append",
        help="a shop origin browsers may send from, scheme://host[:port] (repeatable; default: any)",
    )
    co.set_defaults(func=cmd_collect)

    r = sub.add_parser("replay", help="re-run dead letters after a fix, or an archive range (a backfill)")
    r.add_argument("--dead-letters", action="store_true", help="re-run stored dead letters")
    r.add_argument(
        "--stage", choices=["parse", "validate"], default=None, help="only dead letters of this stage"
    )
    r.add_argument("--since", type=_when, default=None, help="only dead letters from this time on")
    r.add_argument("--archive", action="store_true", help="reprocess what arrived in --from .. --to")
    r.add_argument("--from", dest="start", type=_when, default=None, help="start of the arrival range (UTC)")
    r.add_argument("--to", dest="end", type=_when, default=None, help="end of the arrival range, exclusive")
    r.add_argument(
        "--archive-dir",
        type=Path,
        default=None,
        help="read dataflow archive's files instead of the event log",
    )
    r.add_argument(
        "--warehouse", type=Path, default=default_wh, help="DuckDB warehouse (default %(default)s)"
    )
    r.add_argument("--log-dir", type=Path, default=None, help="event log (default: next to the warehouse)")
    r.set_defaults(func=cmd_replay)

    ar = sub.add_parser("archive", help="write the events that arrived in a range as Avro, by arrival hour")
    ar.add_argument(
        "--from", dest="start", type=_when, required=True, help="start of the arrival range (UTC)"
    )
    ar.add_argument("--to", dest="end", type=_when, required=True, help="end of the arrival range, exclusive")
    ar.add_argument("--out", type=Path, required=True, help="directory to write YYYY/MM/DD/HH/*.avro into")
    ar.add_argument("--warehouse", type=Path, default=default_wh, help="warehouse whose event log to read")
    ar.add_argument("--log-dir", type=Path, default=None, help="event log (default: next to the warehouse)")
    ar.set_defaults(func=cmd_archive)

    u = sub.add_parser(
        "up", help="run the whole chain live: collector, processing, fast path, training, serving"
    )
    u.add_argument("--workdir", type=Path, default=Path(".dataflow"), help="state (default %(default)s)")
    u.add_argument(
        "--simulate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="send the synthetic store at RATE events/s",
    )
    u.add_argument("--batch-seconds", type=float, default=5.0, help="micro-batch interval (default 5)")
    u.add_argument(
        "--retrain-minutes", type=float, default=10.0, help="gated retraining interval (default 10)"
    )
    u.add_argument(
        "--min-train-events",
        type=int,
        default=2000,
        help="events stored before the first model (default 2000)",
    )
    u.add_argument("--host", default="127.0.0.1", help="address the servers listen on (default 127.0.0.1)")
    u.add_argument("--collector-port", type=int, default=8088, help="collector port (default 8088)")
    u.add_argument("--model-port", type=int, default=8080, help="model server port (default 8080)")
    u.add_argument("--api-port", type=int, default=8000, help="API port (default 8000)")
    u.add_argument("--monitor-port", type=int, default=8090, help="monitoring page port (default 8090)")
    u.set_defaults(func=cmd_up)

    d = sub.add_parser("demo", help="generate events, run the local chain, train, report")
    d.add_argument("--events", "-n", type=int, default=50_000, help="events to generate (default 50000)")
    d.add_argument(
        "--workdir",
        type=Path,
        default=Path(".dataflow/demo"),
        help="where the demo keeps its files (default .dataflow/demo)",
    )
    d.set_defaults(func=cmd_demo)
    add_plugin_commands(sub)
    return parser


PLUGIN_GROUP = "dataflow.commands"
"""Entry points that add commands: ``add_command(subparsers)`` adds one whose
``func(args)`` raises ``ValueError`` or ``OSError`` for a user's mistake. The
infrastructure package adds ``plan`` this way (``components.plan``), so this
package never imports it."""


def add_plugin_commands(sub) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            add_command = ep.load()
        except ImportError as exc:
            # The command's extra is not installed: say which, when it is asked for.
            message = f"dataflow {ep.name} needs the stack's cloud extra and pulumi: {exc}"
            missing = sub.add_parser(ep.name, help=f"(unavailable: {exc.name or exc})")
            missing.set_defaults(func=lambda _args, m=message: _fail(m))
            continue
        add_command(sub)


def _fail(message: str) -> None:
    raise UserError(message)


def _plugin(func):
    """A plugin command's errors as user errors (one line, exit 1)."""

    def run(args: argparse.Namespace) -> None:
        try:
            func(args)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc)) from exc

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command, turning user errors into one line."""
    logging.getLogger().setLevel(os.environ.get("DATAFLOW_LOG_LEVEL", "ERROR"))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        func = args.func if getattr(args.func, "__module__", "").startswith(__name__) else _plugin(args.func)
        func(args)
    except UsageError as exc:
        err.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        return 2
    except UserError as exc:
        err.print(f"dataflow: error: {exc}", highlight=False, soft_wrap=True, markup=False)
        return 1
    except KeyboardInterrupt:
        err.print("dataflow: interrupted")
        return 130
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
