"""The Glue job's own parts, run here: arguments, the connector's rows into
the adapter, the job's import closure, and the Redshift SQL it sends."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline_code.host import ProcessingSettings
from pipeline_code.spark.adapter import process_micro_batch
from pipeline_code.spark.glue import kinesis_source_options, parse_args, parse_replay_args
from pipeline_code.streams.kinesis import to_raw
from pipeline_code.warehouses.duckdb import DuckDBLookup, LocalWarehouseSink, Warehouse
from tests.conftest import line
from tests.pipeline_code.closure import distributions_installed_by

SPARK_DIR = Path(__file__).parents[3] / "pipeline_code" / "spark"
ARGS = [
    "--JOB_ID", "j_1", "--JOB_NAME", "dataflow-dev",
    "--stream_name", "events", "--region", "eu-west-1", "--workgroup", "wg", "--database", "dataflow",
    "--staging_uri", "s3://b/staging/", "--checkpoint_uri", "s3://b/checkpoint/",
    "--dead_letter_uri", "s3://d/", "--copy_role_arn", "arn:aws:iam::123456789012:role/copy",
    "--shards", "4", "--batch_seconds", "20",
]  # fmt: skip


def test_job_arguments_parse_and_glue_extras_are_ignored():
    args = parse_args(ARGS)
    assert (args.job_name, args.staging_uri) == ("dataflow-dev", "s3://b/staging")
    assert args.settings == ProcessingSettings(shards=4, batch_seconds=20)
    assert kinesis_source_options(args)["kinesis.startingposition"] == "TRIM_HORIZON"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--staging_uri", "staging/x", "--staging_uri must be an s3:// URI, got 'staging/x'"),
        ("--batch_seconds", "0", "batch_seconds must be at least 1, got 0"),
        ("--shards", "0", "shards must be at least 1, got 0"),
    ],
)
def test_bad_job_arguments_are_named(flag, value, message):
    argv = [*ARGS]
    argv[argv.index(flag) + 1] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_args(argv)


REPLAY_ARGS = [
    "--JOB_ID", "j_2", "--JOB_NAME", "dataflow-dev-replay", "--archive_uri", "s3://a/raw/",
    "--region", "eu-west-1", "--workgroup", "wg", "--database", "dataflow",
    "--staging_uri", "s3://b/staging/", "--copy_role_arn", "arn:aws:iam::123456789012:role/copy",
    "--replay", "archive", "--replay_from", "2026-11-01", "--replay_to", "2026-11-01T06:00:00+01:00",
]  # fmt: skip


def test_replay_job_arguments_parse_into_a_range_in_utc():
    args = parse_replay_args(REPLAY_ARGS)
    assert (args.archive_uri, args.job_name) == ("s3://a/raw", "dataflow-dev-replay")
    assert args.request.describe() == "archive 2026-11-01T00:00:00+00:00..2026-11-01T05:00:00+00:00"
    assert args.settings == ProcessingSettings()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--replay", "everything", "--replay must be one of archive, dead_letters, got 'everything'"),
        ("--replay_from", "yesterday", "--replay_from must be a date or time like 2026-10-01"),
        ("--replay_to", "2026-10-31", "--replay_to 2026-10-31T00:00:00+00:00 must be after --replay_from"),
        ("--archive_uri", "raw/", "--archive_uri must be an s3:// URI, got 'raw/'"),
    ],
)
def test_bad_replay_arguments_are_named(flag, value, message):
    argv = [*REPLAY_ARGS]
    argv[argv.index(flag) + 1] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_replay_args(argv)


def test_a_dead_letter_replay_takes_a_stage_and_a_since_but_no_range():
    argv = [*REPLAY_ARGS[: REPLAY_ARGS.index("--replay")], "--replay", "dead_letters"]
    request = parse_replay_args([*argv, "--replay_stage", "validate", "--replay_since", "2026-11-02"]).request
    assert request.describe() == "dead_letters stage=validate since=2026-11-02T00:00:00+00:00"
    with pytest.raises(ValueError, match="takes --replay_stage and --replay_since, not a range"):
        parse_replay_args([*argv, "--replay_from", "2026-11-01"])


def test_connector_rows_reach_the_adapter_byte_for_byte(spark, tmp_path):
    """Rows shaped as the Kinesis connector's (binary data, decimal sequence
    number, arrival timestamp) go through ``to_raw`` and the adapter."""
    arrived = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    rows = [
        (line(event_id="k1"), "49590338271490256608559692538361571095921575989136588898", arrived),
        (b"\xff not json", "49590338271490256608559692538361571095921575989136588899", arrived),
    ]
    frame = spark.createDataFrame(
        rows, "data binary, sequenceNumber string, approximateArrivalTimestamp timestamp"
    )
    warehouse = tmp_path / "w.duckdb"
    Warehouse(warehouse).close()
    sink = LocalWarehouseSink(str(warehouse), str(tmp_path / "s"), "kinesis", 0, 2)
    raws = frame.select("data", "sequenceNumber", "approximateArrivalTimestamp").rdd.map(to_raw)
    result = process_micro_batch(raws, DuckDBLookup(str(warehouse)), sink, ProcessingSettings(shards=2))
    assert result.balanced and (result.events_stored, result.dead_lettered) == (1, 1)
    con = duckdb.connect(str(warehouse), read_only=True)
    ((payload, received),) = con.execute("SELECT payload, received_at FROM dead_letters").fetchall()
    con.close()
    assert payload == b"\xff not json" and received == arrived


def test_the_glue_job_imports_only_its_requirements_and_glues_runtime():
    requirements = [
        r for r in (SPARK_DIR / "requirements.txt").read_text().splitlines() if r and not r.startswith("#")
    ]
    # Glue's runtime ships PySpark, pyarrow, numpy and boto3.
    glue = distributions_installed_by([*requirements, "pyspark", "pyarrow", "numpy", "boto3"])
    allowed = glue | {"data-flow"}
    outside = sorted(
        module
        for module, dists in md.packages_distributions().items()
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & allowed
    )
    probe = (
        f"import sys; sys.modules.update(dict.fromkeys({outside!r})); "
        "import pipeline_code.spark.glue, pipeline_code.spark.glue_job, pipeline_code.spark.glue_replay_job; "
        "import pipeline_code.spark.replay; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules if sys.modules[m] is not None})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"apache_beam", "duckdb"} <= set(outside)  # the check has teeth here
    assert not {"apache_beam", "duckdb", "scipy", "pulumi"} & set(done.stdout.split())
