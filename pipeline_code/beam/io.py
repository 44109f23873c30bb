"""Sources and sinks: the one place that knows where events come from and go.

Locally the source is the event log (``pipeline_code.streams.eventlog``) and
the sink is the DuckDB warehouse; the cloud chains add their own here
(Pub/Sub and BigQuery for Dataflow). The transforms in between are the same.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow.parquet as pq

from pipeline_code.core.history import shard_of
from pipeline_code.core.ports import history_row
from pipeline_code.streams.eventlog import EventLog


class _ReadRangeFn(beam.DoFn):
    """``(start, end)`` -> the batch of ``RawEvent`` starting in that range."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def setup(self) -> None:
        self.log = EventLog(self.log_dir)

    def process(self, byte_range: tuple[int, int]):
        yield self.log.read_range(*byte_range)


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
