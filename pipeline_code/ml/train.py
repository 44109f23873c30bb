"""Train the recommender from the warehouse and write a versioned model.

    dataflow train --warehouse .dataflow/warehouse.duckdb --model-dir .dataflow/models

Steps, all in one run:

1. read every human interaction from ``events`` (``ml.data``);
2. hold out the newest ``holdout_days``, fit on the rest, and score four
   recommenders on the holdout: popularity (the baseline), item-to-item,
   ALS, and the blend that is served;
3. score the model in production (``MODEL_DIR/LATEST``) on the same
   holdout: the artefact itself when the holdout is newer than its training
   data (the cutoff moves up to where that data ends when it must), else
   its settings refit on the same training part, since an artefact that saw
   the holdout cannot be judged on it;
4. fit again on everything and write ``MODEL_DIR/<version>/`` (what GCS or
   Blob storage take as a directory) and ``MODEL_DIR/<version>.tar.gz`` (the
   SageMaker ``model.tar.gz`` layout: the files at the archive's root), with
   the gate's decision (``ml.registry.decide``) in its metadata and a row in
   the warehouse's ``model_versions``;
5. promote it (``MODEL_DIR/LATEST``, which the servers watch) only when the
   gate says so. A refused candidate stays on disk, unserved.

ALS is ``implicit``'s conjugate-gradient ALS (Hu, Koren & Volinsky 2008);
item-to-item is session co-occurrence normalised by cosine with shrinkage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
from scipy import sparse

from pipeline_code.contract import SCHEMA_VERSION
from pipeline_code.ml.data import (
    US_PER_DAY,
    Interactions,
    Matrices,
    TrainingDataError,
    build_matrices,
    read_interactions,
    split_at,
    split_by_time,
)
from pipeline_code.ml.evaluate import Metrics, evaluate, holdout_targets
from pipeline_code.ml.model import MAX_RECENT, Blend, ModelError, Recommender, confidence
from pipeline_code.ml.registry import DEFAULT_TOLERANCE, Decision, Registry, decide


class TrainingError(Exception):
    """Training cannot run: no warehouse, no data, bad settings."""


@dataclass(frozen=True)
class TrainSettings:
    factors: int = 32
    regularization: float = 0.1
    alpha: float = 10.0
    iterations: int = 15
    neighbours: int = 50
    shrink: float = 10.0
    half_life_days: float = 7.0
    holdout_days: float = 7.0
    k: int = 10
    seed: int = 7
    blend: Blend = field(default_factory=Blend)

    def __post_init__(self) -> None:
        for name in ("factors", "iterations", "neighbours", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("regularization", "alpha", "half_life_days", "holdout_days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")


@dataclass(frozen=True)
class TrainResult:
    version: str
    directory: Path
    archive: Path
    metrics: dict[str, Metrics]  # by recommender name, baseline first
    holdout_cutoff: dt.datetime
    interactions: int
    users: int
    items: int
    seconds: float
    decision: Decision | None = None
    model_metadata: dict = field(default_factory=dict, repr=False)

    @property
    def promoted(self) -> bool:
        return self.decision is None or self.decision.promoted

    def lift(self, metric: str = "ndcg") -> float:
        """The served blend's metric over the popularity baseline's."""
        base = getattr(self.metrics["popularity"], metric)
        return getattr(self.metrics["blend"], metric) / base if base else float("inf")


def _als_factors(conf: sparse.csr_matrix, s: TrainSettings) -> tuple[np.ndarray, np.ndarray]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit parallelises over users itself; a multi-threaded BLAS under it
    # only oversubscribes the cores (implicit warns about exactly this).
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(
            factors=s.factors,
            regularization=s.regularization,
            alpha=1.0,  # confidence() already scaled the values
            iterations=s.iterations,
            random_state=s.seed,
            calculate_training_loss=False,
        )
        als.fit(conf, show_progress=False)
    return np.asarray(als.user_factors, np.float32), np.asarray(als.item_factors, np.float32)


def _neighbours(co: sparse.csr_matrix, k: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` neighbours per item by shrunk cosine of session co-occurrence:
    sessions(i, j) / (sqrt(sessions(i) * sessions(j)) + shrink). Shrinkage
    keeps a pair seen in one session from outranking well-supported pairs."""
    n = co.shape[0]
    sessions = co.diagonal().astype(np.float64)
    off = co.tolil()
    off.setdiag(0)
    off = off.tocsr()
    off.eliminate_zeros()
    rows = np.repeat(np.arange(n), np.diff(off.indptr))
    sim = off.data / (np.sqrt(sessions[rows] * sessions[off.indices]) + shrink)
    idx = np.full((n, k), -1, np.int32)
    val = np.zeros((n, k), np.float32)
    for r in range(n):
        lo, hi = off.indptr[r], off.indptr[r + 1]
        if lo == hi:
            continue
        cols, s = off.indices[lo:hi], sim[lo:hi]
        top = np.lexsort((cols, -s))[:k]
        idx[r, : len(top)], val[r, : len(top)] = cols[top], s[top]
    return idx, val


