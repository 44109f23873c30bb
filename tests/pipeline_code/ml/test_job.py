"""The training job under each platform's contract, over a scheduled export's Parquet."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest
import sqlglot

from pipeline_code.ml import job
from pipeline_code.ml.data import (
    EXPORT_COLUMNS,
    TrainingDataError,
    read_exported,
    read_interactions,
)
from pipeline_code.ml.export import export_sql
from pipeline_code.ml.model import Recommender


@pytest.fixture(scope="module")
def export(growing, tmp_path_factory):
    """The warehouse's training export as Parquet files, the way a scheduled
    EXPORT DATA / UNLOAD / CETAS leaves them (several parts, a subfolder)."""
    warehouse = growing[0]
    out = tmp_path_factory.mktemp("export") / "training"
    (out / "run=1").mkdir(parents=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    sql = export_sql("duckdb")
    con.execute(f"COPY ({sql} AND e.source_offset % 2 = 0) TO '{out}/part-0.parquet' (FORMAT parquet)")
    con.execute(f"COPY ({sql} AND e.source_offset % 2 = 1) TO '{out}/run=1/part-1.parquet' (FORMAT parquet)")
    return out


def test_the_export_holds_exactly_what_training_reads_from_the_warehouse(growing, export):
    direct = read_interactions(duckdb.connect(str(growing[0]), read_only=True))
    exported = read_exported(str(export))
    for field in ("user", "item", "weight", "ts", "session", "cooccurs"):
        assert np.array_equal(getattr(direct, field), getattr(exported, field)), field


@pytest.mark.parametrize(
    ("dialect", "read"), [("bigquery", "bigquery"), ("redshift", "redshift"), ("tsql", "tsql")]
)
def test_each_clouds_export_query_parses_in_its_dialect(dialect, read):
    sql = export_sql(dialect)
    tree = sqlglot.parse_one(sql, read=read)
    assert [c.alias_or_name for c in tree.expressions] == list(EXPORT_COLUMNS)


def _check_version(out, decision_dir=None):
    decision = json.loads((out / job.DECISION_FILE).read_text())
    model = Recommender.load(out)
    assert model.version == decision["model_version"]
    assert model.metadata["gate"]["decision"] == decision["decision"]
    if decision_dir is not None:
        assert json.loads((decision_dir / job.DECISION_FILE).read_text()) == decision
    return decision


def test_sagemaker_channels_hyperparameters_and_model_dir(growing, export, tmp_path):
    first = growing[2]
    ml = tmp_path / "opt" / "ml"
    shutil.copytree(export, ml / "input" / "data" / "training")
    shutil.copytree(first.directory, ml / "input" / "data" / "production")
    (ml / "input" / "config").mkdir(parents=True)
    # SageMaker writes every hyperparameter as a string.
    (ml / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"factors": "32", "iterations": "15", "tolerance": "0.05"})
    )
    (ml / "output").mkdir()
    assert job.main(["train"], env={}, sagemaker=ml) == 0
    decision = _check_version(ml / "model", ml / "output" / "data")
    assert decision["production_version"] == first.version and decision["tolerance"] == 0.05
    assert decision["production_scored_as"] == "artifact" and decision["decision"] == "promoted"


def test_a_sagemaker_failure_is_written_where_sagemaker_reads_the_reason(tmp_path):
    ml = tmp_path / "opt" / "ml"
    (ml / "input" / "data" / "training").mkdir(parents=True)
    (ml / "output").mkdir()
    assert job.main(["train"], env={}, sagemaker=ml) == 1
    failure = (ml / "output" / "failure").read_text()
    assert failure.startswith("training failed: no exported training files under")


def test_vertex_custom_job_arguments_and_aip_model_dir(export, growing, tmp_path, monkeypatch):
    monkeypatch.setattr(job, "_gcs_path", lambda uri: tmp_path / "gcs" / uri.removeprefix("gs://"))
    env = {"AIP_MODEL_DIR": "gs://models-bucket/runs/7/model/"}
    argv = ["--training-data", str(export), "--production", str(growing[1] / growing[3].version)]
    assert job.main(argv, env=env, sagemaker=tmp_path / "none") == 0
    decision = _check_version(tmp_path / "gcs" / "models-bucket" / "runs" / "7" / "model")
    assert decision["production_version"] == growing[3].version


def test_azure_ml_command_job_inputs_and_outputs_as_paths(export, tmp_path):
    out = tmp_path / "outputs" / "model"
    argv = ["--training-data", str(export), "--model-out", str(out), "--factors", "16"]
    assert job.main(argv, env={}, sagemaker=tmp_path / "none") == 0
    decision = _check_version(out)
    # No production input: the first model, judged against the baseline only.
    assert decision["production_version"] is None and decision["decision"] == "promoted"
    assert Recommender.load(out).metadata["settings"]["factors"] == 16


def test_bad_inputs_name_themselves(tmp_path, capsys):
    assert job.main([], env={}, sagemaker=tmp_path) == 1
    assert "no training data: pass --training-data" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.parquet").write_bytes(b"not parquet")
    assert job.main(["--training-data", str(tmp_path / "d"), "--model-out", str(tmp_path / "o")], env={}) == 1
    assert "cannot be read" in capsys.readouterr().err
    argv = ["--training-data", str(tmp_path / "d"), "--model-out", str(tmp_path / "o")]
    (tmp_path / "ml" / "input" / "config").mkdir(parents=True)
    (tmp_path / "ml" / "input" / "config" / "hyperparameters.json").write_text('{"factors": "many"}')
    assert job.main(argv, env={}, sagemaker=tmp_path / "ml") == 1
    assert "hyperparameter factors must be a number, got 'many'" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    duckdb.connect().execute(f"COPY (SELECT 1 AS a) TO '{tmp_path}/e/p.parquet'")
    with pytest.raises(TrainingDataError, match="lacks columns"):
        read_exported(str(tmp_path / "e"))


def _registry_lines(store):
    from pipeline_code.ml.publish import served

    return served(store), sorted({k.split("/")[0] for k in store.keys("")})


def test_the_job_publishes_to_a_registry_and_rolls_back(growing, export, tmp_path, capsys):
    from pipeline_code.ml.publish import FolderStore

    registry = tmp_path / "registry"
    first = ["--training-data", str(export), "--model-out", str(tmp_path / "o1"), "--registry", str(registry)]
    assert job.main(first, env={}, sagemaker=tmp_path / "none") == 0
    assert '"RefusalsInARow": 0.0' in capsys.readouterr().out
    store = FolderStore(registry)
    v1 = (registry / "LATEST").read_text().strip()
    assert (registry / "production" / "metadata.json").exists() and (registry / f"{v1}.tar.gz").exists()
    # The next job compares against what the registry serves.
    again = [
        "--training-data",
        str(export),
        "--registry",
        str(registry),
        "--production",
        str(registry / "production"),
    ]
    second = [*again, "--model-out", str(tmp_path / "o2"), "--factors", "1", "--iterations", "1"]
    assert job.main(second, env={}, sagemaker=tmp_path / "none") == 0
    printed = capsys.readouterr().out
    assert "refused: not rolled out" in printed
    # What the alerts watch: one refusal since the last promotion, a model promoted moments ago.
    health = json.loads(next(x for x in printed.splitlines() if "dataflow_training" in x))[
        "dataflow_training"
    ]
    assert (
        health["RefusalsInARow"] == 1
        and health["ModelsTrained"] == 1
        and 0 <= health["ServedModelAgeDays"] < 0.01
    )
    assert _registry_lines(store)[0] == v1  # a refused candidate is kept, not served
    # Other settings (a different version, whatever the second), promoted by a loose gate.
    third = [*again, "--model-out", str(tmp_path / "o3"), "--tolerance", "0.5", "--factors", "16"]
    assert job.main(third, env={}, sagemaker=tmp_path / "none") == 0
    assert '"RefusalsInARow": 0.0' in capsys.readouterr().out
    v3 = (registry / "LATEST").read_text().strip()
    assert (
        v3 != v1
        and json.loads((registry / "production" / "metadata.json").read_text())["model_version"] == v3
    )
    assert job.main(["--rollback", "--registry", str(registry)], env={}) == 0
    assert f"rolled back to {v1} (was {v3}); no ROLLOUT target" in capsys.readouterr().out
    assert json.loads((registry / "production" / "metadata.json").read_text())["model_version"] == v1
    assert job.main(["--rollback", "--registry", str(registry)], env={}) == 1
    assert "nothing to roll back to" in capsys.readouterr().err


@pytest.mark.standin
def test_the_registry_on_s3_is_the_same_layout(growing, tmp_path):
    import boto3

    from pipeline_code.ml.publish import S3Store, previous_version, publish, serve
    from tests.pipeline_code.userstate import standins

    server = standins.moto_server()
    url = next(server)
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name="eu-west-1")
        s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        store = S3Store("s3://models/registry/", client=s3)
        _, _, first, second = growing
        for result in (first, second):
            meta = json.loads((result.directory / "metadata.json").read_text())
            assert publish(store, result.directory, {"model_version": result.version, **meta["gate"]})
        assert (
            s3.get_object(Bucket="models", Key="registry/LATEST")["Body"].read().decode().strip()
            == second.version
        )
        assert previous_version(store) == first.version
        serve(store, first.version, "rollback", "test")
        body = s3.get_object(Bucket="models", Key="registry/production/metadata.json")["Body"].read()
        assert json.loads(body)["model_version"] == first.version
        import io
        import tarfile

        tar = s3.get_object(Bucket="models", Key=f"registry/{first.version}.tar.gz")["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            assert sorted(t.getnames()) == ["metadata.json", "model.npz"]
    finally:
        server.close()


def test_a_bad_rollout_target_names_the_field():
    from pipeline_code.ml.deploy import DeployError, target_from_env

    assert target_from_env({}) is None
    with pytest.raises(DeployError, match="platform must be one of"):
        target_from_env({"ROLLOUT": '{"platform": "heroku"}'})
    with pytest.raises(DeployError, match=r"unknown fields \['endpont'\]"):
        target_from_env({"ROLLOUT": '{"platform": "sagemaker", "endpont": "x"}'})
    platform, target, canary, bake = target_from_env(
        {"ROLLOUT": json.dumps({"platform": "azureml", "endpoint": "e", "location": "westeurope",
                                "environment_id": "env", "model_name": "m", "workspace_id": "w",
                                "instance_type": "Standard_DS2_v2", "instance_count": 1, "bake_seconds": 60})}
    )  # fmt: skip
    assert (platform, target.endpoint, canary, bake) == ("azureml", "e", 10, 60)


def test_the_training_image_needs_only_its_requirements():
    """The image installs pipeline_code/ml/requirements.txt only: every
    third-party module the job imports (at start, and for training) comes from it."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, pipeline_code.ml.job, pipeline_code.ml.deploy, pipeline_code.ml.publish; "
        "import implicit.cpu.als, threadpoolctl, boto3, google.auth, azure.identity, httpx; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", probe], text=True).split())
    loaded = {m for m in loaded if not m.startswith(("_", "pipeline_code")) and m != "cython_runtime"}
    lines = Path("pipeline_code/ml/requirements.txt").read_text().splitlines()
    named = {r.split(">=")[0].replace("-", "_") for r in lines if r and not r.startswith("#")}
    named = {"google" if n == "google_auth" else "azure" if n == "azure_identity" else n for n in named}
    # What those packages install with them.
    brought = {"botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six", "charset_normalizer",
               "idna", "certifi", "typing_extensions", "cachetools", "pyasn1", "pyasn1_modules", "rsa",
               "msal", "msal_extensions", "jwt", "cryptography", "cffi", "anyio", "sniffio", "httpcore",
               "h11", "tqdm", "portalocker", "isodate", "azure", "packaging"}  # fmt: skip
    # What httpx imports only when it is installed (its CLI, zstd decoding).
    optional = {"click", "rich", "pygments", "zstandard", "backports"}
    assert loaded <= named | brought | optional, loaded - named - brought - optional


