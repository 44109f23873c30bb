"""Sources and sinks: the one place that knows where events come from and go.

Locally the source is the event log (``pipeline_code.streams.eventlog``) and
the sink is the DuckDB warehouse; the cloud chains add their own here
(Pub/Sub and BigQuery for Dataflow). The transforms in between are the same.

A replay reads an archive's files (``ReadArchive``, any
``pipeline_code.streams.archive`` kind, on any file system Beam knows) and
asks the warehouse about the ids and users it meets
(``LookupSnapshot``) instead of reading a snapshot of it.
"""

from __future__ import annotations

from itertools import compress

import apache_beam as beam
import pyarrow.parquet as pq

from pipeline_code.beam.batch import BatchTuple, RecordBatch
from pipeline_code.beam.transforms import Part
from pipeline_code.core.history import losing_copies, shard_of, split_by_shard
from pipeline_code.core.parse import accepted_ids, line_keys
from pipeline_code.core.ports import WarehouseLookup, history_row
from pipeline_code.streams.archive import Kind, archive_paths, decode
from pipeline_code.streams.eventlog import EventLog, raw_events, record_offsets


class _ReadRangeFn(beam.DoFn):
    """``(start, end)`` -> the batch of ``RawEvent`` starting in that range."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def setup(self) -> None:
        self.log = EventLog(self.log_dir)

    def process(self, byte_range: tuple[int, int]):
        yield RecordBatch(self.log.read_range(*byte_range))


class ReadEventLog(beam.PTransform):
    """Records of a local event log in ``[start, end)`` as batches of
    ``RawEvent``, about ``chunk_bytes`` of log per batch."""

    def __init__(self, log_dir: str, start: int, end: int, chunk_bytes: int = 1 << 20) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.start = start
        self.end = end
        self.chunk_bytes = chunk_bytes

    def expand(self, pbegin):
        ranges = EventLog(self.log_dir).ranges(self.start, self.end, self.chunk_bytes)
        return (
            pbegin
            | "LogRanges" >> beam.Create(ranges)
            | "ReadRange" >> beam.ParDo(_ReadRangeFn(self.log_dir))
            | "DropEmpty" >> beam.Filter(bool)
        )


class _ReadPartFn(beam.DoFn):
    """``(start, end)`` of a run's log -> for each user shard the ``Part``
    owns, ``(shard, every line of its users, the run's losing copies)``.

    It takes its own lines by the part's routes (``Part.line_shards``), or
    else by every line's keys (``line_keys``), and settles the ids lines may
    compete for (repeated in the run, or stored before, ``known_ids``) from
    all their lines, whichever part owns them: the first valid copy in log
    order wins (``losing_copies``). Routed, only its own lines and the
    contested ones are made ``RawEvent``s (about half the read's cost, in
    each of two processes)."""

    def __init__(self, log_dir: str, part: Part, shards: int, chunk_bytes: int) -> None:
        self.log_dir = log_dir
        self.part = part
        self.shards = shards
        self.chunk_bytes = chunk_bytes

    def setup(self) -> None:
        self.log = EventLog(self.log_dir)

    def process(self, byte_range: tuple[int, int], known_ids):
        known = {event_id for _, ids in known_ids for event_id in ids}
        if self.part.routed():
            own, disputed = self._routed(byte_range)
        else:
            own, disputed = self._by_keys(byte_range, self.part.repeated | known)
        losers = frozenset(losing_copies(accepted_ids(disputed), known))
        for shard in sorted(own):
            yield BatchTuple((shard, own[shard], losers))

    def _by_keys(self, byte_range: tuple[int, int], contested: set[str] | frozenset[str]):
        """Own lines by shard, and the contested lines, from every line's keys."""
        own: dict[int, RecordBatch] = {}
        disputed = []
        for lo, hi in self.log.ranges(*byte_range, self.chunk_bytes):
            for raw in self.log.read_range(lo, hi):
                event_id, user_key = line_keys(raw.payload)
                shard = self.part.shard(user_key, self.shards)
                if self.part.owns(shard):
                    own.setdefault(shard, RecordBatch()).append(raw)
                if event_id in contested:
                    disputed.append(raw)
        return own, disputed

    def _routed(self, byte_range: tuple[int, int]):
        """Own lines by shard, and the contested lines, from the part's
        routes: only those lines are made ``RawEvent``s."""
        part = self.part
        routes = part.line_shards
        disputed_at = part.disputed
        ownership = part.ownership()
        own: dict[int, RecordBatch] = {}
        disputed = []
        index = next_disputed = 0
        for lo, hi in self.log.ranges(*byte_range, self.chunk_bytes):
            first, lines = self.log.read_lines(lo, hi)
            shards = routes[index : index + len(lines)]
            if len(shards) != len(lines):
                raise _changed_under(byte_range, routes)
            offsets = record_offsets(first, lines)
            mask = shards.translate(ownership)
            mine = raw_events(first, list(compress(lines, mask)), list(compress(offsets, mask)))
            for raw, shard in zip(mine, compress(shards, mask), strict=True):
                own.setdefault(shard, RecordBatch()).append(raw)
            end = index + len(lines)
            while next_disputed < len(disputed_at) and disputed_at[next_disputed] < end:
                at = disputed_at[next_disputed] - index
                disputed.extend(raw_events(offsets[at], [lines[at]]))
                next_disputed += 1
            index = end
        if index != len(routes):
            raise _changed_under(byte_range, routes)
        return own, disputed


def _changed_under(byte_range: tuple[int, int], routes: bytes) -> ValueError:
    return ValueError(
        f"the run [{byte_range[0]}, {byte_range[1]}) of the log holds other lines than were "
        f"routed ({len(routes)}): the log changed under the run"
    )


class ReadPartOfRun(beam.PTransform):
    """One ``Part``'s share of a run of the local event log, ``[start, end)``:
    a ``(user shard, lines, losing copies)`` element per shard it owns
    (``ParseOwnShards`` reads them). ``known_ids``: ``(id shard, [event_id])``
    of the ids stored before, as ``ReadWarehouseSnapshot`` gives them."""

    def __init__(
        self, log_dir: str, start: int, end: int, part: Part, shards: int, known_ids, chunk_bytes: int
    ) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.start = start
        self.end = end
        self.part = part
        self.shards = shards
        self.known_ids = known_ids
        self.chunk_bytes = chunk_bytes

    def expand(self, pbegin):
        return (
            pbegin
            | "RunRange" >> beam.Create([(self.start, self.end)])
            | "ReadOwnShards"
            >> beam.ParDo(
                _ReadPartFn(self.log_dir, self.part, self.shards, self.chunk_bytes),
                beam.pvalue.AsIter(self.known_ids),
            )
        )


def _ids_by_shard(path: str, shards: int):
    table = pq.read_table(path, columns=["event_id"])
    out: dict[int, list[str]] = {s: [] for s in range(shards)}
    # Sharded by event id, like the events they are checked against (``DeduplicateEvents``).
    for event_id in table.column(0).to_pylist():
        out[shard_of(event_id, shards)].append(event_id)
    return out.items()


def _history_by_shard(path: str, shards: int):
    out: dict[int, list[dict]] = {s: [] for s in range(shards)}
    for row in pq.read_table(path).to_pylist():
        out[shard_of(row["user_key"], shards)].append(history_row(row))
    return out.items()


class ReadWarehouseSnapshot(beam.PTransform):
    """The warehouse's known event ids and user histories, read from the
    Parquet snapshot taken before the run, as ``(shard, [...])`` pairs."""

    def __init__(self, known_ids_path: str, history_path: str, shards: int) -> None:
        super().__init__()
        self.known_ids_path = known_ids_path
        self.history_path = history_path
        self.shards = shards

    def expand(self, pbegin):
        shards = self.shards
        known = (
            pbegin
            | "KnownIdsFile" >> beam.Create([self.known_ids_path])
            | "KnownIdsByShard" >> beam.FlatMap(_ids_by_shard, shards)
        )
        history = (
            pbegin
            | "HistoryFile" >> beam.Create([self.history_path])
            | "HistoryByShard" >> beam.FlatMap(_history_by_shard, shards)
        )
        return known, history


class _DecodeFileFn(beam.DoFn):
    """A matched archive file -> its records that arrived in the range, as one batch."""

    def __init__(self, kind: Kind, start_us: int, end_us: int) -> None:
        self.kind, self.start_us, self.end_us = kind, start_us, end_us

    def process(self, readable):
        path = readable.metadata.path
        batch = [
            r
            for r in decode(path, readable.read(), self.kind)
            if self.start_us <= r.received_at_us < self.end_us
        ]
        if batch:
            yield RecordBatch(batch)


class ReadArchive(beam.PTransform):
    """The records of an archive (``root``: its top folder, local or
    ``gs://``) that arrived in ``[start_us, end_us)``, a batch per file.
    Only the hour folders of the range (and an hour either side) are listed."""

    def __init__(self, root: str, kind: Kind, start_us: int, end_us: int) -> None:
        super().__init__()
        self.root, self.kind, self.start_us, self.end_us = root, kind, start_us, end_us

    def expand(self, pbegin):
        from apache_beam.io import fileio

        patterns = [f"{p}*" for p in archive_paths(self.root, self.kind, self.start_us, self.end_us)]
        return (
            pbegin
            | "HourFolders" >> beam.Create(patterns)
            # An hour without traffic has no folder: no match is not an error.
            | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Read" >> fileio.ReadMatches()
            | "Decode" >> beam.ParDo(_DecodeFileFn(self.kind, self.start_us, self.end_us))
        )


class _AskShardFn(beam.DoFn):
    """``(shard, [batch, ...])`` -> ``(shard, what the warehouse holds for it)``:
    the known ids among the shard's event ids, or the stored histories of its users.
    The lookup is opened per shard and closed after, so no connection outlives
    the question (the local warehouse is a file the commit must lock)."""

    def __init__(self, lookup: WarehouseLookup, ask: str) -> None:
        self.lookup, self.ask = lookup, ask

    def process(self, element):
        shard, batches = element
        records = [rec for batch in batches for rec in batch]
        self.lookup.open()
        try:
            if self.ask == "ids":
                days = [rec["event_date"] for rec in records]
                ids = sorted({rec["event_id"] for rec in records})
                yield shard, sorted(self.lookup.known_ids(ids, min(days), max(days)))
            else:
                stored = self.lookup.histories(sorted({rec["user_key"] for rec in records}))
                yield shard, [history_row(row) for row in stored.values()]
        finally:
            self.lookup.close()


class _SplitFn(beam.DoFn):
    def __init__(self, key: str, shards: int) -> None:
        self.key, self.shards = key, shards

    def process(self, batch):
        yield from split_by_shard(batch, self.key, self.shards).items()


class LookupSnapshot(beam.PTransform):
    """Parsed event batches -> ``(known_ids, history)`` as ``ReadWarehouseSnapshot``
    gives them (``(id shard, [event_id])``, ``(user shard, [row])``), but only
    for the ids and users the input has, asked of the warehouse one query
    per shard: what a replay reads instead of a snapshot of a cloud warehouse."""

    def __init__(self, lookup: WarehouseLookup, shards: int) -> None:
        super().__init__()
        self.lookup, self.shards = lookup, shards

    def expand(self, events):
        known = (
            events
            | "ByIdShard" >> beam.ParDo(_SplitFn("event_id", self.shards))
            | "GroupIds" >> beam.GroupByKey()
            | "KnownIds" >> beam.ParDo(_AskShardFn(self.lookup, "ids"))
        )
        history = (
            events
            | "ByUserShard" >> beam.ParDo(_SplitFn("user_key", self.shards))
            | "GroupUsers" >> beam.GroupByKey()
            | "Histories" >> beam.ParDo(_AskShardFn(self.lookup, "histories"))
        )
        return known, history
