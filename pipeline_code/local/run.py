"""The local run: ingest files into the event log, process, load, report.

    python -m pipeline_code.local --event_log_dir .dataflow/warehouse.eventlog \\
        --warehouse .dataflow/warehouse.duckdb

``process_files`` is what ``dataflow process`` runs: append the input's
lines to the durable event log, then ``process_log`` runs the Beam pipeline
over everything past the warehouse's checkpoint and commits it, in runs of
``RUN_BYTES`` of log; a long run is shared by worker processes, each running
the pipeline for the users it owns (the lines routed to it by the run's key
pass here), and committed once here. The summary
comes from the pipeline's metrics and is checked against the conservation
rule: read = stored + duplicates skipped + dead-lettered.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import gc
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline_code import host
from pipeline_code.beam.pipeline import ProcessingOptions, local_pipeline, settings_from_options
from pipeline_code.beam.transforms import Part
from pipeline_code.core.parse import (
    MAX_ROUTED_SHARDS,
    CandidateKeys,
    LineRoutes,
    candidate_keys,
    joined_keys,
    routed_keys,
)
from pipeline_code.core.ports import RunSummary
from pipeline_code.host import ProcessingSettings
from pipeline_code.streams.eventlog import EventLog, EventLogError, iter_input_lines, line_payload
from pipeline_code.warehouses.duckdb import (
    LocalWarehouseSink,
    StreamedLoad,
    Warehouse,
    WarehouseError,
    check_run,
    one_line_error,
    root_cause,
    run_staging,
)

INGEST_BATCH = 50_000
"""Lines appended (and fsynced) at a time; a crash re-appends at most one batch's worth."""
INPUT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")


class InputError(Exception):
    """An input path cannot be read."""


def input_files(path: str | Path) -> list[Path]:
    """The files an input names: the file itself, or a directory's
    newline-delimited JSON files in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(INPUT_SUFFIXES))
        if not files:
            raise InputError(f"input directory {p} has no {', '.join(INPUT_SUFFIXES)} files")
        return files
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if not p.is_file():
        raise InputError(f"input {p} is not a file or directory")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"input {p} cannot be read: {exc.strerror}") from exc
    return [p]


def file_digest(path: Path) -> str:
    """The input's content digest: the same file under another name is the same input."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ingest_files(
    log: EventLog,
    files: Iterable[Path],
    on_progress: Callable[[int], None] | None = None,
    on_append: Callable[[int], None] | None = None,
) -> int:
    """Append every line of the files to the log; returns lines appended.
    ``on_append`` hears the log's end (a record boundary) after each append.

    A file is known by its content digest: one ingested before is not
    appended again, and one a crash interrupted resumes exactly after the
    lines that reached the log (the log records each append before it
    writes, and after: what of a cut append landed is read back).
    """
    total = 0
    for f in files:
        try:
            digest = file_digest(f)
        except OSError as exc:
            raise InputError(f"input {f} cannot be read: {exc.strerror or exc}") from exc
        state = log.ingest_state(digest) or {"lines": 0, "done": False, "pending": None}
        if state["done"]:
            continue
        done = state["lines"]
        try:
            lines = iter_input_lines(f)
            collections.deque(itertools.islice(lines, done), maxlen=0)  # appended before
            if state["pending"]:
                offset, count = state["pending"]
                cut = list(itertools.islice(lines, count))
                landed = log.landed(offset, cut)
                done += landed
                log.record_ingest(digest, f.name, done, done=False)
                lines = itertools.chain(cut[landed:], lines)
            while batch := list(itertools.islice(lines, INGEST_BATCH)):
                total += _append(log, batch, on_progress, digest, f.name, done)
                done += len(batch)
                log.record_ingest(digest, f.name, done, done=False)
                if on_append is not None:
                    on_append(log.end_offset())
        except OSError as exc:
            raise InputError(f"input {f} cannot be read: {exc.strerror or exc}") from exc
        log.record_ingest(digest, f.name, done, done=True)
    return total


