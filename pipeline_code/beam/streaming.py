"""The streaming pipeline Dataflow runs: Pub/Sub in, BigQuery out.

The stages in the middle are the batch chain's (``ParseEvents``,
``BuildFeatures``) and the same pure core; what changes is how a user's
history reaches them. In batch, a snapshot of the warehouse is shuffled
next to the new events. In streaming there is no "before the run", so:

    Pub/Sub -> ReadPubSubEvents -> MicroBatch -> ParseEvents
            -> DeduplicateIds (per event-id shard: ids accepted in the last day)
            -> LookupHistory (one warehouse query per user shard and micro-batch)
            -> EnrichWithUserState (per-user state: history and recent ids)
            -> BuildFeatures -> WriteToBigQueryTables
                 \\-> dead letters (parse, validate, load) ------^

Per-user state makes one user's events sequential, so a retried event meets
its twin even before the first copy is queryable, and each micro-batch
starts from the history the previous one left. The warehouse lookup seeds
the state for users the job has not seen since it started (a new job, a
drained and replaced job, a user idle past ``state_idle_hours``).

Only Python-native IO is used (``ReadFromPubSub``, ``WriteToBigQuery`` with
streaming inserts): no cross-language transforms, so the Flex Template image
needs no Java. Run on Dataflow through the Flex Template in
``pipeline_code/dataflow/``; locally the same composites run under
``BundleBasedDirectRunner`` with ``TestStream`` (see the tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from pipeline_code.beam.pipeline import ProcessingOptions, settings_from_options
from pipeline_code.beam.transforms import (
    DEAD_LETTERS,
    EVENTS,
    NAMESPACE,
    USER_FEATURES,
    BuildFeatures,
    ParseEvents,
    ShardBatchFn,
    unpack,
)
from pipeline_code.core.history import UserHistory, enrich_user, keep_first_seen
from pipeline_code.core.parse import RawEvent, dead_letter, now_us
from pipeline_code.core.ports import WarehouseLookup, to_us
from pipeline_code.host import ProcessingSettings
from pipeline_code.streams.pubsub import pubsub_offset
from pipeline_code.tables import TABLES
from pipeline_code.warehouses import bigquery
from pipeline_code.warehouses.bigquery import BigQueryLookup

STAGE_LOAD = "load"


def to_raw_event(message) -> RawEvent:
    """A ``PubsubMessage`` -> ``RawEvent(offset, publish time in us, data)``."""
    return RawEvent(
        pubsub_offset(message.message_id or ""), to_us(message.publish_time) or now_us(), message.data
    )


class ReadPubSubEvents(beam.PTransform):
    """A Pub/Sub subscription -> ``RawEvent`` stamped with its publish time."""

    def __init__(self, subscription: str) -> None:
        super().__init__()
        self.subscription = subscription

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=self.subscription, with_attributes=True)
            | "ToRawEvent" >> beam.Map(to_raw_event)
        )


class MicroBatch(beam.PTransform):
    """``RawEvent`` -> lists of them, per ``batch_seconds`` of arrival time.
    Batches keep the per-element cost of the batch chain's stages low."""

    def __init__(self, batch_seconds: int, max_batch: int = 500) -> None:
        super().__init__()
        self.batch_seconds = batch_seconds
        self.max_batch = max_batch

    def expand(self, raws):
        return (
            raws
            | "ArrivalWindows" >> beam.WindowInto(window.FixedWindows(self.batch_seconds))
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.max_batch)
        )


class _LookupShardFn(beam.DoFn):
    """``(shard, [packed batch, ...])`` of one micro-batch -> per user
    ``(user_key, (records, stored ids among them, stored history or None))``,
    from two warehouse queries for the whole shard."""

    def __init__(self, lookup: WarehouseLookup) -> None:
        self.lookup = lookup
        self.queries = Metrics.counter(NAMESPACE, "warehouse_lookups")

    def setup(self) -> None:
        self.lookup.open()

    def teardown(self) -> None:
        self.lookup.close()

    def process(self, element):
        _, packed = element
        records = [rec for p in packed for rec in unpack(p)]
        by_user: dict[str, list[dict]] = {}
        for rec in records:
            by_user.setdefault(rec["user_key"], []).append(rec)
        days = [rec["event_date"] for rec in records]
        known = self.lookup.known_ids(sorted({r["event_id"] for r in records}), min(days), max(days))
        histories = self.lookup.histories(sorted(by_user))
        self.queries.inc(2)
        for user_key, recs in by_user.items():
            ids = sorted({r["event_id"] for r in recs} & known)
            yield user_key, (recs, ids, histories.get(user_key))


class LookupHistory(beam.PTransform):
    """Event batches of one micro-batch -> per-user work items carrying what
    the warehouse already holds for those users and ids."""

    def __init__(self, lookup: WarehouseLookup, shards: int) -> None:
        super().__init__()
        self.lookup = lookup
        self.shards = shards

    def expand(self, events):
        return (
            events
            | "KeyByUserShard" >> beam.ParDo(ShardBatchFn(self.shards))
            | "GroupByUserShard" >> beam.GroupByKey()
            | "QueryWarehouse" >> beam.ParDo(_LookupShardFn(self.lookup))
        )


