"""Batch replays from the archive, Beam and Spark: the same archive files give
identical tables on both engines, a replay over what streaming already
stored changes no row, and Firehose's objects (as the Glue batch job reads
them) give the same events and features as the log they came from."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import shutil

import duckdb
import pytest

from pipeline_code.host import ProcessingSettings, ReplayRequest
from pipeline_code.local.replay import archive_range, replay_archive
from pipeline_code.local.run import process_log
from pipeline_code.spark.archive import archive_paths, archive_raws, hour_prefixes
from pipeline_code.spark.local import replay_archive_spark
from pipeline_code.streams import firehose
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import TABLES
from pipeline_code.warehouses.duckdb import DuckDBLookup, LocalWarehouseSink, Warehouse
from tests.pipeline_code.spark.test_conformance import HOSTILE

ALL = (0, 2**62)
# Kinesis keeps arrival to the millisecond and numbers records its own way:
# offsets, arrival times and reasons that quote the arrival time differ.
ARRIVAL = {"received_at", "source_offset", "dead_lettered_at", "error_message"}


def rows(warehouse, table: str, skip=frozenset({"dead_lettered_at"})) -> list[tuple]:
    cols = [c for c in TABLES[table].column_names() if c not in skip]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """A store streamed into a warehouse in three pieces, and its archive files."""
    root = tmp_path_factory.mktemp("archive-replay")
    log = EventLog(root / "w.eventlog")
    lines = list(generate(StoreSpec(events=2400, days=3, seed=5)))
    lines += [p for name, p, _, _ in HOSTILE if name != "five megabytes"]
    for i in range(3):
        log.append(lines[i * 900 : (i + 1) * 900])
        process_log(log.path, root / "w.duckdb")
    archive = root / "archive"
    archive_range(log, *ALL, archive)
    return log, root / "w.duckdb", archive


def test_beam_and_spark_replay_the_same_archive_into_the_same_tables(streamed, tmp_path, spark) -> None:
    _, _, archive = streamed
    beam_wh, spark_wh = tmp_path / "beam.duckdb", tmp_path / "spark.duckdb"
    for wh in (beam_wh, spark_wh):
        Warehouse(wh).close()
    beam = replay_archive(
        beam_wh,
        tmp_path / "unused",
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
        archive_dir=archive,
    )
    sparked = replay_archive_spark(spark_wh, [str(archive / "*/*/*/*/*.avro")], "local", *ALL, spark=spark)
    assert (beam.events_read, beam.events_stored, beam.duplicates_skipped, beam.dead_lettered) == (
        sparked.events_read,
        sparked.events_stored,
        sparked.duplicates_skipped,
        sparked.dead_lettered,
    )
    for table in TABLES:
        assert rows(beam_wh, table) == rows(spark_wh, table), table


def test_a_spark_replay_over_what_was_streamed_changes_no_row(streamed, tmp_path, spark) -> None:
    _, warehouse, archive = streamed
    copy = tmp_path / "w.duckdb"
    shutil.copy(warehouse, copy)
    before = {t: rows(copy, t) for t in TABLES}
    summary = replay_archive_spark(copy, [str(archive / "*/*/*/*/*.avro")], "local", *ALL, spark=spark)
    assert summary.events_stored == 0 and summary.dead_lettered == 0 and summary.balanced
    assert {t: rows(copy, t) for t in TABLES} == before


def firehose_objects(log: EventLog, out) -> None:
    """The log's records as Firehose would archive them from Kinesis: through
    the transform, GZIP objects under raw/YYYY/MM/DD/HH/ (arrival hour)."""
    records = list(log.read(0, log.durable_end()))
    event = {
        "records": [
            {
                "recordId": str(i),
                "approximateArrivalTimestamp": r.received_at_us // 1000,
                "data": base64.b64encode(r.payload).decode(),
                "kinesisRecordMetadata": {
                    "sequenceNumber": f"{49000000 + i}",
                    "approximateArrivalTimestamp": r.received_at_us // 1000,
                },
            }
            for i, r in enumerate(records)
        ]
    }
    lines = [base64.b64decode(r["data"]) for r in firehose.transform(event)["records"]]
    hour = dt.datetime.fromtimestamp(records[0].received_at_us / 1e6, dt.UTC).strftime("%Y/%m/%d/%H")
    folder = out / "raw" / hour
    folder.mkdir(parents=True)
    for n, start in enumerate(range(0, len(lines), 500)):
        (folder / f"dataflow-archive-delivery-1-{n}.jsonl.gz").write_bytes(
            gzip.compress(b"".join(lines[start : start + 500]))
        )


def test_firehoses_objects_replay_to_the_events_and_features_of_their_log(streamed, tmp_path, spark) -> None:
    log, warehouse, _ = streamed
    firehose_objects(log, tmp_path / "s3")
    paths = [str(tmp_path / "s3" / "raw" / p) for p in hour_prefixes(*_range(log))]
    assert archive_raws(spark, paths, "firehose", *ALL).count() == log.count_records(0, log.durable_end())
    empty = tmp_path / "fresh.duckdb"
    Warehouse(empty).close()
    summary = replay_archive_spark(empty, paths, "firehose", *ALL, spark=spark)
    assert summary.balanced and summary.dead_lettered == len(rows(warehouse, "dead_letters"))
    for table in TABLES:
        # Arrival times and offsets are Kinesis's here: the rest must match the log's run.
        assert rows(empty, table, ARRIVAL) == rows(warehouse, table, ARRIVAL), table


def _range(log: EventLog) -> tuple[int, int]:
    records = list(log.read(0, log.durable_end()))
    return records[0].received_at_us, records[-1].received_at_us + 3_600_000_000


def test_hour_prefixes_cover_the_range() -> None:
    start = int(dt.datetime(2026, 11, 30, 22, 30, tzinfo=dt.UTC).timestamp() * 1e6)
    end = int(dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC).timestamp() * 1e6)
    assert hour_prefixes(start, end) == ["2026/11/30/22/", "2026/11/30/23/", "2026/12/01/00/"]


def _local_replay(warehouse, staging, request, kind: str, root: str, spark):
    """``run_replay`` as the cloud jobs call it, with the local warehouse as
    lookup and sink (a dead-letter re-run's sink replaces the rows it re-ran)."""
    from pipeline_code.spark.replay import run_replay

    with Warehouse(warehouse) as wh:
        generation = wh.generation()

    def make_sink(key, replay):
        run = {"run_id": key, "started_at": 0.0, "events_read": 0, "generation": generation}
        run.update(kind=request.mode, detail=request.describe())
        rerun = None
        if replay.rerun_before_us is not None:
            lookup = DuckDBLookup(str(warehouse))
            lookup.open()
            rerun = [r.offset for r in lookup.dead_letters(replay)]
            lookup.close()
        return LocalWarehouseSink(str(warehouse), str(staging), request.mode, 0, 0, run, rerun)

    return run_replay(
        spark,
        request,
        job_name="test-replay",
        kind=kind,
        archive_uri=root,
        settings=ProcessingSettings(),
        make_lookup=lambda: DuckDBLookup(str(warehouse)),
        make_sink=make_sink,
    )


def test_the_cloud_replay_job_reads_its_range_from_the_hour_folders_with_a_margin(
    streamed, tmp_path, spark
) -> None:
    """Firehose files a record by delivery: objects of records that arrived
    in one hour land in the next hour's folder and are still replayed, and a
    range replayed over what streaming stored changes no row."""
    log, warehouse, _ = streamed
    firehose_objects(log, tmp_path / "s3")
    start, end = _range(log)
    start -= start % 1000  # Kinesis keeps arrival to the millisecond
    first_hour = tmp_path / "s3" / "raw" / hour_prefixes(start, start + 1)[0]
    later = tmp_path / "s3" / "raw" / hour_prefixes(start + 3_600_000_000, start + 3_600_000_001)[0]
    later.parent.mkdir(parents=True, exist_ok=True)
    first_hour.rename(later)
    copy = tmp_path / "w.duckdb"
    shutil.copy(warehouse, copy)
    before = {t: rows(copy, t) for t in TABLES}
    request = ReplayRequest("archive", start, end)
    result = _local_replay(copy, tmp_path / "stage", request, "firehose", f"{tmp_path}/s3/raw/", spark)
    assert result.events_read == log.count_records(0, log.durable_end())
    assert result.events_stored == 0 and result.balanced
    # Kinesis's offsets are not the log's: its dead letters are new arrivals, its events are not.
    assert {t: rows(copy, t) for t in TABLES if t != "dead_letters"} == {
        t: v for t, v in before.items() if t != "dead_letters"
    }
    # Run again: nothing changes at all, dead letters included.
    after = {t: rows(copy, t) for t in TABLES}
    again = _local_replay(copy, tmp_path / "stage2", request, "firehose", f"{tmp_path}/s3/raw/", spark)
    assert again.events_stored == 0 and {t: rows(copy, t) for t in TABLES} == after
    # A range that ends before the first arrival reads nothing.
    early = ReplayRequest("archive", start - 7_200_000_000, start)
    assert (
        _local_replay(copy, tmp_path / "s3", early, "firehose", f"{tmp_path}/s3/raw", spark).events_read == 0
    )


def test_a_dead_letter_rerun_reads_the_stored_inputs_and_keeps_one_row_each(
    streamed, tmp_path, spark
) -> None:
    _, warehouse, _ = streamed
    copy = tmp_path / "w.duckdb"
    shutil.copy(warehouse, copy)
    before = rows(copy, "dead_letters", {"dead_lettered_at", "error_message"})

    request = ReplayRequest("dead_letters")
    result = _local_replay(copy, tmp_path / "stage", request, "firehose", "unused", spark)
    assert result.events_read == len(before) > 0
    assert (result.events_stored, result.dead_lettered) == (0, len(before))
    assert rows(copy, "dead_letters", {"dead_lettered_at", "error_message"}) == before


def subscription_files(log: EventLog, out) -> None:
    """The log's records as a Cloud Storage subscription writes them (Avro
    with metadata) under raw/YYYY/MM/DD/hh/, a file per 700 records."""
    import fastavro

    from tests.pipeline_code.streams.test_archives import GCS_SUBSCRIPTION_SCHEMA

    records = list(log.read(0, log.durable_end()))
    schema = fastavro.parse_schema(GCS_SUBSCRIPTION_SCHEMA)
    for n, start in enumerate(range(0, len(records), 700)):
        chunk = records[start : start + 700]
        hour = dt.datetime.fromtimestamp(chunk[0].received_at_us / 1e6, dt.UTC).strftime("%Y/%m/%d/%H")
        folder = out / "raw" / hour
        folder.mkdir(parents=True, exist_ok=True)
        rows = [
            {
                "subscription_name": "projects/shop/subscriptions/dataflow-archive",
                "message_id": str(9_000_000 + start + i),
                "publish_time": r.received_at_us,
                "attributes": {},
                "data": r.payload,
            }
            for i, r in enumerate(chunk)
        ]
        # raw/YYYY/MM/DD/hh/ is filename_prefix + filename_datetime_format; then a uuid and the suffix.
        with open(folder / f"6f1d2a34-9c1b-4c8e-b3a0-{n:012d}.avro", "wb") as f:
            fastavro.writer(f, schema, rows)


def beam_lookup_replay(warehouse, staging, root: str, start_us: int, end_us: int):
    """The graph the Dataflow replay runs (``ReplayInput``, ``build_graph``
    asking the warehouse), with DuckDB as the warehouse and its replay commit."""
    import apache_beam as beam

    from pipeline_code.beam.pipeline import build_graph, local_runner
    from pipeline_code.beam.replay_job import ReplayInput, replay_of

    request = ReplayRequest("archive", start_us, end_us)
    with Warehouse(warehouse) as wh:
        generation = wh.generation()
    run = {"run_id": f"beam-{staging.name}", "started_at": 0.0, "events_read": 0, "generation": generation}
    run.update(kind="archive", detail=request.describe())
    lookup = DuckDBLookup(str(warehouse))
    p = beam.Pipeline(runner=local_runner())
    raw = p | ReplayInput(request, replay_of(request, 0), root, "pubsub", lookup)
    sink = LocalWarehouseSink(str(warehouse), str(staging), "archive", 0, 0, run)
    build_graph(raw, None, None, sink, ProcessingSettings(), lookup=lookup)
    p.run().wait_until_finish()


def test_the_dataflow_replay_graph_and_spark_give_the_same_tables_from_the_subscriptions_avro(
    streamed, tmp_path, spark
) -> None:
    log, _, _ = streamed
    subscription_files(log, tmp_path / "gcs")
    root = f"{tmp_path}/gcs/raw/"
    start, end = _range(log)
    beam_wh, spark_wh = tmp_path / "beam.duckdb", tmp_path / "spark.duckdb"
    for wh in (beam_wh, spark_wh):
        Warehouse(wh).close()
    beam_lookup_replay(beam_wh, tmp_path / "beam-stage", root, start, end)
    replay_archive_spark(
        spark_wh, archive_paths(root, "pubsub", start, end), "pubsub", start, end, spark=spark
    )
    for table in TABLES:
        assert rows(beam_wh, table) == rows(spark_wh, table), table
    assert len(rows(beam_wh, "events")) > 2000 and rows(beam_wh, "dead_letters")
    # Asked again over what it stored, the graph changes no row.
    before = {t: rows(beam_wh, t) for t in TABLES}
    beam_lookup_replay(beam_wh, tmp_path / "beam-stage-2", root, start, end)
    assert {t: rows(beam_wh, t) for t in TABLES} == before
