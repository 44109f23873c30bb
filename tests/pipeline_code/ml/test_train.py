"""Training end to end: it beats the baseline and writes a loadable model."""

from __future__ import annotations

import json
import tarfile

import pytest

from pipeline_code.contract import SCHEMA_VERSION
from pipeline_code.ml.model import ARRAYS_FILE, LATEST_FILE, METADATA_FILE, Recommender
from pipeline_code.ml.train import TrainingError, TrainSettings, train


def test_the_served_blend_beats_the_popularity_baseline(trained):
    _, _, result = trained
    base, blend = result.metrics["popularity"], result.metrics["blend"]
    assert blend.users == base.users > 100
    assert blend.ndcg > 1.5 * base.ndcg
    assert blend.recall > base.recall and blend.precision > base.precision
    assert blend.coverage > 5 * base.coverage
    assert set(result.metrics) == {"popularity", "item-to-item", "als", "blend"}


def test_the_model_directory_tarball_and_latest_pointer(trained):
    _, models, result = trained
    assert (models / LATEST_FILE).read_text().strip() == result.version
    assert sorted(p.name for p in result.directory.iterdir()) == [METADATA_FILE, ARRAYS_FILE]
    # SageMaker unpacks model.tar.gz into /opt/ml/model: files at the root.
    with tarfile.open(result.archive) as tar:
        assert sorted(tar.getnames()) == [METADATA_FILE, ARRAYS_FILE]
    meta = json.loads((result.directory / METADATA_FILE).read_text())
    assert meta["model_version"] == result.version
    assert meta["event_schema_version"] == SCHEMA_VERSION
    assert meta["training_window"]["from"] < meta["holdout"]["cutoff"] < meta["training_window"]["to"]
    assert meta["metrics"]["blend"]["ndcg"] == pytest.approx(result.metrics["blend"].ndcg, abs=1e-6)
    assert [offset > 0 for offset in meta["event_log_checkpoints"].values()] == [True]


def test_the_archive_unpacks_to_a_loadable_model(trained, tmp_path):
    _, _, result = trained
    with tarfile.open(result.archive) as tar:
        tar.extractall(tmp_path, filter="data")
    assert Recommender.load(tmp_path).version == result.version


def test_training_is_deterministic(trained, tmp_path):
    warehouse, _, result = trained
    again = train(warehouse, tmp_path / "models")
    assert again.version.split("-")[1] == result.version.split("-")[1]  # same content hash
    assert again.metrics == result.metrics


def test_training_errors_name_the_problem(tmp_path):
    with pytest.raises(TrainingError, match="does not exist: run `dataflow process` first"):
        train(tmp_path / "nope.duckdb", tmp_path / "m")
    (tmp_path / "bad.duckdb").write_text("not a database")
    with pytest.raises(TrainingError, match="cannot be opened"):
        train(tmp_path / "bad.duckdb", tmp_path / "m")
    with pytest.raises(ValueError, match="factors must be at least 1, got 0"):
        TrainSettings(factors=0)
