"""Training data for the recommender, read from the warehouse.

The recommender learns from the same implicit feedback the pipeline writes
to ``user_item_interactions`` and ``item_cooccurrence``. Those tables are
running totals with no time axis, so a holdout split by time cannot be cut
from them. This module therefore reads the underlying interactions from
``events`` (human traffic, one row per event and item, weighted by
``core.features.INTERACTION_WEIGHTS``) and rebuilds the totals for any time
range; with no cutoff they equal the stored tables, which the tests assert.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
from scipy import sparse

from pipeline_code.core.features import COOCCURRENCE_EVENTS
from pipeline_code.ml.export import EXPORT_COLUMNS, export_sql, weight_case

US_PER_DAY = 86_400 * 1_000_000


class TrainingDataError(Exception):
    """The warehouse has nothing (or not enough) to train on."""


@dataclass(frozen=True)
class Interactions:
    """One row per (human) event and item, as parallel arrays, time-ordered."""

    user: np.ndarray  # object array of user_key
    item: np.ndarray  # object array of item_id
    weight: np.ndarray  # float64, INTERACTION_WEIGHTS of the event
    ts: np.ndarray  # int64 microseconds since the epoch
    session: np.ndarray  # object array of session_key
    cooccurs: np.ndarray  # bool: the event counts for item co-occurrence

    def __len__(self) -> int:
        return len(self.ts)

    def where(self, mask: np.ndarray) -> Interactions:
        return Interactions(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    @property
    def first_us(self) -> int:
        return int(self.ts[0])

    @property
    def last_us(self) -> int:
        return int(self.ts[-1])


def _interactions(con: duckdb.DuckDBPyConnection, source: str) -> Interactions:
    co = ", ".join(f"'{n}'" for n in sorted(COOCCURRENCE_EVENTS))
    cols = con.execute(
        f"""
        SELECT user_key, item_id, {weight_case()} AS weight,
               epoch_us(event_timestamp) AS ts, session_key, event_name IN ({co}) AS cooccurs
        FROM {source}
        ORDER BY ts, source_offset, item_id
        """
    ).fetchnumpy()
    data = Interactions(
        user=np.asarray(cols["user_key"], dtype=object),
        item=np.asarray(cols["item_id"], dtype=object),
        weight=np.asarray(cols["weight"], dtype=np.float64),
        ts=np.asarray(cols["ts"], dtype=np.int64),
        session=np.asarray(cols["session_key"], dtype=object),
        cooccurs=np.asarray(cols["cooccurs"], dtype=bool),
    )
    if len(data) == 0:
        raise TrainingDataError("the warehouse has no item interactions yet: run `dataflow process` first")
    return data


def read_interactions(con: duckdb.DuckDBPyConnection) -> Interactions:
    """Every human interaction with an item, oldest first."""
    return _interactions(con, f"({export_sql('duckdb')})")


def read_exported(directory: str) -> Interactions:
    """The training export's Parquet files under ``directory`` (any depth), as
    a cloud's scheduled export writes them."""
    files = sorted(str(p) for p in Path(directory).rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TrainingDataError(f"no exported training files under {directory}")
    con = duckdb.connect()
    try:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        got = con.execute(f"SELECT * FROM read_parquet([{listed}]) LIMIT 0").description
        missing = set(EXPORT_COLUMNS) - {c[0] for c in got}
        if missing:
            raise TrainingDataError(f"the export under {directory} lacks columns {sorted(missing)}")
        return _interactions(con, f"read_parquet([{listed}])")
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise TrainingDataError(f"the export under {directory} cannot be read: {reason}") from exc
    finally:
        con.close()


def split_by_time(data: Interactions, holdout_days: float) -> tuple[Interactions, Interactions, int]:
    """Train on everything before the cutoff, test on what comes after.

    The cutoff is ``holdout_days`` before the newest interaction. Returns
    (train, test, cutoff_us).
    """
    if holdout_days <= 0:
        raise ValueError(f"holdout_days must be positive, got {holdout_days}")
    cutoff = data.last_us - int(holdout_days * US_PER_DAY)
    split = split_at(data, cutoff)
    if split is None:
        span = (data.last_us - data.first_us) / US_PER_DAY
        raise TrainingDataError(
            f"holdout_days={holdout_days} leaves an empty side: the data spans {span:.1f} days"
        )
    return (*split, cutoff)


def split_at(data: Interactions, cutoff_us: int) -> tuple[Interactions, Interactions] | None:
    """``(before, from cutoff on)``, or None when either side is empty."""
    before = data.ts < cutoff_us
    if not before.any() or before.all():
        return None
    return data.where(before), data.where(~before)


@dataclass(frozen=True)
class Matrices:
    """Index maps and sparse totals built from a set of interactions."""

    user_ids: np.ndarray  # sorted unique user keys (str)
    item_ids: np.ndarray  # sorted unique item ids (str)
    weights: sparse.csr_matrix  # users x items, summed event weights (may be <= 0)
    cooccurrence: sparse.csr_matrix  # items x items, sessions with both (diagonal: sessions with item)

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict[str, int]:
        return {it: i for i, it in enumerate(self.item_ids.tolist())}


def build_matrices(data: Interactions, item_ids: np.ndarray | None = None) -> Matrices:
    """Sum interactions into the user x item and item x item matrices.

    ``item_ids`` fixes the item axis (the evaluation uses the full catalogue
    so that train and test index items alike); items outside it are dropped.
    """
    user_ids, u = np.unique(data.user.astype(str), return_inverse=True)
    items = data.item.astype(str)
    if item_ids is None:
        item_ids, i = np.unique(items, return_inverse=True)
        keep = np.ones(len(i), dtype=bool)
    else:
        i = np.minimum(np.searchsorted(item_ids, items), len(item_ids) - 1)
        keep = item_ids[i] == items
    u, i = u[keep], i[keep]
    shape = (len(user_ids), len(item_ids))
    weights = sparse.csr_matrix((data.weight[keep], (u, i)), shape=shape)
    weights.sum_duplicates()
    # Sessions x items (binary), then items x items = B^T B: sessions with both.
    co = keep & data.cooccurs
    _, s = np.unique(data.session[co].astype(str), return_inverse=True)
    b = sparse.csr_matrix((np.ones(len(s)), (s, i[co[keep]])), shape=(int(s.max(initial=-1)) + 1, shape[1]))
    b.sum_duplicates()
    b.data[:] = 1.0  # a session counts once however often it touched the item
    cooccurrence = (b.T @ b).tocsr()
    return Matrices(user_ids, item_ids, weights, cooccurrence)