def _popularity(data: Interactions, item_index: dict[str, int], n: int, half_life_days: float) -> np.ndarray:
    """Positive interaction weight per item, halved every ``half_life_days``
    before the newest interaction; scaled to a maximum of 1."""
    idx = np.fromiter((item_index.get(i, -1) for i in data.item.tolist()), np.int64, len(data))
    age_days = (data.last_us - data.ts) / US_PER_DAY
    w = np.maximum(data.weight, 0.0) * 0.5 ** (age_days / half_life_days)
    keep = idx >= 0
    pop = np.bincount(idx[keep], weights=w[keep], minlength=n)
    return (pop / pop.max() if pop.max() > 0 else pop).astype(np.float32)


def _recent(data: Interactions, m: Matrices) -> tuple[np.ndarray, np.ndarray]:
    """Each user's last ``MAX_RECENT`` distinct items, newest first, as CSR."""
    users, items = m.user_index(), m.item_index()
    per_user: dict[int, dict[int, None]] = {}
    for user, item, weight in zip(
        data.user[::-1].tolist(), data.item[::-1].tolist(), data.weight[::-1].tolist(), strict=True
    ):
        if weight <= 0 or item not in items:
            continue
        seq = per_user.setdefault(users[user], {})
        if len(seq) < MAX_RECENT:
            seq.setdefault(items[item], None)
    indptr = np.zeros(len(m.user_ids) + 1, np.int64)
    flat: list[int] = []
    for u in range(len(m.user_ids)):
        flat.extend(per_user.get(u, ()))
        indptr[u + 1] = len(flat)
    return indptr, np.asarray(flat, np.int32)


def fit(data: Interactions, s: TrainSettings, item_ids: np.ndarray | None = None) -> Recommender:
    """Fit every component on ``data`` (over ``item_ids`` when given)."""
    m = build_matrices(data, item_ids)
    positive = m.weights.copy()
    positive.data = np.maximum(positive.data, 0.0)
    positive.eliminate_zeros()
    conf = positive.copy()
    conf.data = confidence(conf.data, s.alpha).astype(np.float32)
    user_factors, item_factors = _als_factors(conf, s)
    nb_idx, nb_val = _neighbours(m.cooccurrence, s.neighbours, s.shrink)
    recent_indptr, recent_items = _recent(data, m)
    return Recommender(
        item_ids=m.item_ids.astype(str),
        user_ids=m.user_ids.astype(str),
        item_factors=item_factors,
        user_factors=user_factors,
        history_indptr=positive.indptr.astype(np.int64),
        history_items=positive.indices.astype(np.int32),
        history_weight=positive.data.astype(np.float32),
        recent_indptr=recent_indptr,
        recent_items=recent_items,
        neighbours=nb_idx,
        neighbour_scores=nb_val,
        popularity=_popularity(data, m.item_index(), len(m.item_ids), s.half_life_days),
        regularization=s.regularization,
        alpha=s.alpha,
        blend=s.blend,
    )


def _variants(s: TrainSettings) -> dict[str, Blend]:
    return {
        "popularity": Blend(als=0.0, item_to_item=0.0, popularity=1.0),
        "item-to-item": Blend(als=0.0, item_to_item=1.0, popularity=s.blend.popularity),
        "als": Blend(als=1.0, item_to_item=0.0, popularity=s.blend.popularity),
        "blend": s.blend,
    }


def trained_until_us(model: Recommender) -> int | None:
    """When the newest interaction a model was trained on happened."""
    to = (model.metadata.get("training_window") or {}).get("to")
    if not to:
        return None
    return int(dt.datetime.fromisoformat(to.replace("Z", "+00:00")).timestamp() * 1_000_000)


