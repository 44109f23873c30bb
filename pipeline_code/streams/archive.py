"""The raw archives, engine-free: each cloud's archive files -> ``RawEvent``.

    for raw in decode(path, body, "firehose"): ...
    archive_paths("s3://bucket/raw/", "firehose", start_us, end_us)

What the batch jobs (Spark on Glue and Synapse, Beam on Dataflow, and both
locally over ``dataflow archive``'s files) read. Files are decoded with the
readers the stream modules define, so a record gets the ``source_offset``
its streaming job stored:

- ``local``: ``dataflow archive``'s Avro (offset, arrival, payload);
- ``pubsub``: a Cloud Storage subscription's Avro with metadata;
- ``firehose``: Firehose's GZIP objects of the transform's lines;
- ``capture``: Event Hubs Capture's Avro (the partition from the path).

``hour_prefixes`` lists the arrival-hour folders a range touches, the way
all three archives are laid out; ``archive_paths`` the folders a batch job
reads for a range, with an hour's margin on each side.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Literal

from pipeline_code.core.parse import RawEvent
from pipeline_code.streams import eventhubs, eventlog, firehose, pubsub

Kind = Literal["local", "pubsub", "firehose", "capture"]
KINDS = ("local", "pubsub", "firehose", "capture")


def hour_prefixes(start_us: int, end_us: int) -> list[str]:
    """``YYYY/MM/DD/HH/`` for every arrival hour (UTC) in ``[start_us, end_us)``."""
    hour = dt.datetime.fromtimestamp(start_us // 1_000_000, dt.UTC).replace(minute=0, second=0)
    end = dt.datetime.fromtimestamp(end_us / 1_000_000, dt.UTC)
    out = []
    while hour < end:
        out.append(hour.strftime("%Y/%m/%d/%H/"))
        hour += dt.timedelta(hours=1)
    return out


def archive_paths(root: str, kind: Kind, start_us: int, end_us: int) -> list[str]:
    """The folders (globs) under an archive's root that can hold records
    that arrived in ``[start_us, end_us)``.

    Every archive files a record by when the file was written, not by when
    the record arrived: Firehose buffers up to 15 minutes, a Cloud Storage
    subscription up to its ``max_duration``, Capture a minute. So the hour
    before and the hour after the range are read too (records are filtered
    by their own arrival time). Capture's folders are below
    ``<namespace>/<hub>/<partition>/``.
    """
    if kind not in KINDS:
        raise ValueError(f"archive kind must be one of {', '.join(KINDS)}, got {kind!r}")
    hour = 3_600_000_000
    root = root.rstrip("/")
    below = "*/*/*/" if kind == "capture" else ""
    return [f"{root}/{below}{h}" for h in hour_prefixes(start_us - hour, end_us + hour)]


def _avro(body: bytes) -> Iterator[dict]:
    import fastavro

    yield from fastavro.reader(io.BytesIO(body))


def decode(path: str, body: bytes, kind: Kind) -> Iterator[RawEvent]:
    """One archive file -> its records."""
    if kind == "firehose":
        yield from firehose.archive_object_to_raw(body)
    elif kind == "pubsub":
        for rec in _avro(body):
            yield pubsub.archive_to_raw(rec)
    elif kind == "capture":
        # .../{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}.avro
        partition = path.rstrip("/").split("/")[-7]
        for rec in _avro(body):
            if rec.get("Body") is not None:
                yield RawEvent(*eventhubs.to_raw({**rec, "partition": partition}))
    else:
        for rec in _avro(body):
            yield eventlog.archive_to_raw(rec)
