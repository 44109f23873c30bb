"""The processing pipeline: its options, its graph, and runners that work offline.

``build_graph`` wires the composites of ``pipeline_code.beam.transforms``;
``local_pipeline`` puts it between the local event log and the DuckDB
warehouse. Run it through the CLI (``dataflow process``), or against an
existing event log and warehouse::

    python -m pipeline_code.local --event_log_dir .dataflow/warehouse.eventlog \\
        --warehouse .dataflow/warehouse.duckdb

The options class lives in a module (never in a ``__main__``): it pickles
the same way locally and on Dataflow (where ``save_main_session`` is on),
and is defined once, so Beam sees each flag once.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline_code import host
from pipeline_code.beam.io import LookupSnapshot, ReadEventLog, ReadPartOfRun, ReadWarehouseSnapshot
from pipeline_code.beam.transforms import (
    DEAD_LETTERS,
    USER_FEATURES,
    BuildFeatures,
    DeduplicateEvents,
    EnrichWithHistory,
    ParseEvents,
    ParseOwnShards,
    Part,
    ShardByUser,
    StageEventsAndFeatures,
    WriteToWarehouse,
)
from pipeline_code.host import ProcessingSettings
from pipeline_code.warehouses.duckdb import LocalWarehouseSink, PartSink


class ProcessingOptions(PipelineOptions):
    """Every flag of the chain's Beam pipelines, as in Beam's examples one class.

    The processing settings come from the host contract
    (``pipeline_code.host.add_arguments``: one source of names and defaults
    for every engine). Sources and sinks are chosen here too: the local event
    log and DuckDB file (``run`` in ``pipeline_code.local``), or a Pub/Sub
    subscription and a BigQuery dataset (the Dataflow job, whose Flex
    Template lists every flag but the local ones).
    """

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        host.add_arguments(parser)
        # Local batch: the event log in, the DuckDB warehouse out.
        parser.add_argument(
            "--event_log_dir", default=".dataflow/warehouse.eventlog", help="Local event log to read."
        )
        parser.add_argument("--warehouse", default=".dataflow/warehouse.duckdb", help="DuckDB file to load.")
        parser.add_argument(
            "--staging_dir", default=None, help="Where staged files go (default: a temp dir)."
        )
        parser.add_argument("--chunk_bytes", type=int, default=1 << 20, help="Bytes of log per input batch.")
        # Streaming on Dataflow: Pub/Sub in, BigQuery out (both required there).
        parser.add_argument(
            "--input_subscription",
            default=None,
            help="Pub/Sub subscription to read: projects/<project>/subscriptions/<name>.",
        )
        parser.add_argument(
            "--output_dataset", default=None, help="BigQuery dataset to write: <project>:<dataset>."
        )
        # A replay on Dataflow (the same template, in batch): what to replay, from where.
        host.add_replay_arguments(parser)
        parser.add_argument(
            "--archive_uri", default=None, help="The archive's root: gs://<bucket>/raw/ (replay archive)."
        )
        parser.add_argument(
            "--replay_staging", default=None, help="Where a replay stages rows: gs://<bucket>/<prefix>."
        )


class LocalRunOptions(PipelineOptions):
    """A local run's options: no flags, and each view made once.

    Beam asks a pipeline's options for a view of one options class or
    another (``view_as``) about 140 times a run, and each view builds an
    argparse parser of that class and parses the flags again: about 70 ms
    of a local run's 300 ms fixed cost. Views keep no state of their own
    (every value lives in the options' shared ``_all_options``, whichever
    view sets it), so handing back the view made the first time gives the
    same values, and the same writes, as a new one."""

    def __init__(self, **overrides) -> None:
        super().__init__(flags=[], **overrides)
        # Set past PipelineOptions.__setattr__, which allows only option names.
        self.__dict__["_views"] = {}

    def view_as(self, cls):
        views = self.__dict__["_views"]
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self):
        # Pickled without its views: they are remade, once each, where it is unpickled.
        state = dict(super().__getstate__())
        state["_views"] = {}
        return state


LOCAL_FLAGS = ("event_log_dir", "warehouse", "staging_dir", "chunk_bytes")
"""Flags only the local pipeline reads (the Flex Template lists every other)."""


def settings_from_options(opts: PipelineOptions) -> ProcessingSettings:
    """The processing flags as the engine-free settings."""
    return host.from_arguments(opts.view_as(ProcessingOptions))


def local_runner(streaming: bool = False):
    """The runner for this machine. Beam's default DirectRunner tries the
    Prism runner first, which downloads a binary at run time; pin the
    in-process runners instead."""
    return BundleBasedDirectRunner() if streaming else FnApiRunner()


def build_graph(
    raw,
    known_ids,
    history,
    sink,
    settings: ProcessingSettings,
    lookup=None,
    part: Part | None = None,
    columnar: bool = False,
):
    """Compose the stages. Returns the commit's PCollection of ``LoadResult``.

    ``known_ids`` and ``history`` are a snapshot of the warehouse
    (``ReadWarehouseSnapshot``); or, with a ``lookup`` (a replay on a cloud
    warehouse), both are None and the warehouse is asked about the input's
    ids and users (``LookupSnapshot``).

    ``part`` (a local run's share for one process, ``Part``; all of it in
    one process): ``raw`` is that share (``ReadPartOfRun``: each user shard
    it owns, whole, with the run's losing copies), parsed and deduplicated
    with no shuffle (``ParseOwnShards``); the parts' tables and counts add
    up to the whole run's.

    ``columnar``: the events and feature tables are built and staged as
    Arrow tables (``StageEventsAndFeatures``), for a sink whose ``stage``
    takes one (the local DuckDB sinks); otherwise as row batches
    (``BuildFeatures``), for any sink. The tables are the same."""
    if part is not None:
        parsed = raw | "ParseOwnShards" >> ParseOwnShards(history)
        grouped = parsed.events
    else:
        parsed = raw | "ParseEvents" >> ParseEvents()
        if lookup is not None:
            known_ids, history = parsed.events | "LookupSnapshot" >> LookupSnapshot(lookup, settings.shards)
        losers = parsed.events | "DeduplicateEvents" >> DeduplicateEvents(known_ids, settings.shards)
        grouped = parsed.events | "ShardByUser" >> ShardByUser(history, losers, settings.shards)
    enriched = grouped | "EnrichWithHistory" >> EnrichWithHistory(settings.session_gap_minutes * 60_000_000)
    window_us = settings.window_minutes * 60_000_000
    tables = {USER_FEATURES: enriched[USER_FEATURES], DEAD_LETTERS: parsed[DEAD_LETTERS]}
    if columnar:
        staged = enriched.events | "StageEventsAndFeatures" >> StageEventsAndFeatures(sink, window_us)
        return tables | "WriteToWarehouse" >> WriteToWarehouse(sink, staged)
    tables.update(
        enriched.events
        | "BuildFeatures" >> BuildFeatures(window_us, settings.allowed_lateness_minutes * 60, bounded=True)
    )
    tables["events"] = enriched.events
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
    run: dict | None = None,
    part: Part | None = None,
    manifest: str | None = None,
) -> beam.Pipeline:
    """The local chain's pipeline: event log -> stages -> DuckDB (``run`` is
    recorded with the commit: ``LocalWarehouseSink``).

    With ``part`` (see ``build_graph``) it reads that share of the run, each
    user shard whole (``Part(0, 1)``: the whole run, as a local run in one
    process does); without, it reads the log in chunks and shuffles, as
    Dataflow does. With ``manifest``, one process's share of a sharded run:
    it stages its rows and, instead of committing, lists the staged files
    there (``PartSink``)."""
    # No flags given: none are read from this process's command line (which
    # is the CLI's or pytest's, not Beam's), and the graph, fixed and built
    # by every run, is not type-checked again each time (about 80 ms a run).
    opts = options or LocalRunOptions(pipeline_type_check=False)
    runner = opts.view_as(StandardOptions).runner or local_runner()
    p = beam.Pipeline(runner=runner, options=opts)
    known_ids, history = p | "ReadWarehouseSnapshot" >> ReadWarehouseSnapshot(*snapshot, settings.shards)
    if part is None:
        raw = p | "ReadEventLog" >> ReadEventLog(log_dir, from_offset, to_offset, chunk_bytes)
    else:
        raw = p | "ReadPartOfRun" >> ReadPartOfRun(
            log_dir, from_offset, to_offset, part, settings.shards, known_ids, chunk_bytes
        )
    sink = LocalWarehouseSink(warehouse, staging_dir, log_id, from_offset, to_offset, run)
    if manifest is not None:
        sink = PartSink(sink, manifest)
    build_graph(raw, known_ids, history, sink, settings, part=part, columnar=True)
    return p
