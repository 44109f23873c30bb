"""``dataflow``: the command line of the local chain.

    dataflow demo                                   # generate, process, report
    dataflow generate --events 100000 --out events.jsonl
    dataflow process --input events.jsonl --warehouse warehouse.duckdb

Errors a user can cause (a missing input, a warehouse that cannot be
opened, an unknown option) print one line naming the problem and exit
non-zero; they never print a traceback.
"""

from __future__ import annotations

import argparse
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

from pipeline_code.synth import DEFAULT_START, StoreSpec, write

if TYPE_CHECKING:
    from pipeline_code.beam.pipeline import ProcessingSettings
    from pipeline_code.local.chain import RunSummary

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
    inputs: list[Path], warehouse: Path, log_dir: Path | None, settings: ProcessingSettings
) -> RunSummary:
    from pipeline_code.local.chain import InputError, process_files
    from pipeline_code.local.eventlog import EventLogError
    from pipeline_code.local.warehouse import WarehouseError

    try:
        with _progress() as progress:
            task = progress.add_task("ingesting, processing, loading", total=None)
            summary = process_files(inputs, warehouse, log_dir, settings, lambda n: progress.advance(task, n))
    except (InputError, WarehouseError, EventLogError) as exc:
        raise UserError(str(exc)) from exc
    return summary


def _print_summary(s: RunSummary) -> None:
    t = Table(title="dataflow process", show_header=False)
    t.add_row("events read", f"{s.events_read:,}")
    t.add_row("stored", f"{s.events_stored:,}")
    t.add_row("duplicates skipped", f"{s.duplicates_skipped:,}")
    t.add_row("dead-lettered", f"{s.dead_lettered:,}")
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
    from pipeline_code.local.warehouse import Warehouse

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
    from pipeline_code.beam.pipeline import ProcessingSettings

    try:
        settings = ProcessingSettings(
            shards=args.shards,
            window_minutes=args.window_minutes,
            session_gap_minutes=args.session_gap_minutes,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _print_summary(_process(args.input, args.warehouse, args.log_dir, settings))


def cmd_demo(args: argparse.Namespace) -> None:
    """Generate a store's events, run the whole local chain, and report."""
    from pipeline_code.beam.pipeline import ProcessingSettings

    data = args.workdir / "events.jsonl"
    warehouse = args.workdir / "warehouse.duckdb"
    n = _generate(args.events, data, 7, DEFAULT_START, 30)
    out.print(f"generated {n:,} events into {data}")
    _print_summary(_process([data], warehouse, None, ProcessingSettings()))
    _report(warehouse)
    out.print(f"warehouse: {warehouse}  (try: duckdb {warehouse} 'from sessions limit 5')")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, via ``UsageError``, instead of exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


class UsageError(Exception):
    pass


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
    p.add_argument("--shards", type=int, default=8, help="hash shards for keyed work (default 8)")
    p.add_argument("--window-minutes", type=int, default=60, help="item popularity window (default 60)")
    p.add_argument(
        "--session-gap-minutes",
        type=int,
        default=30,
        help="inactivity that ends an unnamed session (default 30)",
    )
    p.set_defaults(func=cmd_process)

    d = sub.add_parser("demo", help="generate events, run the local chain, report")
    d.add_argument("--events", "-n", type=int, default=50_000, help="events to generate (default 50000)")
    d.add_argument(
        "--workdir",
        type=Path,
        default=Path(".dataflow/demo"),
        help="where the demo keeps its files (default .dataflow/demo)",
    )
    d.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command, turning user errors into one line."""
    logging.getLogger().setLevel(os.environ.get("DATAFLOW_LOG_LEVEL", "ERROR"))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        args.func(args)
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