def settings_of(model: Recommender) -> TrainSettings:
    """The settings a model was trained with (its metadata), to refit it."""
    known = set(TrainSettings.__dataclass_fields__) - {"blend"}
    saved = {k: v for k, v in (model.metadata.get("settings") or {}).items() if k in known}
    return TrainSettings(**saved, blend=model.blend)


def _holdout(
    data: Interactions, s: TrainSettings, production: Recommender | None
) -> tuple[Interactions, Interactions, int, str | None]:
    """The split every recommender is scored on, and how production is scored.

    The holdout is the newest ``holdout_days``. When production's training
    data reaches into it, the cutoff moves to where that data ends, so the
    artefact meets only interactions it has not seen; when nothing is left
    after that, production's settings are refit on the training part instead.
    """
    train_part, test_part, cutoff = split_by_time(data, s.holdout_days)
    if production is None:
        return train_part, test_part, cutoff, None
    until = trained_until_us(production)
    if until is not None and until < cutoff:
        return train_part, test_part, cutoff, "artifact"
    if until is not None:
        later = split_at(data, until + 1)
        if later is not None and (later[1].weight > 0).any():
            return (*later, until + 1, "artifact")
    return train_part, test_part, cutoff, "refit"


def compare_on_holdout(
    data: Interactions, s: TrainSettings, production: Recommender | None = None
) -> tuple[dict[str, Metrics], int, str | None]:
    """Fit on the older data and score each recommender on the newest; with
    ``production``, score it too (as ``"production"``) on the same holdout.
    Returns the metrics, the cutoff and how production was scored."""
    train_part, test_part, cutoff, scored_as = _holdout(data, s, production)
    catalogue = np.unique(data.item.astype(str))
    model = fit(train_part, s, catalogue)
    targets = holdout_targets(model, test_part)
    metrics = {}
    for name, blend in _variants(s).items():
        variant = model.with_blend(blend)
        metrics[name] = evaluate(
            lambda user, v=variant: v.recommend(user, k=s.k), targets, model.n_items, s.k
        )
    if production is not None:
        scored = (
            production if scored_as == "artifact" else fit(train_part, settings_of(production), catalogue)
        )
        metrics["production"] = evaluate(
            lambda user: scored.recommend(user, k=s.k), targets, model.n_items, s.k
        )
    return metrics, cutoff, scored_as


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")


def _version(model: Recommender, now: dt.datetime) -> str:
    h = hashlib.sha256()
    for name in Recommender._ARRAYS:
        h.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    return f"{now:%Y%m%dT%H%M%SZ}-{h.hexdigest()[:8]}"


def _archive(directory: Path, archive: Path) -> None:
    """SageMaker's model.tar.gz: the model files at the archive root."""
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    os.replace(tmp, archive)


def _production(registry: Registry) -> Recommender | None:
    version = registry.served()
    if version is None:
        return None
    try:
        return Recommender.load(registry.root / version)
    except ModelError as exc:
        raise TrainingError(
            f"the production model {version} cannot be loaded to compare against ({exc}); "
            "promote a good version with `dataflow models promote VERSION`"
        ) from exc


def model_version_row(meta: dict, gate: dict, artifact: str, serving: bool, at: dt.datetime) -> dict:
    """A version's ``model_versions`` row (core values: timestamps in us),
    from its metadata and the gate's decision (``Decision.as_dict()``)."""

    def us(iso: str) -> int:
        return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1_000_000)

    return {
        "model_version": meta["model_version"],
        "trained_at": us(meta["trained_at"]),
        "decision": gate["decision"],
        "reason": gate["reason"],
        "candidate_ndcg": gate["candidate_ndcg"],
        "baseline_ndcg": gate["baseline_ndcg"],
        "production_version": gate.get("production_version"),
        "production_ndcg": gate.get("production_ndcg"),
        "tolerance": gate["tolerance"],
        "holdout_cutoff": us(meta["holdout"]["cutoff"]),
        "interactions": meta["data"]["interactions"],
        "artifact": artifact,
        "serving": serving,
        "updated_at": int(at.timestamp() * 1_000_000),
    }


def record_model_version(warehouse: Path, row: dict, served: str | None) -> None:
    """Write the version's row and mark which version serves."""
    from pipeline_code.warehouses.duckdb import Warehouse, WarehouseError

    try:
        with Warehouse(warehouse) as wh:
            wh.record_model_version(row, served)
    except WarehouseError as exc:
        raise TrainingError(f"the decision could not be recorded, nothing was promoted: {exc}") from exc


