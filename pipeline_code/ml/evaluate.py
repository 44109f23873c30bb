"""Offline evaluation of recommenders on a time-split holdout.

Each user's *targets* are the items they interacted with positively after
the cutoff and not before it: what a recommender could have suggested as
new. Recommendations leave out what the user already had, as serving does.
Metrics at k (binary relevance):

- precision@k: hits / k, averaged over users;
- recall@k: hits / number of targets, averaged over users;
- NDCG@k: discounted gain of the hits over the best possible ordering;
- coverage: share of the catalogue that appears in anybody's top k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from pipeline_code.ml.data import Interactions
from pipeline_code.ml.model import Recommendation, Recommender


@dataclass(frozen=True)
class Metrics:
    precision: float
    recall: float
    ndcg: float
    coverage: float
    users: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def holdout_targets(model: Recommender, test: Interactions) -> dict[str, set[str]]:
    """Per user, the items with a positive total after the cutoff that the
    user had no positive total for before it (``model`` was fit on before)."""
    totals: dict[tuple[str, str], float] = {}
    for user, item, weight in zip(test.user.tolist(), test.item.tolist(), test.weight.tolist(), strict=True):
        totals[(user, item)] = totals.get((user, item), 0.0) + weight
    rows = np.repeat(np.arange(len(model.user_ids)), np.diff(model.history_indptr))
    had = set(zip(model.user_ids[rows].tolist(), model.item_ids[model.history_items].tolist(), strict=True))
    targets: dict[str, set[str]] = {}
    for pair, total in totals.items():
        if total > 0 and pair not in had:
            targets.setdefault(pair[0], set()).add(pair[1])
    return targets


def evaluate(
    recommend: Callable[[str], Recommendation], targets: dict[str, set[str]], n_items: int, k: int = 10
) -> Metrics:
    """Score one recommender over every user with targets."""
    if not targets:
        raise ValueError("no user has holdout targets: nothing to evaluate")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = recall = ndcg = 0.0
    shown: set[str] = set()
    for user in sorted(targets):
        wanted = targets[user]
        recs = recommend(user).item_ids[:k]
        shown.update(recs)
        gains = np.array([1.0 if item in wanted else 0.0 for item in recs] + [0.0] * (k - len(recs)))
        hits = gains.sum()
        precision += hits / k
        recall += hits / len(wanted)
        ideal = discounts[: min(len(wanted), k)].sum()
        ndcg += float(gains @ discounts) / ideal
    n = len(targets)
    return Metrics(precision / n, recall / n, ndcg / n, len(shown) / n_items, n)