def _append(
    log: EventLog,
    batch: list[bytes],
    on_progress: Callable[[int], None] | None,
    digest: str,
    name: str,
    done: int,
) -> int:
    """Append a batch of input lines, recording it as pending first; a
    failing write is the log's error, not the input's."""

    def pending(start: int) -> None:
        log.record_ingest(digest, name, done, done=False, pending=(start, len(batch)))

    try:
        appended = log.append(batch, before_write=pending)[1]
    except OSError as exc:
        raise EventLogError(f"event log {log.path} cannot be written: {exc.strerror or exc}") from exc
    if on_progress:
        on_progress(len(batch))
    return appended


def _counter(result, name: str) -> int:
    found = result.metrics().query(
        MetricsFilter().with_namespace(host.BEAM_METRICS_NAMESPACE).with_name(name)
    )
    return sum(c.committed or 0 for c in found["counters"])


RUN_BYTES = 96 << 20
"""Log bytes one committed run reads (about 165,000 store events; a run ends
at the first record boundary past it): a longer range is processed as
several runs, each committed with its checkpoint, so memory grows with this
and not with the input. Each run costs about 0.35 CPU s of its own (a Beam
pipeline per worker, a snapshot, a commit), which larger runs share out; 2M
events on 2 cores: 43.5 s and 1,176 MB of summed peak RSS in 64 MB runs,
41.5 s and 1,272 MB in 96 MB runs, 39.7 s and 1,410 MB in 128 MB runs,
too near the 1.5 GB bound. A last run shorter than ``1 / TAIL_RUNS`` of
this joins the one before it (``run_ranges``)."""

TAIL_RUNS = 4
"""A last run shorter than ``RUN_BYTES / TAIL_RUNS`` joins the run before
it: its fixed work would cost more than its events (200k store events,
96 + 20 MB: 3.49-3.63 s in two runs, 3.27-3.33 s in one), and the one run
it makes is at most a quarter longer than the others."""

STREAM_POLL_S = 0.02
"""How often the committing process looks for events files the parts have staged (``StreamedLoad``)."""

SHARDED_MIN_BYTES = 8 << 20
"""A run this long or longer is shared by several processes when the
machine has the cores (``default_workers``); a shorter one runs in this
process, where starting workers would cost more than they save (two
workers on 2 cores: 4 MB of store events took as long as one process, 8 MB
1.29-1.44 s against 1.48-1.81 s, 16 MB 1.84-1.96 s against 2.29-2.62 s)."""

MAX_WORKERS = 4
"""Each worker reads the run's every line (to take its own by their routes,
``core.parse.routed_keys``); past a few workers that repeated share, and the
memory each worker holds, outweigh the share they split."""