def train(
    warehouse: Path,
    model_dir: Path,
    s: TrainSettings | None = None,
    now: dt.datetime | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> TrainResult:
    """Evaluate on a holdout against production, fit on everything, write
    the model, promote it if the gate passes. See module doc."""
    s = s or TrainSettings()
    started = time.perf_counter()
    if not 0 <= tolerance < 1:
        raise TrainingError(f"tolerance must be in [0, 1), got {tolerance}")
    if not warehouse.exists():
        raise TrainingError(f"warehouse {warehouse} does not exist: run `dataflow process` first")
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise TrainingError(f"warehouse {warehouse} cannot be opened: {exc}".splitlines()[0]) from exc
    try:
        try:
            data = read_interactions(con)
        except TrainingDataError as exc:
            raise TrainingError(str(exc)) from exc
        except duckdb.Error as exc:
            raise TrainingError(f"warehouse {warehouse} has no events table: {exc}".splitlines()[0]) from exc
        checkpoints = con.execute(
            "SELECT log_id, log_offset FROM _dataflow_checkpoints ORDER BY log_id"
        ).fetchall()
    finally:
        con.close()
    registry = Registry(model_dir)
    result = train_on(data, registry, s, now, tolerance, {log_id: offset for log_id, offset in checkpoints})
    record_model_version(
        warehouse,
        model_version_row(
            result.model_metadata,
            result.decision.as_dict(),  # type: ignore[union-attr]
            str(result.directory),
            result.promoted,
            now or dt.datetime.now(dt.UTC),
        ),
        result.version if result.promoted else registry.served(),
    )
    # The same data and settings within the same second give the version already served.
    if result.promoted and result.version != registry.served():
        registry.promote(result.version, result.decision.reason)  # type: ignore[union-attr]
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def train_on(
    data: Interactions,
    registry: Registry,
    s: TrainSettings,
    now: dt.datetime | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    checkpoints: dict[str, int] | None = None,
) -> TrainResult:
    """Score against ``registry``'s production model, fit, write the
    version with the gate's decision; promoting is the caller's (the local
    chain records the decision first, a cloud job hands it to the rollout)."""
    started = time.perf_counter()
    production = _production(registry)
    try:
        metrics, cutoff, scored_as = compare_on_holdout(data, s, production)
    except (ValueError, ArithmeticError) as exc:
        raise TrainingError(str(exc)) from exc
    decision = decide(
        metrics["blend"].ndcg,
        metrics["popularity"].ndcg,
        tolerance,
        metrics["production"].ndcg if production is not None else None,
        production.version if production is not None else None,
        scored_as,
    )
    model = fit(data, s)
    now = now or dt.datetime.now(dt.UTC)
    version = _version(model, now)
    model.metadata = {
        "model_version": version,
        "event_schema_version": SCHEMA_VERSION,
        "trained_at": now.isoformat().replace("+00:00", "Z"),
        "training_window": {"from": _iso(data.first_us), "to": _iso(data.last_us)},
        "holdout": {"cutoff": _iso(cutoff), "days": s.holdout_days, "k": s.k},
        "metrics": {name: m.as_dict() for name, m in metrics.items()},
        "gate": {**decision.as_dict(), "decided_at": now.isoformat().replace("+00:00", "Z")},
        "data": {"interactions": len(data), "users": len(model.user_ids), "items": model.n_items},
        "settings": {k: v for k, v in asdict(s).items() if k != "blend"},
        # Where the event log stood: events after these offsets are fresher
        # than the model, and the API folds them in without retraining.
        "event_log_checkpoints": checkpoints or {},
    }
    try:
        directory = model.save(registry.root / version)
        archive = registry.root / f"{version}.tar.gz"
        _archive(directory, archive)
    except OSError as exc:
        raise TrainingError(f"cannot write the model under {registry.root}: {exc.strerror}") from exc
    return TrainResult(
        version=version,
        directory=directory,
        archive=archive,
        metrics=metrics,
        holdout_cutoff=dt.datetime.fromtimestamp(cutoff / 1e6, dt.UTC),
        interactions=len(data),
        users=len(model.user_ids),
        items=model.n_items,
        seconds=time.perf_counter() - started,
        decision=decision,
        model_metadata=model.metadata,
    )
