"""A durable, append-only local event log: the local chain's ingest.

The cloud chains ingest into Pub/Sub, Kinesis or Event Hubs; locally events
are appended to segment files in a directory. Each record is one line::

    <received_at, microseconds since epoch>\\t<payload bytes>\\n

so the payload is kept byte for byte. A record's *offset* is its byte
position in the log (segment files are named by the offset they start at,
like Kafka's). ``append`` returns only after ``fsync``: an acknowledged event
survives a crash. A torn record left by a crash mid-append (no trailing
newline) was never acknowledged: readers stop before it, and the next
append cuts it off.

Consumers keep their own checkpoint (an offset). The local warehouse stores
it in the same transaction as the rows it loaded, so a restart neither loses
nor re-adds events.

The log's archive format (``dataflow archive``): Avro records of
``ARCHIVE_SCHEMA`` (offset, arrival time, payload); ``archive_record`` and
``archive_to_raw`` convert one way and back.
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import json
import operator
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pipeline_code.core.parse import RawEvent, now_us

ARCHIVE_SCHEMA = {
    "type": "record",
    "name": "ArchivedEvent",
    "namespace": "dataflow",
    "fields": [
        {"name": "offset", "type": "long"},
        {"name": "received_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "payload", "type": "bytes"},
    ],
}


def archive_record(raw: RawEvent) -> dict:
    """A log record as an ``ARCHIVE_SCHEMA`` record."""
    return {"offset": raw.offset, "received_at": raw.received_at_us, "payload": raw.payload}


def archive_to_raw(record: dict) -> RawEvent:
    """An ``ARCHIVE_SCHEMA`` record (the arrival as Avro readers give it: a
    datetime, or microseconds) -> ``RawEvent``."""
    at = record["received_at"]
    if not isinstance(at, int):
        from pipeline_code.core.ports import to_us

        at = to_us(at)
    return RawEvent(record["offset"], at, record["payload"])


def record_offsets(first: int, lines: list[bytes]) -> list[int]:
    """The offset of each of ``read_lines``' lines, the first at ``first``."""
    if not lines:
        return []
    # Summed in C: each line starts a newline past the one before.
    return list(itertools.accumulate(map(_PLUS_NEWLINE, map(len, lines[:-1])), initial=first))


def line_payload(line: bytes) -> bytes:
    """The payload of one of ``read_lines``' lines."""
    return line[line.index(b"\t") + 1 :]


_PLUS_NEWLINE = (1).__add__
_JOINED_RECORDS = 2_000
"""Records ``EventLog.append`` joins into one write: about a megabyte of
store events (larger buffers cost more in fresh pages than they save in calls)."""
_tuple_new = tuple.__new__


def raw_events(first: int, lines: list[bytes], offsets: list[int] | None = None) -> list[RawEvent]:
    """``read_lines``' lines as ``RawEvent``; ``offsets``: theirs, if not
    consecutive from ``first`` (some lines of a range)."""
    out: list[RawEvent] = []
    append = out.append
    arrivals: dict[bytes, int] = {}  # a batch of appends shares one arrival time
    if offsets is None:
        offsets = record_offsets(first, lines)
    for offset, line in zip(offsets, lines, strict=True):
        stamp, payload = line.split(b"\t", 1)
        at = arrivals.get(stamp)
        if at is None:
            at = arrivals[stamp] = int(stamp)
        # tuple.__new__ skips the NamedTuple's Python-level constructor.
        append(_tuple_new(RawEvent, (offset, at, payload)))
    return out


SEGMENT_BYTES = 64 * 1024 * 1024
_META = "log.json"
_LOCK = ".lock"
_INGESTED = "ingested"


class EventLogError(Exception):
    """The log directory cannot be used."""


