"""Conformance: the Beam local runner and the Spark adapter on local PySpark
give identical tables and dead letters from the same arrivals.

One synthetic store arrives in three parts. The parts carry invalid lines
(the hostile corpus), retries of events already stored, duplicates within a
part, and late events (lines held back from the first part, a day older
than the rest of the third). After each part, the Beam chain processes the
log into one warehouse and the Spark adapter into another; every table must
hold the same rows (all columns but ``dead_lettered_at``, the wall clock),
and both runs must report the same counts.
"""

from __future__ import annotations

import json
import math

import duckdb
import pytest

from pipeline_code.local.run import process_log
from pipeline_code.spark.local import process_log_spark
from pipeline_code.streams.eventlog import EventLog
from pipeline_code.synth import StoreSpec, generate
from pipeline_code.tables import TABLES
from tests.conftest import HOSTILE

WALL_CLOCK = {"dead_lettered_at"}


def _store() -> list[bytes]:
    return list(generate(StoreSpec(events=2400, days=3, seed=5)))


def _held_back() -> list[bytes]:
    return _store()[:1000:12]


def arrivals() -> list[list[bytes]]:
    lines = _store()
    first, second, third = lines[:1000], lines[1000:1900], lines[1900:]
    held_back = _held_back()  # arrive late, with the third part
    hostile = [payload for name, payload, _, _ in HOSTILE if name != "five megabytes"]
    return [
        [line for line in first if line not in held_back] + hostile[:6],
        second[:450] + first[100:130] + second[450:] + second[200:205] + hostile[6:12],
        third + held_back + second[::50] + hostile[12:] + [HOSTILE[3][1]],
    ]


def table_rows(warehouse, table: str) -> list[tuple]:
    cols = [c for c in TABLES[table].column_names() if c not in WALL_CLOCK]
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # Sums of shares fold in another order on each engine.
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("conformance")
    log = EventLog(root / "log")
    beam_wh, spark_wh = root / "beam.duckdb", root / "spark.duckdb"
    runs = []
    for part in arrivals():
        log.append(part)
        beam_run = process_log(log.path, beam_wh)
        spark_run = process_log_spark(log.path, spark_wh, spark=spark)
        runs.append((beam_run, spark_run, {t: table_rows(beam_wh, t) for t in TABLES}))
        runs[-1] += ({t: table_rows(spark_wh, t) for t in TABLES},)
    return runs


def test_every_table_is_identical_after_every_part(both_engines):
    for part, (_, _, beam_tables, spark_tables) in enumerate(both_engines, start=1):
        for table in TABLES:
            want, got = beam_tables[table], spark_tables[table]
            assert len(want) == len(got), f"part {part}, {table}: {len(want)} vs {len(got)} rows"
            diff = [(w, g) for w, g in zip(want, got, strict=True) if not same(w, g)]
            assert not diff, f"part {part}, {table}: first difference {diff[0]}"


def test_the_fixture_exercises_every_case(both_engines):
    beam_runs = [b for b, _, _, _ in both_engines]
    assert all(r.events_stored > 0 and r.dead_lettered > 0 for r in beam_runs)
    # Retries of stored events and repeats within a part.
    assert beam_runs[1].duplicates_skipped >= 35
    assert beam_runs[2].duplicates_skipped >= 18
    # The held-back events are stored by the last part, and are older than
    # events stored before them: late.
    held_back = {json.loads(line)["event_id"] for line in _held_back()}
    after = [{row[0]: row[2] for row in tables["events"]} for _, _, tables, _ in both_engines]
    late = {e for e in held_back if e in after[2] and e not in after[1]}
    assert len(late) >= 70
    newest_before = max(after[1].values())
    assert all(after[2][e] < newest_before for e in late)
    stages = {row[3] for row in both_engines[-1][2]["dead_letters"]}
    assert stages == {"parse", "validate"}


def test_both_engines_count_the_same(both_engines):
    for beam_run, spark_run, _, _ in both_engines:
        assert spark_run.balanced
        for field in ("from_offset", "to_offset", "events_read", "events_stored"):
            assert getattr(spark_run, field) == getattr(beam_run, field), field
        assert spark_run.duplicates_skipped == beam_run.duplicates_skipped
        assert spark_run.dead_lettered == beam_run.dead_lettered
