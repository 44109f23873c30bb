"""Throughput of ``dataflow process`` (Beam, local runner) against a
hand-written single-process job that builds the same tables from the same
file, measured in the same run.

    python bench/pipeline.py --events 100000

The reference reads the file directly (no event log), runs the same core
functions in one process with no engine, stages with pyarrow and loads with
the same DuckDB merge. It cannot produce the same dead-letter reasons,
sessions and features any other way, so the ratio isolates what the Beam
path costs: the engine, the event log and the shuffle. The script checks
that both warehouses hold the same rows before it prints the ratio.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import duckdb

from pipeline_code.core import features as feat
from pipeline_code.core.history import enrich_shard, keep_first_seen
from pipeline_code.core.parse import RawEvent, now_us, parse_batch
from pipeline_code.local.run import process_files
from pipeline_code.streams.eventlog import iter_input_lines
from pipeline_code.synth import StoreSpec, write
from pipeline_code.warehouses.duckdb import LocalWarehouseSink, Warehouse

WINDOW_US = 3_600_000_000

# Columns that depend on when or where a run happened, not on the input.
VOLATILE = {"received_at", "dead_lettered_at", "source_offset"}


def reference(path: Path, warehouse: Path, staging: Path) -> int:
    """The whole chain in one process: returns events read."""
    received = now_us()
    raws = [RawEvent(i, received, line) for i, line in enumerate(iter_input_lines(path))]
    records, dead = parse_batch(raws)
    unique, _ = keep_first_seen(records)
    enriched, users = enrich_shard(unique, {})
    windows = feat.popularity_counts(enriched, WINDOW_US)
    popularity = [row for start, c in windows.items() for row in feat.popularity_rows(start, WINDOW_US, c)]
    tables = {
        "events": enriched,
        "dead_letters": dead,
        "user_features": [u.to_row() for u in users],
        "sessions": feat.session_rows(enriched),
        "user_item_interactions": feat.user_item_interactions(enriched),
        "item_features": feat.item_features(enriched),
        "item_cooccurrence": feat.item_cooccurrence(enriched),
        "item_popularity": popularity,
    }
    sink = LocalWarehouseSink(str(warehouse), str(staging), "reference", 0, 1)
    sink.commit({name: [sink.stage(name, rows)] for name, rows in tables.items() if rows})
    return len(raws)


def fingerprint(warehouse: Path) -> dict[str, tuple]:
    """Per table: row count and an order-independent hash of stable columns."""
    out = {}
    with Warehouse(warehouse, read_only=True) as wh:
        for table in wh.row_counts():
            cols = [
                r[0]
                for r in wh.con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
                ).fetchall()
                if r[0] not in VOLATILE
            ]
            n, h = wh.con.execute(f"SELECT count(*), sum(hash({', '.join(cols)})) FROM {table}").fetchone()
            out[table] = (n, h)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs each")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "events.jsonl"
        with open(data, "wb") as f:
            write(StoreSpec(events=args.events), f)
        beam_s, ref_s = [], []
        for i in range(args.repeat):
            t = time.perf_counter()
            summary = process_files([data], root / f"beam{i}.duckdb")
            beam_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            read = reference(data, root / f"ref{i}.duckdb", root / f"staging{i}")
            ref_s.append(time.perf_counter() - t)
            assert read == summary.events_read, (read, summary.events_read)
        beam_fp, ref_fp = fingerprint(root / "beam0.duckdb"), fingerprint(root / "ref0.duckdb")
        same = beam_fp == ref_fp
        duckdb.default_connection().close()

    beam_rate = args.events / min(beam_s)
    ref_rate = args.events / min(ref_s)
    print(f"events: {args.events:,} (best of {args.repeat})")
    print(f"beam path (dataflow process, FnApiRunner): {beam_rate:10,.0f} events/s  {min(beam_s):.2f}s")
    print(f"reference (one process, core + DuckDB):    {ref_rate:10,.0f} events/s  {min(ref_s):.2f}s")
    print(f"same tables: {same}")
    if not same:
        for t in beam_fp:
            if beam_fp[t] != ref_fp[t]:
                print(f"  {t}: beam {beam_fp[t]} reference {ref_fp[t]}")
    print(f"ratio beam/reference: {beam_rate / ref_rate:.2f}x (target >= 0.5x)")


if __name__ == "__main__":
    main()
