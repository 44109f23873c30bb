"""Ranking metrics on cases worked out by hand."""

from __future__ import annotations

import math

import pytest

from pipeline_code.ml.evaluate import evaluate
from pipeline_code.ml.model import Recommendation


def fixed(recs: dict[str, list[str]]):
    return lambda user: Recommendation(recs[user], [1.0] * len(recs[user]), "personalised")


def test_metrics_match_hand_computation():
    recs = {"a": ["x", "y", "z"], "b": ["p", "q", "r"]}
    targets = {"a": {"y"}, "b": {"p", "r", "s", "t"}}
    m = evaluate(fixed(recs), targets, n_items=10, k=3)
    assert m.precision == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m.recall == pytest.approx((1 / 1 + 2 / 4) / 2)
    ndcg_a = (1 / math.log2(3)) / 1.0
    ideal_b = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_b = (1 + 1 / math.log2(4)) / ideal_b
    assert m.ndcg == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m.coverage == pytest.approx(6 / 10)
    assert m.users == 2


def test_a_perfect_recommender_scores_one_and_short_lists_count_as_misses():
    assert evaluate(fixed({"a": ["x", "y"]}), {"a": {"x", "y"}}, 5, k=2).ndcg == pytest.approx(1.0)
    m = evaluate(fixed({"a": ["x"]}), {"a": {"x", "y"}}, 5, k=2)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(0.5)


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(ValueError, match="no user has holdout targets"):
        evaluate(fixed({}), {}, 5)
