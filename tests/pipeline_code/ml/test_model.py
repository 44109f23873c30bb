"""The served model: scoring rules, fold-in, persistence and discovery."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import sparse

from pipeline_code.ml.model import (
    ARRAYS_FILE,
    LATEST_FILE,
    METADATA_FILE,
    Blend,
    ModelError,
    Recommender,
    confidence,
    find_model,
)


@pytest.fixture(scope="module")
def model(trained) -> Recommender:
    _, models, _ = trained
    return Recommender.load(find_model(models))


def _busiest_user(model: Recommender) -> str:
    lengths = np.diff(model.history_indptr)
    return str(model.user_ids[int(np.argmax(lengths))])


def test_fold_in_matches_implicit_for_a_trained_user(model):
    """Our numpy fold-in is the same least-squares step implicit solves."""
    from implicit.cpu.als import AlternatingLeastSquares

    als = AlternatingLeastSquares(factors=model.item_factors.shape[1], regularization=model.regularization)
    als.item_factors = model.item_factors.copy()
    als.user_factors = model.user_factors.copy()
    user = _busiest_user(model)
    items, weights = model._history(model._user_index[user])
    row = sparse.csr_matrix(
        (confidence(weights, model.alpha), (np.zeros(len(items), int), items)), shape=(1, model.n_items)
    )
    expected = als.recalculate_user(0, row)
    assert np.allclose(model.fold_in(items, weights), expected, atol=2e-3)


def test_fresh_items_update_the_cached_factor_exactly(model):
    """Sherman-Morrison updates give the same factor as solving again."""
    user = _busiest_user(model)
    u = model._user_index[user]
    items, weights = model._history(u)
    fresh = [int(items[0]), 7, 7]  # one item already in the history, one new twice
    expected = model.fold_in(
        np.concatenate([items, np.asarray(fresh, np.int32)]),
        np.concatenate([weights, np.ones(3, np.float32)]),
    )
    assert np.allclose(model.fresh_factor(u, fresh), expected, rtol=1e-6, atol=1e-8)
    cold = model.fold_in(np.array([3], np.int32), np.ones(1, np.float32))
    assert np.allclose(model.fresh_factor(None, [3]), cold, rtol=1e-6, atol=1e-8)


def test_known_users_get_personal_lists_without_items_they_already_had(model):
    user = _busiest_user(model)
    rec = model.recommend(user, k=10)
    assert rec.strategy == "personalised" and len(rec.item_ids) == 10
    had = set(model.item_ids[model._history(model._user_index[user])[0]].tolist())
    assert not had & set(rec.item_ids)
    assert rec.scores == sorted(rec.scores, reverse=True)
    assert had & set(model.recommend(user, k=model.n_items, include_seen=True).item_ids) == had


def test_cold_users_get_popularity(model):
    for user in (None, "never-seen-user"):
        rec = model.recommend(user, k=5)
        assert rec.strategy == "popularity"
        assert rec.item_ids == model.item_ids[np.argsort(-model.popularity, kind="stable")[:5]].tolist()


def test_recent_items_change_the_list_without_retraining(model):
    """Freshness: a new visitor's first view makes the list personal, and
    a known user's new view moves the list toward that item's neighbours."""
    item = str(model.item_ids[0])
    rec = model.recommend(None, [item], k=10)
    assert rec.strategy == "personalised" and item not in rec.item_ids
    neighbours = set(model.item_ids[model.neighbours[0][model.neighbours[0] >= 0]].tolist())
    assert len(neighbours & set(rec.item_ids)) >= 3
    user = _busiest_user(model)
    before = model.recommend(user, k=10).item_ids
    after = model.recommend(user, [item], k=10).item_ids
    assert before != after


def test_unknown_recent_items_are_counted_and_ignored(model):
    rec = model.recommend(None, ["no-such-sku"], k=3)
    assert rec.unknown_recent == 1 and rec.strategy == "popularity"


def test_exclude_and_k_hold_on_the_cached_and_the_computed_path(model):
    user = _busiest_user(model)
    top = model.recommend(user, k=5).item_ids
    rec = model.recommend(user, k=5, exclude=top[:2])
    assert rec.item_ids[:3] == top[2:]
    # Excluding more than the cached depth falls back to a full ranking.
    many = model.recommend(user, k=model.n_items).item_ids[:-3]
    rest = model.recommend(user, k=10, exclude=many)
    assert 0 < len(rest.item_ids) <= 3 and not set(rest.item_ids) & set(many)
    assert model.recommend(user, k=10_000).item_ids == model.recommend(user, k=model.n_items).item_ids


def test_blend_weights_are_checked():
    with pytest.raises(ValueError, match="blend weight als must be >= 0, got -1"):
        Blend(als=-1)


def test_save_and_load_round_trip(model, tmp_path):
    out = model.save(tmp_path / "copy")
    again = Recommender.load(out)
    assert again.version == model.version
    assert again.recommend("x", ["sku-00001"], k=7) == model.recommend("x", ["sku-00001"], k=7)


def test_load_refuses_tampered_or_foreign_directories(model, tmp_path):
    out = model.save(tmp_path / "m")
    with open(out / ARRAYS_FILE, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(ModelError, match="does not match its checksum"):
        Recommender.load(out)
    meta = json.loads((out / METADATA_FILE).read_text())
    (out / METADATA_FILE).write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ModelError, match="format 'other/9'"):
        Recommender.load(out)
    with pytest.raises(ModelError, match="not a model directory"):
        Recommender.load(tmp_path / "nothing")


def test_find_model_follows_latest_a_single_folder_or_the_directory_itself(trained, tmp_path):
    _, models, result = trained
    assert find_model(models) == result.directory
    assert find_model(result.directory) == result.directory
    # Azure ML mounts a registered folder: AZUREML_MODEL_DIR/<folder>/files.
    mounted = tmp_path / "azureml"
    shutil.copytree(result.directory, mounted / "recommender")
    assert find_model(mounted) == mounted / "recommender"
    shutil.copytree(result.directory, mounted / "second")
    with pytest.raises(FileNotFoundError, match="holds 2 models and no LATEST"):
        find_model(mounted)
    (mounted / LATEST_FILE).write_text("gone\n")
    with pytest.raises(FileNotFoundError, match="names version 'gone'"):
        find_model(mounted)