_IDS = ReadModifyWriteStateSpec("ids", PickleCoder())
_IDS_STATE = beam.DoFn.StateParam(_IDS)


class _FirstIdsFn(beam.DoFn):
    """``(id shard, packed batch)`` -> the batch without ids this shard
    accepted in the last ``dedup_hours``, whoever the user, nor repeats
    within it (the first in log order wins)."""

    def __init__(self, dedup_hours: int) -> None:
        self.dedup_us = dedup_hours * 3600 * 1_000_000
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates_skipped")

    def process(self, element, ids=_IDS_STATE):
        _, packed = element
        recent: dict[str, int] = ids.read() or {}
        unique, dropped = keep_first_seen(unpack(packed), recent)
        self.duplicates.inc(dropped)
        if not unique:
            return
        now = now_us()
        recent = {i: t for i, t in recent.items() if now - t < self.dedup_us}
        recent.update((rec["event_id"], now) for rec in unique)
        ids.write(recent)
        yield unique


class DeduplicateIds(beam.PTransform):
    """Event batches -> the same without an id already accepted in the last
    ``dedup_hours``, whoever the user: the copies of an id meet in one shard
    by event id, whose state keeps the ids it let through (the warehouse
    lookup catches older ones, by id). Back in micro-batch windows after."""

    def __init__(self, shards: int, batch_seconds: int, dedup_hours: int = 24) -> None:
        super().__init__()
        self.shards = shards
        self.batch_seconds = batch_seconds
        self.dedup_hours = dedup_hours

    def expand(self, events):
        return (
            events
            | "KeyByIdShard" >> beam.ParDo(ShardBatchFn(self.shards, "event_id"))
            | "IdsGlobalWindow" >> beam.WindowInto(window.GlobalWindows())
            | "FirstIds" >> beam.ParDo(_FirstIdsFn(self.dedup_hours))
            | "BackToMicroBatches" >> beam.WindowInto(window.FixedWindows(self.batch_seconds))
        )


_HISTORY = ReadModifyWriteStateSpec("history", PickleCoder())
_SEEN = ReadModifyWriteStateSpec("seen", PickleCoder())
_IDLE = TimerSpec("idle", TimeDomain.REAL_TIME)
_HISTORY_STATE = beam.DoFn.StateParam(_HISTORY)
_SEEN_STATE = beam.DoFn.StateParam(_SEEN)
_IDLE_TIMER = beam.DoFn.TimerParam(_IDLE)


class _UserStateFn(beam.DoFn):
    """``(user_key, (records, stored ids, stored history))`` -> the user's
    first-seen events, enriched (main), and their updated history (tagged).

    State per user: the history, and the ids accepted in the last
    ``dedup_hours`` (they may not be queryable in the warehouse yet). Both
    are cleared after ``idle_hours`` without events; the warehouse lookup
    seeds them again on the user's next event.
    """

    def __init__(self, session_gap_us: int, dedup_hours: int, idle_hours: int) -> None:
        self.session_gap_us = session_gap_us
        self.dedup_us = dedup_hours * 3600 * 1_000_000
        self.idle_s = idle_hours * 3600
        self.duplicates = Metrics.counter(NAMESPACE, "duplicates_skipped")

    def process(
        self,
        element,
        history=_HISTORY_STATE,
        seen=_SEEN_STATE,
        idle=_IDLE_TIMER,
    ):
        user_key, (records, stored_ids, stored_history) = element
        row = history.read() or stored_history
        recent: dict[str, int] = seen.read() or {}
        unique, dropped = keep_first_seen(records, [*recent, *stored_ids])
        self.duplicates.inc(dropped)
        if not unique:
            return
        enriched, updated = enrich_user(
            user_key, unique, UserHistory.from_row(row) if row else None, self.session_gap_us
        )
        now = now_us()
        recent = {i: t for i, t in recent.items() if now - t < self.dedup_us}
        recent.update((rec["event_id"], now) for rec in unique)
        history.write(updated.to_row())
        seen.write(recent)
        idle.set(Timestamp.now() + Duration(seconds=self.idle_s))
        yield enriched
        yield beam.pvalue.TaggedOutput(USER_FEATURES, [updated.to_row()])

    @on_timer(_IDLE)
    def expire(self, history=_HISTORY_STATE, seen=_SEEN_STATE):
        history.clear()
        seen.clear()


class EnrichWithUserState(beam.PTransform):
    """Per-user work items -> ``{"events": enriched batches, "user_features": rows}``.
    State lives in the global window, so it outlasts the micro-batches."""

    def __init__(self, settings: ProcessingSettings, dedup_hours: int = 24, idle_hours: int = 72) -> None:
        super().__init__()
        self.settings = settings
        self.dedup_hours = dedup_hours
        self.idle_hours = idle_hours

    def expand(self, work):
        fn = _UserStateFn(self.settings.session_gap_minutes * 60_000_000, self.dedup_hours, self.idle_hours)
        return (
            work
            | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
            | "PerUserState" >> beam.ParDo(fn).with_outputs(USER_FEATURES, main=EVENTS)
        )


