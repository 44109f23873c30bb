"""Throughput of ``dataflow process`` (Beam, local runner, in its default
runs of 96 MB of log, each shared by one process per core) against two
references measured in the same run, each in its own process (events/s, CPU
seconds per 1,000 events of every process involved, and peak memory: the
largest sum of the resident sizes of the process and its workers):

    python bench/pipeline.py --events 200000

It also times the Beam path in one process (``--workers 1``), so the gain
of sharing runs across processes shows as its own ratio. ``--only`` times
some of the four, for instance the memory bound on a large input (peak
summed RSS under 1.5 GB at 2M events), where the per-record core, which
holds the whole input, would need many times that:

    python bench/pipeline.py --events 2000000 --repeat 1 --only beam beam1

- **plain SQL** (the honest reference, issue 20): DuckDB over the same NDJSON
  file, parsing, deduplicating by event id, and building sessions (30-minute
  gap), weighted user-item interactions, hourly item popularity and session
  item co-occurrence. It skips what it cannot parse instead of keeping a
  dead letter per line, and validates nothing: a floor for what the work
  costs on this machine, not the same tables.
- **per-record core**: the same core functions in one process with no
  engine, staged with pyarrow and loaded with the same DuckDB merge; it must
  give the same tables as the Beam path (checked), so that ratio isolates
  what the engine, the event log and the shuffle cost.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from pipeline_code.core import features as feat
from pipeline_code.core.history import enrich_shard, keep_first_seen
from pipeline_code.core.parse import RawEvent, now_us, parse_batch
from pipeline_code.local.run import default_workers, process_files
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


SQL_REFERENCE = """
CREATE TABLE raw AS
SELECT * FROM read_json(?, format = 'newline_delimited', ignore_errors = true,
    maximum_object_size = 1048576,
    columns = {event_id: 'VARCHAR', event_name: 'VARCHAR', event_timestamp: 'VARCHAR', user_id: 'VARCHAR',
               anonymous_id: 'VARCHAR', session_id: 'VARCHAR',
               items: 'STRUCT(item_id VARCHAR, price DOUBLE, quantity BIGINT)[]'});
CREATE TABLE events AS
SELECT * EXCLUDE (event_timestamp), try_cast(event_timestamp AS TIMESTAMPTZ) AS ts,
       coalesce(user_id, 'anon:' || anonymous_id) AS user_key
FROM raw WHERE event_id IS NOT NULL AND try_cast(event_timestamp AS TIMESTAMPTZ) IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY event_id) = 1;
CREATE TABLE sessionised AS
SELECT *, user_key || ':' || sum(gap) OVER (PARTITION BY user_key ORDER BY ts, event_id) AS session_key FROM (
    SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY user_key ORDER BY ts, event_id) <= INTERVAL 30 MINUTE
                   THEN 0 ELSE 1 END AS gap
    FROM events);
CREATE TABLE sessions AS
SELECT session_key, any_value(user_key) AS user_key, min(ts) AS started_at, max(ts) AS ended_at,
       count(*) AS events
FROM sessionised GROUP BY session_key;
CREATE TABLE event_items AS
SELECT user_key, session_key, ts, event_name, unnest(items).item_id AS item_id
FROM sessionised WHERE items IS NOT NULL;
CREATE TABLE user_item_interactions AS
SELECT user_key, item_id,
       sum(CASE event_name WHEN 'purchase' THEN 5 WHEN 'add_to_cart' THEN 3 ELSE 1 END) AS weight,
       max(ts) AS last_at
FROM event_items GROUP BY ALL;
CREATE TABLE item_popularity AS
SELECT date_trunc('hour', ts) AS window_start, item_id, count(*) AS events FROM event_items GROUP BY ALL;
CREATE TABLE item_cooccurrence AS
SELECT a.item_id AS item_id, b.item_id AS other_item_id, count(DISTINCT a.session_key) AS sessions
FROM (SELECT DISTINCT session_key, item_id FROM event_items) a
JOIN (SELECT DISTINCT session_key, item_id FROM event_items) b
  ON a.session_key = b.session_key AND a.item_id <> b.item_id