def test_the_rows_a_cloud_job_records_are_the_local_ones_in_each_dialect(growing, tmp_path):
    import datetime as dt

    from pipeline_code.ml.publish import FolderStore, publish, served
    from pipeline_code.ml.record import bigquery_rows, redshift_statements, rows_for
    from pipeline_code.tables import TABLES
    from pipeline_code.warehouses.bigquery import schema_fields

    warehouse, _, first, second = growing
    store = FolderStore(tmp_path / "registry")
    for result in (first, second):
        meta = json.loads((result.directory / "metadata.json").read_text())
        before = served(store)
        publish(store, result.directory, {"model_version": result.version, **meta["gate"]})
    at = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    rows = rows_for(store, second.version, before, served(store), at)
    assert [(r["model_version"], r["serving"]) for r in rows] == [
        (second.version, True),
        (first.version, False),
    ]
    # The same decision, reason and numbers `dataflow train` wrote locally.
    local = dict(
        duckdb.connect(str(warehouse), read_only=True)
        .execute("SELECT model_version, reason FROM model_versions")
        .fetchall()
    )
    assert rows[0]["reason"] == local[second.version] and rows[1]["reason"] == local[first.version]
    for sql in redshift_statements(rows):
        assert sqlglot.parse_one(sql, read="redshift")
    insert = redshift_statements(rows)[1]
    assert insert.startswith("INSERT INTO model_versions (model_version, trained_at") and "TRUE" in insert
    fields = {f["name"] for f in schema_fields(TABLES["model_versions"])}
    for row in bigquery_rows(rows, 1_764_460_800_000_000):
        assert set(row["json"]) == fields and row["json"]["changed_at"].startswith("2025-11-30")
    # Azure's: a Parquet file per version in the registry (the table's schema), overwritten on change.
    import pyarrow.parquet as pq

    from pipeline_code.ml.record import RecordError, record
    from pipeline_code.tables import arrow_schema

    record("registry:decisions/", rows, 0, store)
    record("registry:decisions/", rows_for(store, second.version, None, served(store), at), 0, store)
    files = sorted(store.keys("decisions/"))
    assert files == sorted(f"decisions/{v}.parquet" for v in (first.version, second.version))
    back = {}
    for key in files:
        table = pq.read_table(tmp_path / "registry" / key)
        assert table.schema == arrow_schema(TABLES["model_versions"])
        back.update({r["model_version"]: r for r in table.to_pylist()})
    assert (back[second.version]["serving"], back[first.version]["serving"]) == (True, False)
    assert back[second.version]["reason"] == local[second.version]
    with pytest.raises(RecordError, match="registry:PREFIX/"):
        record("registry:Decisions", rows, 0, store)