def build_streaming_graph(
    raw, lookup: WarehouseLookup, settings: ProcessingSettings, batch_seconds: int = 10
):
    """``RawEvent`` -> ``{table name: PCollection of row batches}`` for every table."""
    batches = raw | "MicroBatch" >> MicroBatch(batch_seconds)
    parsed = batches | "ParseEvents" >> ParseEvents()
    first = parsed.events | "DeduplicateIds" >> DeduplicateIds(settings.shards, batch_seconds)
    work = first | "LookupHistory" >> LookupHistory(lookup, settings.shards)
    enriched = work | "EnrichWithUserState" >> EnrichWithUserState(settings)
    tables = enriched.events | "BuildFeatures" >> BuildFeatures(
        settings.window_minutes * 60_000_000, settings.allowed_lateness_minutes * 60
    )
    tables[EVENTS] = enriched.events
    tables[USER_FEATURES] = enriched[USER_FEATURES]
    tables[DEAD_LETTERS] = parsed[DEAD_LETTERS]
    return tables


def _bigquery_rows(rows: list[dict], table: str) -> Iterable[dict]:
    t = TABLES[table]
    changed_at = now_us() if bigquery.is_change_log(t) else None
    for row in rows:
        yield bigquery.to_row(t, row, changed_at)


def _load_failure(element, table: str) -> dict:
    """A row BigQuery refused for good -> a dead letter keeping the row."""
    import json

    _destination, row, errors = element
    payload = json.dumps(row, sort_keys=True, default=str).encode()
    reason = f"BigQuery refused a {table} row: {json.dumps(errors, default=str)[:1500]}"
    dead = dead_letter(RawEvent(0, now_us(), payload), reason, STAGE_LOAD, row.get("event_id"))
    return bigquery.to_row(TABLES[DEAD_LETTERS], dead)


class WriteToBigQueryTables(beam.PTransform):
    """``{table: PCollection of row batches}`` -> the dataset's physical tables,
    with streaming inserts. Rows BigQuery refuses for good (not transient
    errors, which are retried) are written to ``dead_letters`` with stage
    ``load``, so nothing the job accepted is lost."""

    def __init__(self, project: str, dataset: str) -> None:
        super().__init__()
        self.project = project
        self.dataset = dataset

    def _write(self, rows, table: str, label: str):
        from apache_beam.io.gcp.bigquery import BigQueryDisposition, RetryStrategy, WriteToBigQuery

        physical = bigquery.physical_name(TABLES[table])
        return rows | label >> WriteToBigQuery(
            table=f"{self.project}:{self.dataset}.{physical}",
            method=WriteToBigQuery.Method.STREAMING_INSERTS,
            create_disposition=BigQueryDisposition.CREATE_NEVER,
            write_disposition=BigQueryDisposition.WRITE_APPEND,
            insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
            # The event id as insertId: BigQuery drops a retried insert.
            ignore_insert_ids=table != EVENTS,
        )

    def expand(self, tables: dict):
        failures = []
        for name, batches in sorted(tables.items()):
            rows = batches | f"Rows_{name}" >> beam.FlatMap(_bigquery_rows, name)
            if name == DEAD_LETTERS:
                dead_rows = rows
                continue
            result = self._write(rows, name, f"Write_{name}")
            failures.append(
                result.failed_rows_with_errors | f"LoadFailures_{name}" >> beam.Map(_load_failure, name)
            )
        all_dead = [dead_rows, *failures] | "AllDeadLetters" >> beam.Flatten()
        return self._write(all_dead, DEAD_LETTERS, f"Write_{DEAD_LETTERS}")


def split_dataset(value: str) -> tuple[str, str]:
    """``project:dataset`` or ``project.dataset`` -> ``(project, dataset)``."""
    match = re.fullmatch(r"([a-z][a-z0-9.:-]*[a-z0-9])[:.]([A-Za-z0-9_]{1,1024})", value)
    if match:
        return match.group(1), match.group(2)
    raise ValueError(f"--output_dataset must be <project>:<dataset>, got {value!r}")


def run_streaming(argv: list[str] | None = None):
    """Build and run the streaming job (on Dataflow, from the Flex Template)."""
    opts = ProcessingOptions(argv)
    opts.view_as(StandardOptions).streaming = True
    flags = opts.view_as(ProcessingOptions)
    for name in ("input_subscription", "output_dataset"):
        if not getattr(flags, name):
            raise ValueError(f"--{name} is required by the streaming job, got {getattr(flags, name)!r}")
    project, dataset = split_dataset(flags.output_dataset)
    settings = settings_from_options(opts)
    p = beam.Pipeline(options=opts)
    raw = p | "ReadPubSubEvents" >> ReadPubSubEvents(flags.input_subscription)
    tables = build_streaming_graph(raw, BigQueryLookup(project, dataset), settings, settings.batch_seconds)
    _ = tables | "WriteToBigQueryTables" >> WriteToBigQueryTables(project, dataset)
    return p.run()