GROUP BY ALL;
DROP TABLE raw;
"""


def sql_reference(path: Path, warehouse: Path, _staging: Path) -> int:
    """The plain-SQL reference: returns the lines it read (the file's lines)."""
    with duckdb.connect(str(warehouse)) as con:
        statements = [s for s in SQL_REFERENCE.split(";") if s.strip()]
        con.execute(statements[0], [str(path)])
        for sql in statements[1:]:
            con.execute(sql)
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def beam_path(path: Path, warehouse: Path, _staging: Path) -> int:
    return process_files([path], warehouse).events_read


def beam_one_process(path: Path, warehouse: Path, _staging: Path) -> int:
    return process_files([path], warehouse, workers=1).events_read


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process under it (Linux ``/proc``);
    pages the workers share with the parent they forked from count in each,
    so this errs high."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024
        except (OSError, StopIteration):
            continue
    return total


def _measured(target, path: Path, warehouse: Path, staging: Path, out) -> None:
    """In a child: run ``target`` and send back its seconds, CPU seconds (its
    own and its finished workers') and its largest single-process peak RSS."""
    logging.getLogger().setLevel(logging.ERROR)
    wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    read = target(path, warehouse, staging)
    after = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (
        (after.ru_utime - before.ru_utime)
        + (after.ru_stime - before.ru_stime)
        + kids.ru_utime
        + kids.ru_stime
    )
    out.send((read, time.perf_counter() - wall, cpu, max(after.ru_maxrss, kids.ru_maxrss) / 1024))


def measure(target, path: Path, warehouse: Path, staging: Path) -> tuple[int, float, float, float]:
    """``(events read, seconds, CPU seconds, peak MB)`` of ``target`` in a
    fresh process. The peak is the larger of its processes' summed RSS,
    sampled from here (so the sampling costs the measured process nothing),
    and its largest single process's own peak (exact, where sampling can miss)."""
    mine, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=_measured, args=(target, path, warehouse, staging, theirs)
    )
    child.start()
    peak = 0
    while not mine.poll(0.1):
        peak = max(peak, tree_rss(child.pid))
    read, seconds, cpu, biggest = mine.recv()
    child.join()
    return read, seconds, cpu, max(biggest, peak / 2**20)


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


TARGETS = {"beam": beam_path, "beam1": beam_one_process, "sql": sql_reference, "core": reference}
LABELS = {
    "beam": "beam path (dataflow process, {workers} processes)",
    "beam1": "beam path in one process (--workers 1)",
    "sql": "plain SQL (DuckDB over the NDJSON file)",
    "core": "per-record core (one process + DuckDB)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs each")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(LABELS),
        default=list(LABELS),
        help="time only these (default: all; the ratios and the check of equal tables need both sides)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "events.jsonl"
        with open(data, "wb") as f:
            write(StoreSpec(events=args.events), f)
        paths = {name: target for name, target in TARGETS.items() if name in args.only}
        runs: dict[str, list[tuple[int, float, float, float]]] = {name: [] for name in paths}
        for i in range(args.repeat):
            for name, target in paths.items():
                runs[name].append(
                    measure(target, data, root / f"{name}{i}.duckdb", root / f"staging-{name}{i}")
                )
        compared = [name for name in ("beam", "beam1", "core") if name in paths]
        same = None
        if len(compared) > 1:
            prints = {name: fingerprint(root / f"{name}0.duckdb") for name in compared}
            same = all(prints[name] == prints[compared[0]] for name in compared)
        sql_rows = None
        if "sql" in paths:
            with duckdb.connect(str(root / "sql0.duckdb"), read_only=True) as con:
                tables = [
                    r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
                ]
                sql_rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
            duckdb.default_connection().close()

    best = {name: min(r, key=lambda x: x[1]) for name, r in runs.items()}
    rate = {name: args.events / b[1] for name, b in best.items()}
    print(f"events: {args.events:,} (best of {args.repeat}); cores: {multiprocessing.cpu_count()}")
    for name, (_, seconds, cpu, peak) in best.items():
        label = LABELS[name].format(workers=default_workers())
        print(
            f"{label:44s} {rate[name]:9,.0f} events/s  {seconds:6.2f}s  "
            f"{cpu / args.events * 1000:6.3f} CPU s/1k events  peak {peak:7,.0f} MB"
        )
    if sql_rows is not None:
        print("plain SQL rows: " + ", ".join(f"{t} {n:,}" for t, n in sql_rows.items()))
    if same is not None:
        print(f"same tables ({', '.join(LABELS[name].split(' (')[0] for name in compared)}): {same}")
        if not same:
            for t, fp in prints[compared[0]].items():
                others = {name: prints[name].get(t) for name in compared[1:]}
                if any(o != fp for o in others.values()):
                    print(f"  {t}: {compared[0]} {fp} " + " ".join(f"{n} {o}" for n, o in others.items()))
    for other, what, target in (
        ("sql", "plain SQL", " (target >= 0.5x)"),
        ("core", "per-record core", ""),
        ("beam1", "one process", ""),
    ):
        if "beam" in rate and other in rate:
            print(f"ratio beam/{what + ':':16s} {rate['beam'] / rate[other]:.2f}x{target}")


if __name__ == "__main__":
    main()