class EventLog:
    """Append and read events in a local directory."""

    def __init__(self, directory: str | os.PathLike, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.path = Path(directory)
        self.segment_bytes = segment_bytes
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            meta_path = self.path / _META
            if meta_path.exists():
                self.log_id = json.loads(meta_path.read_text())["log_id"]
            else:
                self.log_id = str(uuid.uuid4())
                tmp = meta_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"log_id": self.log_id, "format": 1}))
                os.replace(tmp, meta_path)
        except (OSError, ValueError, KeyError) as exc:
            raise EventLogError(f"event log {self.path} cannot be opened: {exc}") from exc

    # -- layout -------------------------------------------------------------
    def _segments(self) -> list[tuple[int, Path]]:
        segs = []
        for p in self.path.glob("*.log"):
            try:
                segs.append((int(p.stem), p))
            except ValueError:
                continue
        return sorted(segs)

    def end_offset(self) -> int:
        """The end of the last complete record: where a reader may stop and
        checkpoint. Bytes of a record still being appended (or torn by a
        crash) lie past it."""
        segs = self._segments()
        if not segs:
            return 0
        base, p = segs[-1]
        with open(p, "rb") as f:
            return base + _complete_size(f)

    # -- what was ingested from files ---------------------------------------
    def ingest_state(self, digest: str) -> dict | None:
        """How far the input with this content digest got: ``lines`` appended
        for sure, ``done``, and ``pending`` (``[offset, count]``) while an
        append of it is in flight (``None``: never started)."""
        path = self.path / _INGESTED / f"{digest}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def record_ingest(
        self, digest: str, name: str, lines: int, done: bool, pending: tuple[int, int] | None = None
    ) -> None:
        """Remember how far an input file got, durably: before an append
        (``pending``: where it starts and how many lines), and after it. A
        rerun after a crash counts what of a pending append reached the log
        and resumes after it, appending nothing twice."""
        folder = self.path / _INGESTED
        folder.mkdir(exist_ok=True)
        tmp = folder / f"{digest}.tmp"
        with open(tmp, "w") as f:
            json.dump({"file": name, "lines": lines, "done": done, "pending": pending}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{digest}.json")

    def landed(self, offset: int, payloads: list[bytes]) -> int:
        """How many of ``payloads``, in order, stand in the log from ``offset``:
        what an append cut by a crash wrote (its lines are contiguous there,
        since appends hold the lock)."""
        n = 0
        for record, payload in zip(self.read(offset), payloads, strict=False):
            if record.payload != payload:
                break
            n += 1
        return n

    def durable_end(self) -> int:
        """The end of the last record whose append returned, fsync and all.

        ``end_offset`` alone may count a record that is written but not yet
        fsynced; a checkpoint past it could outlive a power loss that takes the
        record away, and appends after it would land below the checkpoint and
        never be read. Appends hold the lock exclusively until their fsync
        returns: under the shared lock the end is durable."""
        if not self.path.exists():
            return 0
        with open(self.path / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            return self.end_offset()

    def unread_range(self, checkpoint: int) -> tuple[int, int]:
        """``(checkpoint, durable end)``: what a run past ``checkpoint`` may
        read. ``EventLogError`` when the checkpoint is past the end: the log
        was truncated or replaced, and reading on would skip or repeat events."""
        end = self.durable_end()
        if checkpoint > end:
            raise EventLogError(
                f"the warehouse's checkpoint for log {self.log_id} is at byte {checkpoint}, past the "
                f"end of the log at {self.path} ({end} bytes): was the log truncated or replaced? "
                "Nothing was processed."
            )
        return checkpoint, end

    def _repair_tail(self) -> None:
        """Cut a torn record. Only called under the append lock: a reader must
        never cut bytes a writer is still appending."""
        segs = self._segments()
        if not segs:
            return
        _, p = segs[-1]
        with open(p, "rb+") as f:
            complete = _complete_size(f)
            if complete != os.fstat(f.fileno()).st_size:
                f.truncate(complete)
                os.fsync(f.fileno())

    # -- writing ------------------------------------------------------------
    def append(
        self,
        payloads: Iterable[bytes],
        received_at_us: int | None = None,
        before_write: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Append payloads (one event each, no newline inside); fsync; return
        ``(first_offset, count)``. ``before_write(first_offset)`` runs under
        the lock before the first byte is written (a caller records it)."""
        stamp = b"%d\t" % (received_at_us if received_at_us is not None else now_us())
        with open(self.path / _LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._repair_tail()
            start = self.end_offset()
            if before_write is not None:
                before_write(start)
            segs = self._segments()
            seg_base = segs[-1][0] if segs else 0
            count = self._write(list(payloads), stamp, start, seg_base)
        return start, count

    def _write(self, payloads: list[bytes], stamp: bytes, start: int, seg_base: int) -> int:
        """Write the records of ``payloads`` from ``start`` (the end of the
        segment at ``seg_base``), each segment fsynced; returns how many.
        Records are joined ``_JOINED_RECORDS`` at a time, in C (a Python step
        per record was most of an ingest's cost); a record starts a new
        segment once the one it would join holds ``segment_bytes`` or more."""
        # ``starts[i]``: record i's offset, relative to ``start``.
        extra = len(stamp) + 1
        starts = list(itertools.accumulate((len(p) + extra for p in payloads), initial=0))
        if any(map(operator.contains, payloads, itertools.repeat(b"\n"))):
            # Nothing is written: name the first payload that holds a newline.
            at = next(i for i, payload in enumerate(payloads) if b"\n" in payload)
            raise EventLogError(f"payload at offset {start + starts[at]} contains a newline")
        separator = b"\n" + stamp
        f = open(self.path / f"{seg_base:020d}.log", "ab")  # noqa: SIM115 - rolls across segments
        try:
            i = 0
            while i < len(payloads):
                if start + starts[i] - seg_base >= self.segment_bytes:
                    os.fsync(f.fileno())
                    f.close()
                    seg_base = start + starts[i]
                    f = open(self.path / f"{seg_base:020d}.log", "ab")  # noqa: SIM115 - rolls across segments
                # The records from i that start before this segment is full.
                j = bisect.bisect_left(starts, seg_base + self.segment_bytes - start, i + 1, len(payloads))
                for k in range(i, j, _JOINED_RECORDS):
                    f.write(stamp)
                    f.write(separator.join(payloads[k : min(k + _JOINED_RECORDS, j)]))
                    f.write(b"\n")
                i = j
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        return len(payloads)

    # -- reading ------------------------------------------------------------
    def ranges(self, start: int, end: int, chunk_bytes: int) -> list[tuple[int, int]]:
        """Split ``[start, end)`` into byte ranges of about ``chunk_bytes`` that
        never cross a segment. ``read_range`` aligns them to records."""
        out = []
        for base, p in self._segments():
            seg_end = base + p.stat().st_size
            lo, hi = max(start, base), min(end, seg_end)
            pos = lo
            while pos < hi:
                out.append((pos, min(pos + chunk_bytes, hi)))
                pos += chunk_bytes
        return out

    def record_start(self, offset: int) -> int:
        """The first record boundary at or after ``offset`` (``offset`` itself
        when it is one, or at or past the end of the log)."""
        for base, p in self._segments():
            size = p.stat().st_size
            if base < offset < base + size:
                with open(p, "rb") as f:
                    f.seek(offset - base - 1)
                    if f.read(1) == b"\n":
                        return offset
                    f.readline()
                    return base + f.tell()
        return offset

    def slices(self, start: int, end: int, max_bytes: int) -> list[tuple[int, int]]:
        """``[start, end)`` (both record boundaries) cut into ranges at the
        first record boundary at or past ``max_bytes`` from each range's
        start (so all but a range's last record fit in ``max_bytes``); one
        empty range when ``start == end``."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        out, pos = [], start
        while pos < end:
            cut = min(end, self.record_start(pos + max_bytes))
            out.append((pos, cut))
            pos = cut
        return out or [(start, end)]

    def read_lines(self, start: int, end: int) -> tuple[int, list[bytes]]:
        """The records that *start* in ``[start, end)``, as their lines
        (``<received_at>\\t<payload>``, no newline), read whole even when
        they run past ``end`` (Hadoop line-split rules: ranges tile without
        loss or overlap), with the offset of the first. ``record_offsets``
        gives every line's offset; ``read_range`` gives them as ``RawEvent``."""
        seg = None
        for base, p in self._segments():
            if base <= start < base + p.stat().st_size:
                seg = (base, p)
                break
        if seg is None:
            return start, []
        base, p = seg
        with open(p, "rb") as f:
            pos = start - base
            if pos > 0:
                # Start at the first record beginning at or after `start`.
                f.seek(pos - 1)
                if f.read(1) != b"\n":
                    f.readline()
            data_start = f.tell()
            want = (end - base) - data_start
            if want <= 0:
                return base + data_start, []
            data = f.read(want)
            if data and not data.endswith(b"\n"):
                data += f.readline()
        lines = data.split(b"\n")
        lines.pop()  # what follows the last newline: nothing, or a torn record
        return base + data_start, lines

    def read_range(self, start: int, end: int) -> list[RawEvent]:
        """Records that *start* in ``[start, end)`` (``read_lines``)."""
        return raw_events(*self.read_lines(start, end))

    def count_records(self, start: int, end: int) -> int:
        """How many records lie between two record boundaries: their newlines,
        counted in the bytes (nothing is parsed)."""
        count = 0
        for base, p in self._segments():
            lo, hi = max(start, base) - base, min(end, base + p.stat().st_size) - base
            if lo >= hi:
                continue
            with open(p, "rb") as f:
                f.seek(lo)
                left = hi - lo
                while left > 0:
                    chunk = f.read(min(left, 8 << 20))
                    if not chunk:
                        break
                    count += chunk.count(b"\n")
                    left -= len(chunk)
        return count

    def read(self, start: int = 0, end: int | None = None) -> Iterator[RawEvent]:
        """Every record from ``start`` to ``end`` (default: the current end)."""
        stop = self.end_offset() if end is None else end
        for lo, hi in self.ranges(start, stop, 8 << 20):
            yield from self.read_range(lo, hi)


def _complete_size(f) -> int:
    """Size of an open segment up to and including its last newline."""
    size = os.fstat(f.fileno()).st_size
    pos = size
    while pos > 0:
        step = min(65536, pos)
        f.seek(pos - step)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1
        pos -= step
    return 0


def iter_input_lines(path: Path, block_bytes: int = 1 << 20) -> Iterator[bytes]:
    """Lines of one newline-delimited JSON file (optionally gzipped), without
    line endings; blank lines skipped. A UTF-8 byte-order mark at the start of
    the file is an encoding marker, not part of the first event. Read in
    blocks of ``block_bytes``, split in C."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        rest = b""
        block = f.read(max(block_bytes, 3))  # a whole mark, whatever the block size
        if block.startswith(b"\xef\xbb\xbf"):
            block = block[3:]
            if not block:
                block = f.read(block_bytes)
        while True:
            carriage = b"\r" in block or b"\r" in rest  # a \r may end the last block
            lines = block.split(b"\n")
            lines[0] = rest + lines[0]
            if block:
                rest = lines.pop()  # the start of a line that a later block ends
            if carriage:
                lines = [line.rstrip(b"\r") for line in lines]
            # ``bytes.strip`` and ``isspace`` agree on what is blank: ASCII whitespace.
            yield from (line for line in lines if line and not line.isspace())
            if not block:
                return
            block = f.read(block_bytes)
