"""Training data read from the warehouse agrees with the tables the pipeline wrote."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from pipeline_code.ml.data import TrainingDataError, build_matrices, read_interactions, split_by_time


@pytest.fixture(scope="module")
def interactions(trained):
    warehouse, _, _ = trained
    con = duckdb.connect(str(warehouse), read_only=True)
    yield con, read_interactions(con)
    con.close()


def test_rebuilt_totals_equal_the_stored_interaction_table(interactions):
    con, data = interactions
    m = build_matrices(data)
    users, items = m.user_index(), m.item_index()
    stored = con.execute("SELECT user_key, item_id, weight FROM user_item_interactions").fetchall()
    assert len(stored) == m.weights.nnz
    for user, item, weight in stored:
        assert m.weights[users[user], items[item]] == pytest.approx(weight)


def test_rebuilt_cooccurrence_equals_the_stored_table(interactions):
    con, data = interactions
    m = build_matrices(data)
    items = m.item_index()
    co = m.cooccurrence.tolil()
    co.setdiag(0)
    co = co.tocsr()
    co.eliminate_zeros()
    stored = con.execute("SELECT item_id, other_item_id, sessions FROM item_cooccurrence").fetchall()
    assert len(stored) == co.nnz
    for a, b, n in stored:
        assert co[items[a], items[b]] == n


def test_interactions_are_time_ordered_and_exclude_bots(interactions):
    con, data = interactions
    assert np.all(np.diff(data.ts) >= 0)
    bots = {r[0] for r in con.execute("SELECT DISTINCT user_key FROM events WHERE is_bot").fetchall()}
    assert bots and not bots & set(data.user.tolist())


def test_split_by_time_cuts_at_the_holdout(interactions):
    _, data = interactions
    train, test, cutoff = split_by_time(data, 7)
    assert len(train) + len(test) == len(data)
    assert train.ts.max() < cutoff <= test.ts.min()
    assert data.last_us - cutoff == 7 * 86_400 * 1_000_000


def test_split_that_leaves_a_side_empty_says_how_long_the_data_is(interactions):
    _, data = interactions
    with pytest.raises(
        TrainingDataError, match=r"holdout_days=400 leaves an empty side: the data spans 3\d\.\d"
    ):
        split_by_time(data, 400)
    with pytest.raises(ValueError, match="holdout_days must be positive, got 0"):
        split_by_time(data, 0)


def test_an_empty_warehouse_has_nothing_to_train_on(tmp_path):
    from pipeline_code.warehouses.duckdb import Warehouse

    with Warehouse(tmp_path / "w.duckdb") as wh, pytest.raises(TrainingDataError, match="dataflow process"):
        read_interactions(wh.con)


def test_items_outside_a_fixed_catalogue_are_dropped(interactions):
    _, data = interactions
    full = build_matrices(data)
    some = full.item_ids[::2]
    part = build_matrices(data, some)
    assert part.weights.shape[1] == len(some)
    assert part.weights.sum() == pytest.approx(full.weights[:, ::2].sum())
