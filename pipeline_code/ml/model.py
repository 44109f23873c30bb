"""The recommender as the model server holds it: arrays and a scoring rule.

A model is one directory that every ML platform can load as it is:

    <version>/
      metadata.json   format, version, event schema version, training window,
                      hyper-parameters, holdout metrics, file checksums
      model.npz       numpy arrays only (no pickle): ids, ALS factors, each
                      user's history, item neighbours, popularity

Scoring blends three signals, each scaled to [0, 1] over the catalogue:

- **ALS** (matrix factorisation for implicit feedback): the user's factor
  dotted with every item's. A user with new activity since training gets a
  fresh factor by solving the ALS least-squares step for that one user
  (fold-in), so new events change recommendations without retraining;
- **item-to-item**: the normalised co-occurrence neighbours of the user's
  most recent items, newer items counting more;
- **popularity**: recency-weighted; it breaks ties, and is all a cold user
  (no history, nothing recent) gets.

Serving needs numpy only: the training libraries stay out of the image.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.ml.registry import LATEST_FILE, METADATA_FILE

FORMAT = "data-flow-recommender/1"
ARRAYS_FILE = "model.npz"
RECENT_DECAY = 0.8  # weight of the n-th most recent item in item-to-item: RECENT_DECAY ** n
FRESH_WEIGHT = 1.0  # an item sent as recent counts like one view in the fold-in
MAX_RECENT = 20
RANKED_DEPTH = 150  # items kept per cached user: the largest k plus room for excludes
RANKED_CACHE_USERS = 100_000  # about 150 * 2 * 8 bytes each: ~250 MB at most
FOLD_IN_CACHE_USERS = 10_000  # an f x f inverse each: 8 KB at 32 factors, ~80 MB at most


class ModelError(Exception):
    """A model directory is missing, incomplete or of another format."""


@dataclass(frozen=True)
class Blend:
    """How much each signal counts. Cold users always get popularity."""

    als: float = 1.0
    item_to_item: float = 1.0
    popularity: float = 0.1

    def __post_init__(self) -> None:
        for name in ("als", "item_to_item", "popularity"):
            if getattr(self, name) < 0:
                raise ValueError(f"blend weight {name} must be >= 0, got {getattr(self, name)}")


def confidence(weight: np.ndarray, alpha: float) -> np.ndarray:
    """ALS confidence of summed event weights: log-damped, so a hundred views
    do not count a hundred times one. Negative totals (items removed from the
    cart more than added) are clamped to no signal."""
    return alpha * np.log1p(np.maximum(weight, 0.0))


@dataclass
class Recommendation:
    item_ids: list[str]
    scores: list[float]
    strategy: str  # "personalised" or "popularity"
    unknown_recent: int = 0  # recent items the model has never seen (ignored)


@dataclass
class Recommender:
    item_ids: np.ndarray  # (n_items,) str, sorted
    user_ids: np.ndarray  # (n_users,) str, sorted
    item_factors: np.ndarray  # (n_items, f) float32
    user_factors: np.ndarray  # (n_users, f) float32
    history_indptr: np.ndarray  # CSR over users: items with positive weight
    history_items: np.ndarray
    history_weight: np.ndarray
    recent_indptr: np.ndarray  # CSR over users: recent items, newest first
    recent_items: np.ndarray
    neighbours: np.ndarray  # (n_items, K) int32, -1 pads
    neighbour_scores: np.ndarray  # (n_items, K) float32
    popularity: np.ndarray  # (n_items,) float32, max 1
    regularization: float
    alpha: float
    blend: Blend = field(default_factory=Blend)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._item_index = {it: i for i, it in enumerate(self.item_ids.tolist())}
        self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        f = self.item_factors.shape[1]
        y = self.item_factors.astype(np.float64)
        self._yty_reg = y.T @ y + self.regularization * np.eye(f)
        self._y64 = y
        self._nb_valid = self.neighbours >= 0
        self._decay = RECENT_DECAY ** np.arange(MAX_RECENT, dtype=np.float32)
        self._ranked_cache = functools.lru_cache(maxsize=RANKED_CACHE_USERS)(self._ranked)
        self._normal_equations_cache = functools.lru_cache(maxsize=FOLD_IN_CACHE_USERS)(
            self._normal_equations
        )

    # -- introspection ---------------------------------------------------------
    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", "unversioned"))

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def with_blend(self, blend: Blend) -> Recommender:
        """The same arrays scored with other weights (the evaluation compares them)."""
        clone = object.__new__(Recommender)
        clone.__dict__.update(self.__dict__)
        clone.blend = blend
        clone._ranked_cache = functools.lru_cache(maxsize=RANKED_CACHE_USERS)(clone._ranked)
        return clone

    def _history(self, u: int | None) -> tuple[np.ndarray, np.ndarray]:
        if u is None:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        lo, hi = self.history_indptr[u], self.history_indptr[u + 1]
        return self.history_items[lo:hi], self.history_weight[lo:hi]

    def _recent(self, u: int | None) -> np.ndarray:
        if u is None:
            return np.empty(0, np.int32)
        return self.recent_items[self.recent_indptr[u] : self.recent_indptr[u + 1]]

    # -- scoring ---------------------------------------------------------------
    def _system(self, items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` of the ALS user step for these interactions given the
        trained item factors (Hu, Koren & Volinsky, eq. 4): A x = b."""
        c = confidence(weights.astype(np.float64), self.alpha)
        keep = c > 0
        y, c = self._y64[items[keep]], c[keep]
        return self._yty_reg + (y.T * (c - 1.0)) @ y, y.T @ c

    def fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The user factor that best explains these interactions: one ALS step."""
        return np.linalg.solve(*self._system(items, weights))

    def _normal_equations(self, u: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(A^-1, b)`` of the user's fold-in from their history alone;
        cached, so new items cost rank-one updates instead of a new solve."""
        a, b = self._system(*self._history(u))
        return np.linalg.inv(a), b

    def fresh_factor(self, u: int | None, fresh: list[int]) -> np.ndarray:
        """``fold_in`` of the user's history plus ``fresh`` items (each one
        observation of ``FRESH_WEIGHT``), by Sherman-Morrison updates of the
        cached inverse: the same solution, without refactoring the matrix."""
        inv, b = self._normal_equations_cache(u)
        c1 = float(confidence(np.array([FRESH_WEIGHT]), self.alpha)[0])
        for i in fresh:
            y = self._y64[i]
            z = inv @ y
            inv = inv - ((c1 - 1.0) / (1.0 + (c1 - 1.0) * (y @ z))) * np.outer(z, z)
            b = b + c1 * y
        return inv @ b

    def _scores(self, u: int | None, fresh: list[int]) -> tuple[np.ndarray, np.ndarray, str]:
        hist_items, _ = self._history(u)
        if not fresh and len(hist_items) == 0:
            return self.popularity, hist_items, "popularity"
        total = self.blend.popularity * self.popularity
        if fresh:
            fresh_arr = np.asarray(fresh, dtype=np.int32)
            seen = np.concatenate([hist_items, fresh_arr])
        else:
            seen = hist_items
        if self.blend.als:
            x = self.fresh_factor(u, fresh).astype(np.float32) if fresh else self.user_factors[u]
            als = self.item_factors @ x
            top = als.max()
            if top > 0:
                total = total + (self.blend.als / top) * als
        if self.blend.item_to_item:
            recent = self._recent(u)
            if fresh:
                order = list(dict.fromkeys(fresh[::-1] + recent.tolist()))[:MAX_RECENT]
                recent = np.asarray(order, dtype=np.int32)
            valid = self._nb_valid[recent]
            w = (self.neighbour_scores[recent] * self._decay[: len(recent), None])[valid]
            i2i = np.bincount(self.neighbours[recent][valid], weights=w, minlength=self.n_items)
            top = i2i.max()
            if top > 0:
                total = total + (self.blend.item_to_item / top) * i2i
        return total, seen, "personalised"

    def _top(
        self, scores: np.ndarray, banned: np.ndarray | list[int], k: int
    ) -> tuple[list[str], list[float]]:
        """The ``k`` best items not banned, by score, ties by item order."""
        if len(banned):
            scores = scores.copy()
            scores[banned] = -np.inf
        k = min(k, self.n_items)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.n_items else np.arange(self.n_items)
        top = top[np.lexsort((top, -scores[top]))]
        top = top[np.isfinite(scores[top])]
        return self.item_ids[top].tolist(), np.round(scores[top].astype(np.float64), 6).tolist()

    def _ranked(self, u: int | None, include_seen: bool) -> tuple[list[str], list[float], str, bool]:
        """A user's best ``RANKED_DEPTH`` items with nothing fresh: the same for
        every request until the model changes, so kept in an LRU cache.
        The last value says whether the list is the whole catalogue."""
        scores, seen, strategy = self._scores(u, [])
        ids, values = self._top(scores, [] if include_seen else seen, RANKED_DEPTH)
        return ids, values, strategy, self.n_items <= RANKED_DEPTH

    def recommend(
        self,
        user_id: str | None,
        recent_items: list[str] | tuple[str, ...] = (),
        k: int = 10,
        exclude: list[str] | tuple[str, ...] = (),
        include_seen: bool = False,
    ) -> Recommendation:
        """Top ``k`` items for a user. Items the user already interacted with
        are left out unless ``include_seen``; ``exclude`` is always left out.
        ``recent_items`` are the user's newest items, oldest first."""
        u = self._user_index.get(user_id) if user_id is not None else None
        if not recent_items:
            ids, values, strategy, complete = self._ranked_cache(u, include_seen)
            if exclude:
                banned = set(exclude)
                keep = [j for j, item in enumerate(ids) if item not in banned]
                ids, values = [ids[j] for j in keep], [values[j] for j in keep]
            if len(ids) >= k or complete:
                return Recommendation(ids[:k], values[:k], strategy)
        fresh = [self._item_index[x] for x in recent_items if x in self._item_index]
        scores, seen, strategy = self._scores(u, fresh)
        banned = [self._item_index[x] for x in exclude if x in self._item_index]
        if not include_seen:
            banned.extend(seen.tolist())
        ids, values = self._top(scores, banned, k)
        return Recommendation(ids, values, strategy, len(recent_items) - len(fresh))

    # -- persistence -------------------------------------------------------------
    _ARRAYS = (
        "item_ids",
        "user_ids",
        "item_factors",
        "user_factors",
        "history_indptr",
        "history_items",
        "history_weight",
        "recent_indptr",
        "recent_items",
        "neighbours",
        "neighbour_scores",
        "popularity",
    )

    def save(self, directory: Path) -> Path:
        """Write the model directory; returns it."""
        directory.mkdir(parents=True, exist_ok=True)
        arrays = directory / ARRAYS_FILE
        np.savez(arrays, **{name: getattr(self, name) for name in self._ARRAYS})
        meta = {
            **self.metadata,
            "format": FORMAT,
            "scoring": {
                "regularization": self.regularization,
                "alpha": self.alpha,
                "blend": {
                    "als": self.blend.als,
                    "item_to_item": self.blend.item_to_item,
                    "popularity": self.blend.popularity,
                },
            },
            "files": {ARRAYS_FILE: _sha256(arrays)},
        }
        (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Recommender:
        """Load a model directory written by ``save``; checks format and checksums."""
        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{meta_path} does not exist: not a model directory") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{meta_path} cannot be read: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise ModelError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
        for name, digest in meta.get("files", {}).items():
            path = directory / name
            if not path.exists():
                raise ModelError(f"{path} is missing")
            if _sha256(path) != digest:
                raise ModelError(f"{path} does not match its checksum in {METADATA_FILE}")
        try:
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in cls._ARRAYS}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{directory / ARRAYS_FILE} cannot be read: {exc}") from exc
        scoring = meta["scoring"]
        return cls(
            **arrays,
            regularization=float(scoring["regularization"]),
            alpha=float(scoring["alpha"]),
            blend=Blend(**scoring["blend"]),
            metadata=meta,
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_model(path: str | os.PathLike) -> Path:
    """The model directory that ``path`` means: a model directory itself, a
    directory of versions with a ``LATEST`` file, or a directory holding just
    one model (how Azure ML mounts a registered folder)."""
    path = Path(path)
    if (path / METADATA_FILE).exists():
        return path
    latest = path / LATEST_FILE
    if latest.exists():
        version = latest.read_text().strip()
        if (path / version / METADATA_FILE).exists():
            return path / version
        raise FileNotFoundError(f"{latest} names version {version!r}, which is not in {path}")
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if (p / METADATA_FILE).exists()]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FileNotFoundError(f"{path} holds {len(found)} models and no {LATEST_FILE} file to pick one")
    raise FileNotFoundError(f"no model in {path}: expected {METADATA_FILE} or a {LATEST_FILE} file")
