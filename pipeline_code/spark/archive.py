"""The raw archives as Spark input: archive files -> an RDD of ``RawEvent`` tuples.

    raws = archive_raws(spark, paths, "firehose", start_us, end_us)

What a batch job (Glue over S3, Synapse over the lake, locally over
``dataflow archive``'s files) hands to ``process_micro_batch``. Files are
read whole on the executors (``binaryFiles``) and decoded by
``pipeline_code.streams.archive`` (the kinds, their layouts, ``archive_paths``).
"""

from __future__ import annotations

from pipeline_code.streams.archive import KINDS, Kind, archive_paths, decode, hour_prefixes

__all__ = ["KINDS", "Kind", "archive_paths", "archive_raws", "decode", "existing", "hour_prefixes"]


class _Decode:
    def __init__(self, kind: Kind, start_us: int, end_us: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"archive kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind, self.start_us, self.end_us = kind, start_us, end_us

    def __call__(self, item: tuple[str, bytes]) -> list[tuple[int, int, bytes]]:
        path, body = item
        return [
            tuple(raw)  # type: ignore[misc]
            for raw in decode(path, bytes(body), self.kind)
            if self.start_us <= raw.received_at_us < self.end_us
        ]


def existing(spark, paths: list[str]) -> list[str]:
    """The paths (or globs) that match something, asked of Hadoop's file
    system for each (local, ``s3://``, ``abfss://``, ``gs://``): an hour
    without traffic has no folder."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    out = []
    for p in paths:
        path = jvm.org.apache.hadoop.fs.Path(p)
        found = path.getFileSystem(conf).globStatus(path)
        if found is not None and len(found) > 0:
            out.append(p)
    return out


def archive_raws(spark, paths: list[str], kind: Kind, start_us: int, end_us: int):
    """An RDD of ``RawEvent`` tuples from archive files (or folders, or
    globs) that arrived in ``[start_us, end_us)``; paths that match nothing
    are skipped."""
    found = existing(spark, paths)
    if not found:
        return spark.sparkContext.emptyRDD()
    files = spark.sparkContext.binaryFiles(",".join(found))
    return files.flatMap(_Decode(kind, start_us, end_us))
