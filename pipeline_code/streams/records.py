"""What every partitioned stream's records share: the stored offset, the spill format.

``source_offset`` orders the warehouse's events by arrival; Kinesis and
Event Hubs order records only within a shard or partition, so their offset
is built here from the arrival time. A micro-batch that cannot be committed
is written raw, in ``spill_lines``'s format, to the dead-letter store.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable


def stream_offset(record_key: str, arrival_ms: int) -> int:
    """``source_offset`` for a record of a partitioned stream (Kinesis, Event
    Hubs), whose own positions are only ordered within a shard or partition.
    Arrival milliseconds in the high bits keep log order across them; 20 bits
    of the record key's hash separate records that arrived in the same
    millisecond. Fits the INT64 column."""
    return (arrival_ms << 20) | (zlib.crc32(record_key.encode()) & 0xFFFFF)


def spill_lines(raws: Iterable[tuple[int, int, bytes]], error: str) -> bytes:
    """A batch that could not be committed, raw, as JSON lines for the dead-letter store."""
    return "\n".join(
        json.dumps({"source_offset": o, "received_at_us": r, "payload_hex": p.hex(), "error": error})
        for o, r, p in raws
    ).encode()
