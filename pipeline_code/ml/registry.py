"""The model registry on disk, and the gate that decides which version serves.

    MODEL_DIR/<version>/            a model; its metadata.json holds the metrics and the gate's decision
    MODEL_DIR/<version>.tar.gz      the same files in SageMaker's model.tar.gz layout
    MODEL_DIR/LATEST                the version served (what the servers load and watch)
    MODEL_DIR/promotions.jsonl      every change of LATEST, oldest first

The same layout is what each cloud's training job writes to its model
bucket, so ``dataflow models`` and the jobs agree on what "production" is.

The gate (``decide``): a candidate is promoted only when its NDCG@k beats
the popularity baseline's and is at least production's NDCG@k times
``1 - tolerance``, all measured on one holdout. A refused candidate keeps
its files and its decision; it can still be promoted by hand
(``dataflow models promote VERSION``). ``rollback`` returns to the version
that served before the current one, as many times as there are earlier
promotions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
"""A model version's description, beside its arrays (``ml.model``)."""
LATEST_FILE = "LATEST"
"""The version the registry serves (``ml.model.find_model`` follows it). Both
names live here, not in ``ml.model``: the stacks read them to plan, and
``ml.model`` imports NumPy."""
PROMOTIONS_FILE = "promotions.jsonl"
DEFAULT_TOLERANCE = 0.02


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate, with the numbers it compared."""

    promoted: bool
    reason: str
    candidate_ndcg: float
    baseline_ndcg: float
    tolerance: float
    production_version: str | None = None
    production_ndcg: float | None = None
    production_scored_as: str | None = None  # "artifact", or "refit" when it had seen the holdout

    @property
    def decision(self) -> str:
        return "promoted" if self.promoted else "refused"

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, **asdict(self)}


def decide(
    candidate_ndcg: float,
    baseline_ndcg: float,
    tolerance: float,
    production_ndcg: float | None = None,
    production_version: str | None = None,
    production_scored_as: str | None = None,
) -> Decision:
    """Promote when the candidate beats the baseline and keeps at least
    ``1 - tolerance`` of production's NDCG (or there is no production yet)."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")

    candidate_ndcg, baseline_ndcg = float(candidate_ndcg), float(baseline_ndcg)
    production_ndcg = None if production_ndcg is None else float(production_ndcg)

    def verdict(promoted: bool, reason: str) -> Decision:
        return Decision(
            promoted,
            reason,
            candidate_ndcg,
            baseline_ndcg,
            float(tolerance),
            production_version,
            production_ndcg,
            production_scored_as,
        )

    if candidate_ndcg <= baseline_ndcg:
        return verdict(
            False,
            f"candidate NDCG {candidate_ndcg:.4f} does not beat the popularity baseline's "
            f"{baseline_ndcg:.4f}",
        )
    if production_ndcg is None:
        return verdict(
            True,
            f"no production model yet; candidate NDCG {candidate_ndcg:.4f} beats the baseline's "
            f"{baseline_ndcg:.4f}",
        )
    floor = production_ndcg * (1 - tolerance)
    compared = (
        f"production {production_version} NDCG {production_ndcg:.4f} x (1 - {tolerance:g}) = {floor:.4f}"
    )
    if candidate_ndcg >= floor:
        return verdict(True, f"candidate NDCG {candidate_ndcg:.4f} >= {compared}")
    return verdict(False, f"candidate NDCG {candidate_ndcg:.4f} < {compared}")


@dataclass(frozen=True)
class Version:
    """One version in the registry and what its metadata says."""

    version: str
    directory: Path
    metadata: dict[str, Any]

    @property
    def trained_at(self) -> str:
        return str(self.metadata.get("trained_at", ""))

    @property
    def gate(self) -> dict[str, Any]:
        return self.metadata.get("gate") or {}

    def ndcg(self, name: str = "blend") -> float | None:
        value = (self.metadata.get("metrics") or {}).get(name, {}).get("ndcg")
        return None if value is None else float(value)


def unwind(entries: list[dict[str, Any]]) -> list[str]:
    """The served versions a promotion log leaves, oldest first: a promotion
    pushes, a rollback pops back to the version it names."""
    stack: list[str] = []
    for entry in entries:
        if entry["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry["version"]:
                stack.append(entry["version"])
        else:
            stack.append(entry["version"])
    return stack


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Registry:
    """The versions under one model directory."""

    def __init__(self, model_dir: str | os.PathLike) -> None:
        self.root = Path(model_dir)

    # -- reading -------------------------------------------------------------------
    def served(self) -> str | None:
        """The version ``LATEST`` names, or None before the first promotion."""
        try:
            return (self.root / LATEST_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def get(self, version: str) -> Version:
        directory = self.root / version
        path = directory / METADATA_FILE
        if "/" in version or version.startswith(".") or not path.is_file():
            known = ", ".join(v.version for v in self.versions()[-5:]) or "none"
            raise RegistryError(f"version {version!r} is not in {self.root} (newest: {known})")
        try:
            return Version(version, directory, json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path} cannot be read: {exc}") from exc

    def versions(self) -> list[Version]:
        """Every version, oldest first (by training time, then name)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            meta = path / METADATA_FILE
            if path.is_dir() and meta.is_file():
                try:
                    found.append(Version(path.name, path, json.loads(meta.read_text())))
                except (OSError, ValueError):
                    continue  # a version being written; listed once it is whole
        return sorted(found, key=lambda v: (v.trained_at, v.version))

    def history(self) -> list[dict[str, Any]]:
        """Every change of the served version, oldest first."""
        try:
            lines = (self.root / PROMOTIONS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def stack(self) -> list[str]:
        """The versions that served, in order, as rollbacks unwind them: a
        promotion pushes, a rollback pops. Its top is ``served()``."""
        stack = unwind(self.history())
        served = self.served()
        if served and (not stack or stack[-1] != served):
            stack.append(served)  # LATEST written before this log existed, or by hand
        return stack

    # -- changing what serves ------------------------------------------------------------
    def _serve(self, version: str, action: str, reason: str) -> dict[str, Any]:
        self.get(version)  # refuse an unknown or unreadable version before touching LATEST
        previous = self.served()
        entry = {"at": _now(), "action": action, "version": version, "previous": previous, "reason": reason}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / PROMOTIONS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
        _write_atomically(self.root / LATEST_FILE, version + "\n")
        return entry

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        """Serve ``version`` from now on (the servers pick it up without a restart)."""
        if self.served() == version:
            raise RegistryError(f"version {version} is already served")
        return self._serve(version, "promote", reason)

    def rollback(self) -> dict[str, Any]:
        """Serve the version that served before the current one."""
        stack = self.stack()
        if len(stack) < 2:
            served = self.served()
            raise RegistryError(
                f"nothing to roll back to: {served or 'no version'} is the only version ever served from "
                f"{self.root}"
            )
        return self._serve(stack[-2], "rollback", f"rolled back from {stack[-1]}")
