"""The slow path's gate and registry: what is promoted, what is refused, and rollback."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from pipeline_code.ml.model import ARRAYS_FILE, LATEST_FILE
from pipeline_code.ml.registry import Registry, RegistryError, decide
from pipeline_code.ml.train import TrainSettings, train


@pytest.mark.parametrize(
    ("candidate", "baseline", "production", "promoted", "says"),
    [
        (0.30, 0.10, 0.25, True, "candidate NDCG 0.3000 >= production v1 NDCG 0.2500"),  # better
        (0.20, 0.10, 0.25, False, "candidate NDCG 0.2000 < production v1 NDCG 0.2500 x (1 - 0.02) = 0.2450"),
        (0.246, 0.10, 0.25, True, "0.2460 >= production v1 NDCG 0.2500 x (1 - 0.02) = 0.2450"),  # within
        (0.20, 0.10, None, True, "no production model yet; candidate NDCG 0.2000 beats the baseline's"),
        (0.20, 0.30, 0.10, False, "does not beat the popularity baseline's 0.3000"),  # baseline beats both
        (0.10, 0.10, None, False, "does not beat the popularity baseline's 0.1000"),  # a tie is not better
    ],
)
def test_the_gate_on_constructed_cases(candidate, baseline, production, promoted, says):
    d = decide(candidate, baseline, 0.02, production, "v1" if production is not None else None, "artifact")
    assert d.promoted is promoted
    assert says in d.reason
    assert d.as_dict()["decision"] == ("promoted" if promoted else "refused")


def test_a_tolerance_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"tolerance must be in \[0, 1\), got 1.5"):
        decide(0.2, 0.1, 1.5)


def test_training_twice_on_a_growing_warehouse_promotes_the_second_model(growing):
    warehouse, models, first, second = growing
    assert first.promoted and first.decision.production_version is None
    assert second.promoted, second.decision.reason
    # The first model never saw the holdout, so the artefact itself was scored.
    assert second.decision.production_version == first.version
    assert second.decision.production_scored_as == "artifact"
    assert (models / LATEST_FILE).read_text().strip() == second.version
    meta = json.loads((second.directory / "metadata.json").read_text())
    assert meta["gate"]["decision"] == "promoted"
    assert meta["metrics"]["production"]["ndcg"] == pytest.approx(second.decision.production_ndcg, abs=1e-6)
    rows = (
        duckdb.connect(str(warehouse), read_only=True)
        .execute(
            "SELECT model_version, decision, serving, production_version FROM model_versions "
            "ORDER BY trained_at"
        )
        .fetchall()
    )
    assert rows[:2] == [
        (first.version, "promoted", False, None),
        (second.version, "promoted", True, first.version),
    ]


def test_a_worse_candidate_is_refused_kept_and_not_served(growing, tmp_path):
    warehouse, models, _, _ = growing
    work = tmp_path / "models"
    subprocess.run(["cp", "-a", str(models), str(work)], check=True)
    served = Registry(work).served()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_code.cli", "train", "--warehouse", str(warehouse),
         "--model-dir", str(work), "--factors", "1", "--iterations", "1"],
        capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("gate:"))
    assert "refused" in line and f"< production {served} NDCG" in line and "x (1 - 0.02)" in line
    assert Registry(work).served() == served  # unchanged
    refused = [v for v in Registry(work).versions() if v.gate.get("decision") == "refused"]
    assert len(refused) == 1 and (refused[0].directory / ARRAYS_FILE).exists()
    # Production had seen this holdout (same data): its settings were refit instead.
    assert refused[0].gate["production_scored_as"] == "refit"
    row = (
        duckdb.connect(str(warehouse), read_only=True)
        .execute(
            "SELECT decision, serving, reason FROM model_versions WHERE model_version = ?",
            [refused[0].version],
        )
        .fetchone()
    )
    assert row[:2] == ("refused", False) and row[2] == refused[0].gate["reason"]


def test_promote_and_rollback_walk_the_served_versions(growing, tmp_path):
    _, models, first, second = growing
    work = tmp_path / "models"
    subprocess.run(["cp", "-a", str(models), str(work)], check=True)
    reg = Registry(work)
    assert reg.stack() == [first.version, second.version]
    assert reg.rollback()["version"] == first.version and reg.served() == first.version
    with pytest.raises(RegistryError, match=f"nothing to roll back to: {first.version} is the only"):
        reg.rollback()
    reg.promote(second.version, "by hand")
    assert reg.served() == second.version
    with pytest.raises(RegistryError, match="already served"):
        reg.promote(second.version, "again")
    with pytest.raises(RegistryError, match="version 'nope' is not in"):
        reg.promote("nope", "typo")
    assert [e["action"] for e in reg.history()] == ["promote", "promote", "rollback", "promote"]


def test_the_models_command_lists_promotes_and_rolls_back(growing, tmp_path):
    warehouse, models, first, second = growing
    work = tmp_path / "models"
    subprocess.run(["cp", "-a", str(models), str(work)], check=True)
    wh = tmp_path / "warehouse.duckdb"
    subprocess.run(["cp", str(warehouse), str(wh)], check=True)

    def dataflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline_code.cli", "models", *args, "--model-dir", str(work),
             "--warehouse", str(wh)],
            capture_output=True, text=True, env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    listed = dataflow()
    assert listed.returncode == 0 and f"{second.version} (serving)" in listed.stdout
    assert "no production model yet" in listed.stdout
    rolled = dataflow("rollback")
    assert rolled.returncode == 0 and f"serving {first.version} (was {second.version})" in rolled.stdout
    serving = (
        duckdb.connect(str(wh), read_only=True)
        .execute("SELECT model_version FROM model_versions WHERE serving")
        .fetchall()
    )
    assert serving == [(first.version,)]
    missing = dataflow("promote")
    assert missing.returncode != 0 and "name the VERSION" in missing.stderr + missing.stdout


def test_a_production_model_that_cannot_load_stops_training_with_its_name(growing, tmp_path):
    warehouse, models, _, second = growing
    work = tmp_path / "models"
    subprocess.run(["cp", "-a", str(models), str(work)], check=True)
    (work / second.version / ARRAYS_FILE).write_bytes(b"garbage")
    from pipeline_code.ml.train import TrainingError

    with pytest.raises(TrainingError, match=f"production model {second.version} cannot be loaded"):
        train(warehouse, work, TrainSettings())
