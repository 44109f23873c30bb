"""The dataflow command line."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from pipeline_code.cli import main


def test_generate_is_reproducible(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["generate", "--events", "500", "--out", str(a), "--seed", "3"]) == 0
    assert main(["generate", "--events", "500", "--out", str(b), "--seed", "3"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes().splitlines()) == 500
    assert "wrote 500 events" in capsys.readouterr().out


def test_process_prints_a_summary_that_matches_the_warehouse(tmp_path, capsys):
    data, wh = tmp_path / "e.jsonl", tmp_path / "w.duckdb"
    main(["generate", "--events", "3000", "--out", str(data)])
    assert main(["process", "--input", str(data), "--warehouse", str(wh)]) == 0
    printed = capsys.readouterr().out
    con = duckdb.connect(str(wh), read_only=True)
    stored, dead = (
        con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "dead_letters")
    )
    con.close()
    assert "events read" in printed and "3,000" in printed
    assert f"{stored:,}" in printed and f"{dead:,}" in printed
    assert stored + dead < 3000  # the generator's retries were skipped as duplicates
    assert "committed runs" not in printed  # one run: nothing to say
    assert (
        main(["process", "--input", str(data), "--warehouse", str(tmp_path / "r.duckdb"), "--run-mb", "1"])
        == 0
    )
    assert "committed runs     │ 2 " in capsys.readouterr().out  # 3,000 events are about 1.8 MB of log


@pytest.mark.slow
def test_demo_runs_the_whole_chain(tmp_path, capsys):
    assert main(["demo", "--events", "1500", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for heading in ("warehouse tables", "dead letters by stage", "top items", "item_cooccurrence"):
        assert heading in out
    for heading in ("popularity (baseline)", "blend (candidate)", "NDCG@10", "sample recommendations"):
        assert heading in out
    assert "gate: promoted: no production model yet" in out
    assert (tmp_path / "models" / "LATEST").exists()


def test_train_and_status_on_a_processed_warehouse(trained, tmp_path, capsys):
    warehouse, _, _ = trained
    assert main(["train", "--warehouse", str(warehouse), "--model-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "x the popularity baseline" in out and "SageMaker archive" in out
    assert main(["status", "--warehouse", str(warehouse), "--model-dir", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    for row in ("waiting to be processed (lag)", "dead letters", "trained at", "NDCG@10 blend"):
        assert row in out


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_code.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(tmp_path):
    notdb = tmp_path / "x.duckdb"
    notdb.write_text("not a database")
    data = tmp_path / "e.jsonl"
    data.write_text("{}\n")
    cases = [
        (["process", "--input", str(tmp_path / "missing.jsonl")], 1, "does not exist"),
        (["process", "--input", str(data), "--warehouse", str(notdb)], 1, "cannot be opened"),
        (["process", "--input", str(data), "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["generate", "--out", str(data), "--events", "0"], 1, "events must be at least 1, got 0"),
        (["process", "--input", str(data), "--shards", "0"], 1, "shards must be at least 1, got 0"),
        (["process", "--input", str(data), "--run-mb", "0"], 1, "--run-mb must be at least 1, got 0"),
        (["process", "--input", str(data), "--workers", "0"], 1, "--workers must be at least 1, got 0"),
        (
            ["train", "--warehouse", str(tmp_path / "none.duckdb")],
            1,
            "does not exist: run `dataflow process`",
        ),
        (["train", "--warehouse", str(notdb), "--factors", "0"], 1, "factors must be at least 1, got 0"),
        (["serve", "--model-dir", str(tmp_path)], 1, f"no model in {tmp_path}"),
        (["api", "--model-dir", str(tmp_path)], 1, f"no model in {tmp_path}"),
        (["status", "--warehouse", str(tmp_path / "none.duckdb")], 1, "does not exist"),
    ]
    for args, code, message in cases:
        r = _run(*args)
        assert r.returncode == code, (args, r.stderr)
        assert message in r.stderr
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.spark
def test_process_with_the_spark_engine_counts_like_beam(tmp_path, capsys):
    """``dataflow process --engine spark`` runs the Spark adapter end to end."""
    from pipeline_code.synth import StoreSpec, write

    data = tmp_path / "events.jsonl"
    with open(data, "wb") as f:
        write(StoreSpec(events=600, seed=3), f)
    counts = {}
    for engine in ("beam", "spark"):
        assert (
            main(
                [
                    "process",
                    "--engine",
                    engine,
                    "--input",
                    str(data),
                    "--warehouse",
                    str(tmp_path / f"{engine}.duckdb"),
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        counts[engine] = [line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 3][:4]
    assert counts["spark"] == counts["beam"] and counts["beam"][0] == "600"


@pytest.mark.slow
def test_a_warehouse_held_by_another_process_is_one_line(tmp_path):
    """Two runs on one warehouse: the second says the file is locked, no traceback."""
    warehouse = tmp_path / "w.duckdb"
    data = tmp_path / "e.jsonl"
    assert main(["generate", "--events", "50", "--out", str(data)]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(warehouse)!r}); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        r = _run("process", "--input", str(data), "--warehouse", str(warehouse))
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1, r.stderr
    assert "lock" in r.stderr.lower() and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_process_runs_the_local_runners_default_run_length():
    """``--run-mb``'s default is the local runner's ``RUN_BYTES`` (kept apart
    so that the command line does not load Beam to say it)."""
    from pipeline_code import cli
    from pipeline_code.local.run import RUN_BYTES

    assert cli.RUN_MB << 20 == RUN_BYTES
