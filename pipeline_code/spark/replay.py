"""Replays on Spark: what the Glue and Synapse batch jobs run.

    --replay archive --replay_from 2026-11-01 --replay_to 2026-11-02
    --replay dead_letters [--replay_stage validate] [--replay_since 2026-11-01]

A replay is one batch through ``process_micro_batch`` (the streaming jobs'
adapter), committed with a ``Replay`` so the warehouse keeps its promises:
an event already stored is a duplicate and reaches no derived table; a dead
letter is inserted only where no row has the same arrival and bytes; a
dead-letter re-run removes the rows it re-ran (those dead-lettered at or
before its snapshot, of its stage and since) in the same transaction, so an
input that now passes leaves ``dead_letters`` and one that still fails keeps
one row, with the new reason. Run twice, a replay changes nothing.

The input is an archive range (``pipeline_code.spark.archive``: the hour
folders of the range, records filtered by arrival) or the dead letters the
lookup returns for the re-run (``ReplayLookup.dead_letters``: Redshift's and
Synapse's read them with the same WHERE their commit deletes with).
Nothing runs before ``--replay`` names what to do, and a failed run leaves
the warehouse as it was (one transaction): run it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from pipeline_code.core.parse import now_us
from pipeline_code.core.ports import Replay, ReplayLookup, Sink
from pipeline_code.host import ProcessingSettings, ReplayRequest
from pipeline_code.spark.adapter import BatchResult, process_micro_batch
from pipeline_code.spark.archive import Kind, archive_paths, archive_raws

log = logging.getLogger("dataflow.replay")

ROWS_PER_PARTITION = 2000
"""Dead letters per Spark partition of a re-run (they are read on the driver)."""


def replay_input(
    spark,
    request: ReplayRequest,
    kind: Kind,
    archive_uri: str,
    lookup: ReplayLookup,
    snapshot_us: int | None = None,
):
    """``(RDD of RawEvent tuples, Replay)`` for the request.

    A dead-letter re-run takes its snapshot now (or at ``snapshot_us``): the
    rows it reads and the rows its commit deletes are the same, and the rows
    it writes are newer than the snapshot."""
    if request.mode == "archive":
        paths = archive_paths(archive_uri, kind, request.start_us, request.end_us)  # type: ignore[arg-type]
        return archive_raws(spark, paths, kind, request.start_us, request.end_us), Replay()  # type: ignore[arg-type]
    replay = Replay(
        rerun_before_us=now_us() if snapshot_us is None else snapshot_us,
        stage=request.stage,
        since_us=request.since_us,
    )
    lookup.open()
    try:
        raws = [tuple(r) for r in lookup.dead_letters(replay)]
    finally:
        lookup.close()
    slices = max(1, min(64, len(raws) // ROWS_PER_PARTITION + 1))
    return spark.sparkContext.parallelize(raws, slices), replay


def run_replay(
    spark,
    request: ReplayRequest,
    *,
    job_name: str,
    kind: Kind,
    archive_uri: str,
    settings: ProcessingSettings,
    make_lookup: Callable[[], ReplayLookup],
    make_sink: Callable[[str, Replay], Sink],
) -> BatchResult:
    """Run one replay and commit it; returns its counts (read = stored +
    duplicates + dead letters; on the cloud warehouses a dead letter that
    was already stored counts as a dead letter again, as it failed again)."""
    raws, replay = replay_input(spark, request, kind, archive_uri, make_lookup())
    raws = raws.persist()
    key = f"{job_name}:replay-{uuid.uuid4().hex}"
    try:
        result = process_micro_batch(raws, make_lookup(), make_sink(key, replay), settings)
    finally:
        raws.unpersist()
    log.info(
        "replay %s (%s): read %d, stored %d, duplicates %d, dead letters %d",
        key,
        request.describe(),
        result.events_read,
        result.events_stored,
        result.duplicates_skipped,
        result.dead_lettered,
    )
    return result
