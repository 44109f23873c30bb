"""The processing pipeline: options, graph, and a runner that works offline.

Run the local chain through the CLI (``dataflow process``), or this module
directly against an existing event log and warehouse::

    python -m pipeline_code.beam --event_log_dir .dataflow/warehouse.eventlog \\
        --warehouse .dataflow/warehouse.duckdb

All logic lives in modules and ``pipeline_code/beam/__main__.py`` only calls
``run``: it pickles the same way locally and on Dataflow (where
``save_main_session`` is on), and ``ChainOptions`` is defined once (running
this file as ``__main__`` would define it twice, and Beam would see its flags
twice).
"""

from __future__ import annotations

import tempfile

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline_code.beam.io import ReadEventLog, ReadWarehouseSnapshot
from pipeline_code.beam.transforms import (
    DEAD_LETTERS,
    USER_FEATURES,
    BuildFeatures,
    DeduplicateEvents,
    EnrichWithHistory,
    ParseEvents,
    ShardByUser,
    WriteToWarehouse,
)
from pipeline_code.core.settings import ProcessingSettings
from pipeline_code.local.warehouse import LocalWarehouseSink


class ProcessingOptions(PipelineOptions):
    """Flags every engine's processing shares (each has a default)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument("--shards", type=int, default=8, help="Hash shards for keyed work.")
        parser.add_argument(
            "--window_minutes", type=int, default=60, help="Item popularity window (event time)."
        )
        parser.add_argument(
            "--allowed_lateness_minutes",
            type=int,
            default=24 * 60,
            help="How late an event may be and still update its popularity window.",
        )
        parser.add_argument(
            "--session_gap_minutes",
            type=int,
            default=30,
            help="Inactivity that ends a session the tracker did not name.",
        )


class ChainOptions(ProcessingOptions):
    """Flags of the local pipeline, beyond ``ProcessingOptions``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        # Beam collects the flags of every options class; each adds only its own.
        parser.add_argument(
            "--event_log_dir", default=".dataflow/warehouse.eventlog", help="Local event log to read."
        )
        parser.add_argument("--warehouse", default=".dataflow/warehouse.duckdb", help="DuckDB file to load.")
        parser.add_argument(
            "--staging_dir", default=None, help="Where staged files go (default: a temp dir)."
        )
        parser.add_argument("--chunk_bytes", type=int, default=1 << 20, help="Bytes of log per input batch.")


def settings_from_options(opts: PipelineOptions) -> ProcessingSettings:
    """The ``ProcessingOptions`` flags as the engine-free settings."""
    o = opts.view_as(ProcessingOptions)
    return ProcessingSettings(o.shards, o.window_minutes, o.allowed_lateness_minutes, o.session_gap_minutes)


def local_runner(streaming: bool = False):
    """The runner for this machine. Beam's default DirectRunner tries the
    Prism runner first, which downloads a binary at run time; pin the
    in-process runners instead."""
    return BundleBasedDirectRunner() if streaming else FnApiRunner()


def build_chain(raw, known_ids, history, sink, settings: ProcessingSettings):
    """Compose the stages. Returns the commit's PCollection of ``LoadResult``."""
    parsed = raw | "ParseEvents" >> ParseEvents()
    grouped = parsed.events | "ShardByUser" >> ShardByUser(known_ids, history, settings.shards)
    unique = grouped | "DeduplicateEvents" >> DeduplicateEvents()
    enriched = unique | "EnrichWithHistory" >> EnrichWithHistory(settings.session_gap_minutes * 60_000_000)
    tables = enriched.events | "BuildFeatures" >> BuildFeatures(
        settings.window_minutes * 60_000_000, settings.allowed_lateness_minutes * 60
    )
    tables["events"] = enriched.events
    tables[USER_FEATURES] = enriched[USER_FEATURES]
    tables[DEAD_LETTERS] = parsed[DEAD_LETTERS]
    return tables | "WriteToWarehouse" >> WriteToWarehouse(sink)


def local_pipeline(
    log_dir: str,
    log_id: str,
    warehouse: str,
    from_offset: int,
    to_offset: int,
    snapshot: tuple[str, str],
    staging_dir: str,
    settings: ProcessingSettings,
    chunk_bytes: int = 1 << 20,
    options: PipelineOptions | None = None,
) -> beam.Pipeline:
    """The local chain's pipeline: event log -> stages -> DuckDB."""
    opts = options or PipelineOptions()
    runner = opts.view_as(StandardOptions).runner or local_runner()
    p = beam.Pipeline(runner=runner, options=opts)
    raw = p | "ReadEventLog" >> ReadEventLog(log_dir, from_offset, to_offset, chunk_bytes)
    known_ids, history = p | "ReadWarehouseSnapshot" >> ReadWarehouseSnapshot(*snapshot, settings.shards)
    sink = LocalWarehouseSink(warehouse, staging_dir, log_id, from_offset, to_offset)
    build_chain(raw, known_ids, history, sink, settings)
    return p


def run(argv: list[str] | None = None):
    """Process everything the log holds past the warehouse's checkpoint."""
    from pipeline_code.local.chain import process_log

    opts = ChainOptions(argv)
    staging = opts.staging_dir or tempfile.mkdtemp(prefix="dataflow-staging-")
    return process_log(
        opts.event_log_dir,
        opts.warehouse,
        settings_from_options(opts),
        staging_dir=staging,
        chunk_bytes=opts.chunk_bytes,
        options=opts,
    )