def default_workers() -> int:
    """Processes a long run is shared by: one per core this process may use,
    up to ``MAX_WORKERS``, on Linux; one elsewhere, where workers cannot be
    forked safely and each spawned one would import Beam again (``workers``
    given still shares runs there)."""
    if sys.platform != "linux":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """In a worker: be killed when the process that forked it dies (Linux),
    so a ``dataflow process`` killed outright leaves no worker staging into
    a folder the next run removes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # no prctl here: an orphan finishes its part and exits
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _start_worker(parent: int) -> None:
    """A worker's set-up: it dies with ``parent`` (``_die_with``), and Arrow
    allocates from the C library's allocator, not pyarrow's default
    (mimalloc), which keeps the memory a shard's Arrow tables freed: 2M
    events took 1,394 MB of summed peak RSS with mimalloc in the workers,
    1,285 MB with the system allocator, in 61.6 and 61.1 s."""
    _die_with(parent)
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def _refuse_runner_workers(options: PipelineOptions | None) -> None:
    """A local run uses more cores through ``workers``, not through the
    runner's own: its threads or processes carry every batch through its data
    plane (13.45 s against 15.08 s with one, on 200k events), and one run in
    its multi-threading mode committed 62 fewer events than it read."""
    if options is None:
        return
    direct = options.view_as(DirectOptions)
    if direct.direct_num_workers != 1:
        raise ValueError(
            f"--direct_num_workers must be 1 for a local run, got {direct.direct_num_workers}: "
            "share runs between processes with workers (dataflow process --workers) instead"
        )


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """Processes forked now (on Linux), before the run opens anything: they
    start with the imports this process has (Beam, pyarrow, DuckDB) at no
    cost, hold none of its files or connections, and carry no script to
    import again (as spawned processes must, each paying Beam's import)."""
    pool = ProcessPoolExecutor(
        workers,
        # macOS's system libraries are not safe to fork: spawn there (its default).
        mp_context=multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    pool.submit(int).result()  # a fork pool starts all its processes at the first task
    return pool


def process_log(
    log_dir: str | Path,
    warehouse: str | Path,
    settings: ProcessingSettings | None = None,
    staging_dir: str | None = None,
    chunk_bytes: int = 1 << 20,
    options: PipelineOptions | None = None,
    run_bytes: int = RUN_BYTES,
    on_run: Callable[[RunSummary], None] | None = None,
    workers: int | None = None,
    pool: ProcessPoolExecutor | None = None,
    early: _EarlyKeys | None = None,
) -> RunSummary:
    """Run the pipeline over the log past the checkpoint and commit it: in
    runs of about ``run_bytes`` of log, each with its own commit and
    checkpoint (a stop between two loses nothing: the next run resumes at
    the checkpoint). ``on_run`` hears of each run once it is committed.
    Returns the runs' summary, summed.

    ``workers``: processes each run is shared by, by user shard
    (``build_graph``'s ``part``), with one commit per run made here while
    the next run's parts work (``_process_overlapped``). By
    default ``default_workers()`` for runs of ``SHARDED_MIN_BYTES`` or more
    and one process for shorter ones (this one, or one of the workers when
    a longer run has started them); a number given is used for every run.
    ``pool``: those processes (``workers`` or ``default_workers()`` of them),
    started already and left running; ``early``: the first runs' keys, read
    by them while the inputs were ingested (``_EarlyKeys``)."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    _refuse_runner_workers(options)
    settings = settings or ProcessingSettings()
    log = EventLog(log_dir)
    started = time.time()
    with Warehouse(warehouse) as wh:
        checkpoint = wh.checkpoint(log.log_id)
    start, end = log.unread_range(checkpoint)
    runs = []
    slices = [
        (lo, hi, workers or (default_workers() if hi - lo >= SHARDED_MIN_BYTES else 1))
        for lo, hi in run_ranges(log, start, end, run_bytes)
    ]
    with contextlib.ExitStack() as stack:
        most = max((n for _, _, n in slices), default=1)
        if most == 1:
            pool = None
        elif pool is None:
            pool = stack.enter_context(_start_pool(most))
        jobs = [
            (_Run(str(log.path), log.log_id, str(warehouse), lo, hi, settings, chunk_bytes, options), n)
            for lo, hi, n in slices
        ]
        if pool is not None:
            runs = _process_overlapped(log, jobs, staging_dir, pool, on_run, early)
        else:
            for job, _ in jobs:
                runs.append(_process_range(log, job, staging_dir))
                if on_run is not None:
                    on_run(runs[-1])
    return RunSummary(
        run_id=runs[-1].run_id,
        log_id=log.log_id,
        from_offset=start,
        to_offset=end,
        events_read=sum(r.events_read for r in runs),
        events_stored=sum(r.events_stored for r in runs),
        duplicates_skipped=sum(r.duplicates_skipped for r in runs),
        dead_lettered=sum(r.dead_lettered for r in runs),
        started_at=started,
        seconds=time.time() - started,
        runs=len(runs),
    )


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Python's cyclic collector rescans every live record each time
    allocations pass its threshold; a run allocates millions of short-lived
    objects and makes no cycles of its own, so it runs with a larger
    threshold (about 13% faster here) and collects once after. What lived
    before the run (Beam's modules, mostly) is frozen out of that collection,
    which then scans only what the run allocated."""
    before = gc.get_threshold()
    # Unfreezing thaws every frozen object: freeze only if nobody else has.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.collect()
        if freeze:
            gc.unfreeze()


@dataclass
class _Run:
    """What a run's pipeline needs, picklable for the processes that share it."""

    log_dir: str
    log_id: str
    warehouse: str
    from_offset: int
    to_offset: int
    settings: ProcessingSettings
    chunk_bytes: int
    options: PipelineOptions | None
    snapshot: tuple[str, str] = ("", "")
    stage: str = ""
    run: dict = field(default_factory=dict)
    repeated: frozenset[str] = frozenset()
    """The run's event ids on more than one line (``CandidateKeys``)."""
    line_shards: bytes = b""
    disputed: tuple[int, ...] = ()
    """The run's routes (``Part``): each line's user shard, and the lines whose id is contested."""

    def part(self, index: int, count: int) -> Part:
        return Part(index, count, self.repeated, self.line_shards, self.disputed)

    def pipeline(self, part: Part | None = None, manifest: str | None = None):
        return local_pipeline(
            self.log_dir,
            self.log_id,
            self.warehouse,
            self.from_offset,
            self.to_offset,
            self.snapshot,
            self.stage,
            self.settings,
            self.chunk_bytes,
            self.options,
            self.run,
            part,
            manifest,
        )


def run_pipeline(pipeline, warehouse: str | Path):
    """Run a local pipeline to the end; a failure is raised as its real
    cause, in one line (``one_line_error``)."""
    try:
        with _fewer_collections():
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as exc:
        # Beam wraps the commit's error in its own: say the real cause, in one line.
        if root_cause(exc) is exc:
            raise
        raise one_line_error(exc, warehouse) from exc
    return result


def _counts(result) -> dict[str, int]:
    return {
        "events_read": _counter(result, "events_read"),
        "events_stored": _counter(result, "events_stored"),
        "duplicates_skipped": _counter(result, "duplicates_skipped") + _counter(result, "duplicates_at_load"),
        "dead_lettered": _counter(result, "dead_lettered"),
    }


def _run_part(job: _Run, index: int, count: int) -> tuple[dict[str, list[str]], dict[str, int]]:
    """In a worker: one part of a sharded run, staged, not committed.
    Returns the staged files by table and the part's counts."""
    manifest = Path(job.stage) / f"part-{index}-of-{count}.json"
    part = job.part(index, count)
    result = run_pipeline(job.pipeline(part, str(manifest)), job.warehouse)
    return json.loads(manifest.read_text()), _counts(result)


def _results(job: _Run, futures: list[Future]) -> list:
    """The results of a run's tasks in the pool, once every one has ended."""
    concurrent.futures.wait(futures)
    try:
        return [f.result() for f in futures]
    except BrokenProcessPool as exc:
        raise WarehouseError(
            f"warehouse {job.warehouse}: the run failed, nothing was stored: a worker process died "
            "(killed, or out of memory); run it again, with fewer --workers if memory is short"
        ) from exc


def _staged_parts(
    job: _Run, futures: list[Future], load: StreamedLoad | None = None
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Wait for every part of a sharded run: the files they staged, by table,
    and their counts, summed. Each line is counted by the part that owns it.
    With the run's ``load``, the events files are added to it as they are
    staged, while the parts work."""
    if load is not None:
        added: set[str] = set()
        folder = Path(job.stage) / "events"
        while concurrent.futures.wait(futures, timeout=STREAM_POLL_S).not_done:
            staged = {str(p) for p in folder.glob("*.parquet")} - added
            load.add("events", sorted(staged))
            added |= staged
    # Every part stops before any failure is raised: none may still be
    # staging when the run's staging folder is removed.
    parts = _results(job, futures)
    files: dict[str, list[str]] = {}
    for staged, _ in parts:
        for table, paths in staged.items():
            files.setdefault(table, []).extend(paths)
    totals = collections.Counter[str]()
    for _, counts in parts:
        totals.update(counts)
    return files, dict(totals)


def _commit_parts(
    job: _Run, files: dict[str, list[str]], counts: dict[str, int], load: StreamedLoad | None = None
) -> dict[str, int]:
    """One commit of everything a sharded run's parts staged (finishing
    ``load``, begun while they worked, if given): the run's counts."""
    if load is not None:
        loaded = load.finish(files, job.log_id, job.from_offset, job.to_offset, job.run)
    else:
        where = (job.log_id, job.from_offset, job.to_offset, job.run)
        loaded = LocalWarehouseSink(job.warehouse, job.stage, *where).commit(files)
    return {
        "events_read": counts["events_read"],
        "events_stored": loaded.events_stored,
        "duplicates_skipped": counts["duplicates_skipped"] + loaded.duplicates_at_load,
        "dead_lettered": counts["dead_lettered"],
    }


def _prepare(
    log: EventLog,
    job: _Run,
    stage: Path,
    run_id: str,
    started: float,
    keys: tuple[CandidateKeys, LineRoutes | None],
    pending: dict[str, list[str]] | None = None,
    warehouse: Warehouse | None = None,
) -> None:
    """Give ``job`` its snapshot (of only what its lines can touch: their ids
    and users), staging folder, run record and routes. ``pending``: the
    staged files of the run before it, to be committed first (``export_snapshot``).
    ``warehouse``: a connection of this process's to it (else one is opened)."""
    found, routes = keys
    with contextlib.ExitStack() as stack:
        wh = warehouse or stack.enter_context(Warehouse(job.warehouse))
        job.snapshot = wh.export_snapshot(stage / "snapshot", found, pending)
        # The pending run's commit is the one commit allowed in between.
        generation = wh.generation() + (pending is not None)
    job.repeated = frozenset(found.repeated)
    if routes is not None:
        known = pq.read_table(job.snapshot[0], columns=["event_id"]).column(0).to_pylist()
        job.line_shards = routes.shards
        job.disputed = routes.contested(found.repeated.union(known))
    job.stage = str(stage)
    job.run = {
        "run_id": run_id,
        "started_at": started,
        "events_read": found.lines,  # the key pass read every line: no second pass to count them
        "generation": generation,
    }


def run_ranges(log: EventLog, start: int, end: int, run_bytes: int) -> list[tuple[int, int]]:
    """The runs ``[start, end)`` of the log is processed in: its
    ``EventLog.slices`` of ``run_bytes``, a last one shorter than
    ``run_bytes / TAIL_RUNS`` joined to the one before (``TAIL_RUNS``)."""
    ranges = log.slices(start, end, run_bytes)
    if len(ranges) > 1 and (ranges[-1][1] - ranges[-1][0]) * TAIL_RUNS < run_bytes:
        ranges[-2:] = [(ranges[-2][0], ranges[-1][1])]
    return ranges


def _keys_of(log: EventLog, job: _Run) -> tuple[CandidateKeys, LineRoutes | None]:
    """The run's candidate keys and, when its shards fit, its lines' routes."""
    return _keys_in(log, job.from_offset, job.to_offset, job.chunk_bytes, job.settings.shards)


def _keys_in(
    log: EventLog | str, start: int, end: int, chunk_bytes: int, shards: int
) -> tuple[CandidateKeys, LineRoutes | None]:
    if isinstance(log, str):
        log = EventLog(log)  # in a worker
    ranges = log.ranges(start, end, chunk_bytes)
    if shards > MAX_ROUTED_SHARDS:
        return candidate_keys(raw for lo, hi in ranges for raw in log.read_range(lo, hi)), None
    payloads = (line_payload(line) for lo, hi in ranges for line in log.read_lines(lo, hi)[1])
    return routed_keys(payloads, shards)


def _keys_shared(
    log: EventLog, job: _Run, pool: ProcessPoolExecutor, workers: int
) -> tuple[CandidateKeys, LineRoutes | None]:
    """``_keys_of``, read by ``workers`` of the pool, a record-aligned share
    each: for a run with no earlier run's parts to overlap (the first), whose
    key pass would otherwise hold every process but this one idle."""
    share = max(1, -(-(job.to_offset - job.from_offset) // workers))  # an empty run: one empty share
    futures = [
        pool.submit(_keys_in, str(log.path), lo, hi, job.chunk_bytes, job.settings.shards)
        for lo, hi in log.slices(job.from_offset, job.to_offset, share)
    ]
    return joined_keys(_results(job, futures))


class _EarlyKeys:
    """The first runs' key passes, read by the pool while the inputs are
    still being appended to the log (``ingest_files``' ``on_append``), a
    share per append: ingesting holds one process, and the pool would
    otherwise wait for it to end (the first run's keys) or share its cores
    with the parent reading them (the second's, while the first run's parts
    work). On 200k store events both passes are done by the time the ingest
    is. A run's end is known once the log passes ``run_bytes`` from its start
    (``EventLog.slices``' cut). Only ``runs`` runs are read ahead, so the
    parent holds no more keys than two runs' (about 40 MB for 96 MB runs)."""

    def __init__(
        self,
        log: EventLog,
        pool: ProcessPoolExecutor,
        start: int,
        run_bytes: int,
        shards: int,
        chunk_bytes: int = 1 << 20,
        runs: int = 2,
    ) -> None:
        self.log, self.pool, self.shards, self.chunk_bytes = log, pool, shards, chunk_bytes
        self.run_bytes, self.runs = run_bytes, runs
        self.starts = [start]  # of each run read ahead; a run's end is the next one's start
        self.read_to = start
        self.futures: list[list[Future]] = [[]]
        self.broken = False

    def appended(self, end: int) -> None:
        while not self.broken and len(self.starts) <= self.runs and self.read_to < end:
            limit = self.starts[-1] + self.run_bytes
            cut = self.log.record_start(limit) if end >= limit else end
            self._read(cut)
            if end >= limit:  # the run ends at the cut: what follows is the next one's
                self.starts.append(cut)
                self.futures.append([])

    def _read(self, end: int) -> None:
        if end <= self.read_to:
            return
        share = (str(self.log.path), self.read_to, end, self.chunk_bytes, self.shards)
        try:
            self.futures[-1].append(self.pool.submit(_keys_in, *share))
        except BrokenProcessPool:
            self.broken = True  # a dead worker: each run reads its keys as usual, and says so
            return
        self.read_to = end

    def keys(self, job: _Run) -> tuple[CandidateKeys, LineRoutes | None] | None:
        """The keys of ``job``, if it is a run they were read ahead for, or
        runs (a last run joins the one before, ``run_ranges``), with the
        same shards; else None."""
        if self.broken or job.settings.shards != self.shards or job.from_offset not in self.starts:
            return None
        first = self.starts.index(job.from_offset)
        for run in range(first, self.runs):
            end = self.starts[run + 1] if run + 1 < len(self.starts) else None
            if end is None or end >= job.to_offset:
                break
        else:
            return None  # the job goes on past what was read ahead
        if end is None:  # still read ahead when the ingest ended
            if self.read_to > job.to_offset:
                return None
            self._read(job.to_offset)  # what was appended after the last share
            if self.broken:
                return None
        elif end != job.to_offset:
            return None
        return joined_keys(_results(job, [f for r in range(first, run + 1) for f in self.futures[r]]))


def _summary(
    log: EventLog, job: _Run, started: float, counts: dict[str, int], warehouse: Warehouse | None = None
) -> RunSummary:
    """The run's summary, once committed, checked against what the warehouse
    recorded (through ``warehouse``, a connection of this process's, if given)."""
    summary = RunSummary(
        run_id=job.run["run_id"],
        log_id=log.log_id,
        from_offset=job.from_offset,
        to_offset=job.to_offset,
        started_at=started,
        seconds=time.time() - started,
        **counts,
    )
    check_run(warehouse or job.warehouse, summary)
    return summary


def _process_range(log: EventLog, job: _Run, staging_dir: str | None) -> RunSummary:
    """One committed run over ``[job.from_offset, job.to_offset)`` of the
    log, in this process."""
    started = time.time()
    run_id = uuid.uuid4().hex
    with run_staging(job.warehouse, run_id, staging_dir) as stage:
        _prepare(log, job, stage, run_id, started, _keys_of(log, job))
        whole = job.part(0, 1)
        return _summary(log, job, started, _counts(run_pipeline(job.pipeline(whole), job.warehouse)))


@dataclass
class _Started:
    """A sharded run whose parts are at work in the pool."""

    job: _Run
    started: float
    futures: list[Future]
    staging: contextlib.ExitStack
    """Holds the run's staging folder; closing it waits for the parts, then removes it."""
    load: StreamedLoad | None = None
    """Its commit, begun while its parts work."""


def _process_overlapped(
    log: EventLog,
    jobs: list[tuple[_Run, int]],
    staging_dir: str | None,
    pool: ProcessPoolExecutor,
    on_run: Callable[[RunSummary], None] | None,
    early: _EarlyKeys | None = None,
) -> list[RunSummary]:
    """Committed runs, each shared by its number of the pool's processes,
    with the parent's serial work overlapped with the workers': while one
    run's parts work, the parent reads the next run's keys; once they have
    staged, the next run's parts start (on a snapshot that counts what the
    run staged as stored, ``export_snapshot``'s ``pending``), and the run is
    committed while they work. Commits stay in log order, one per run; if
    one fails, the runs after it store nothing.

    Each run's commit begins as its parts start: its events are inserted as
    they are staged (``StreamedLoad``), on the core the parts leave this
    process, and the commit ends once they have all staged. So this process
    holds the warehouse open from a run's start to its commit
    (``Warehouse.cursor`` for the next run's snapshot, which must not see
    the commit still open), and opens it afresh for each run: what DuckDB
    keeps of an open file (the events key index, cached blocks) grew this
    process by 150 MB over 2M events."""
    summaries: list[RunSummary] = []
    with contextlib.ExitStack() as everything:
        wh: Warehouse | None = None
        everything.callback(lambda: wh is not None and wh.close())
        previous: _Started | None = None
        for job, workers in [*jobs, (None, 0)]:
            current = None
            if job is not None:
                started, run_id = time.time(), uuid.uuid4().hex
                staging = everything.enter_context(contextlib.ExitStack())
                stage = staging.enter_context(run_staging(job.warehouse, run_id, staging_dir))
                current = _Started(job, started, [], staging)
                # Registered after the folder: unwinding waits for the parts before removing it.
                staging.callback(concurrent.futures.wait, current.futures)
                # Read ahead while the inputs were ingested (``early``), or
                # while the previous run's parts work; the first run's, by the pool.
                keys = early.keys(job) if early is not None else None
                if keys is None and previous is not None:
                    keys = _keys_of(log, job)
                elif keys is None:
                    keys = _keys_shared(log, job, pool, workers)
            if previous is not None:
                files, counts = _staged_parts(previous.job, previous.futures, previous.load)
            if current is not None:
                pending = files if previous is not None else None
                wh = wh or Warehouse(current.job.warehouse)
                with wh.cursor() as snapshot:
                    _prepare(log, current.job, stage, run_id, started, keys, pending, snapshot)
                current.futures.extend(pool.submit(_run_part, job, i, workers) for i in range(workers))
            if previous is not None:
                committed = _commit_parts(previous.job, files, counts, previous.load)
                summaries.append(_summary(log, previous.job, previous.started, committed, wh))
                previous.staging.close()
                if on_run is not None:
                    on_run(summaries[-1])
            if current is not None:
                if previous is not None:  # committed: open afresh for this run
                    wh.close()
                    wh = Warehouse(current.job.warehouse)
                current.load = wh.begin_load()
                # Rolled back if the run fails before its commit ends.
                current.staging.callback(current.load.abort)
            previous = current
    return summaries


def default_log_dir(warehouse: str | Path) -> Path:
    """The event log that belongs to a warehouse: ``x.duckdb`` -> ``x.eventlog/``."""
    w = Path(warehouse)
    return w.with_name(w.stem + ".eventlog")


def process_files(
    inputs: Iterable[str | Path],
    warehouse: str | Path,
    log_dir: str | Path | None = None,
    settings: ProcessingSettings | None = None,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "beam",
    run_bytes: int | None = None,
    on_run: Callable[[RunSummary], None] | None = None,
    workers: int | None = None,
) -> RunSummary:
    """``dataflow process``: ingest the inputs into the log, then process
    with ``engine``: ``beam`` (the local runner, in runs of ``run_bytes`` of
    log, ``RUN_BYTES`` by default, each reported to ``on_run``, shared by
    ``workers`` processes as ``process_log`` says) or ``spark`` (the Spark
    adapter on local PySpark; the ``spark`` extra and Java 17+)."""
    if engine not in ("beam", "spark"):
        raise ValueError(f"engine must be 'beam' or 'spark', got {engine!r}")
    files = [f for i in inputs for f in input_files(i)]
    log = EventLog(log_dir or default_log_dir(warehouse))
    # Open the warehouse before ingesting, so a bad path fails before the log grows.
    with Warehouse(warehouse) as wh:
        checkpoint = wh.checkpoint(log.log_id)
    if engine == "spark":
        from pipeline_code.spark.local import process_log_spark, spark_session

        spark = spark_session()  # before ingesting: a missing Java fails first
        ingest_files(log, files, on_progress)
        return process_log_spark(log.path, warehouse, settings, spark=spark)
    settings = settings or ProcessingSettings()
    run_bytes = run_bytes or RUN_BYTES
    with contextlib.ExitStack() as stack:
        # Workers forked before the inputs are read, to read the first run's
        # keys while they are appended, when the inputs alone fill a shared run.
        pool = early = None
        n = workers or default_workers()
        if n > 1 and sum(_size(f) for f in files) >= SHARDED_MIN_BYTES:
            pool = stack.enter_context(_start_pool(n))
            with contextlib.suppress(EventLogError):  # process_log says why, after the ingest
                start, _ = log.unread_range(checkpoint)
                early = _EarlyKeys(log, pool, start, run_bytes, settings.shards)
        ingest_files(log, files, on_progress, early.appended if early is not None else None)
        return process_log(
            log.path,
            warehouse,
            settings,
            run_bytes=run_bytes,
            on_run=on_run,
            workers=workers,
            pool=pool,
            early=early,
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # ingest_files names the input it cannot read


def run(argv: list[str] | None = None) -> RunSummary:
    """``python -m pipeline_code.local``: process everything the log holds
    past the warehouse's checkpoint, with ``ProcessingOptions`` flags."""
    opts = ProcessingOptions(argv)
    flags = opts.view_as(ProcessingOptions)
    return process_log(
        flags.event_log_dir,
        flags.warehouse,
        settings_from_options(opts),
        staging_dir=flags.staging_dir,
        chunk_bytes=flags.chunk_bytes,
        options=opts,
    )
