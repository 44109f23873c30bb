"""Offline plan speed and per-cloud install size.

    python bench/plan.py

1. The time of a full three-cloud offline plan (every committed stack on the
   offline engine, rendered): cold as `dataflow plan --all` runs it (a fresh
   interpreter, imports included, one process per stack side by side), cold
   in one process (the stacks one after another), and warm, in this process
   after a first run. Printed against the 3 s target and the warm plan as ratios.
2. The installed size of each single-cloud extra (the distributions it adds
   beyond the base install, as installed here) against all three clouds'
   extras together. Target: each below 40%.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import time

from packaging.requirements import Requirement

TARGET_S = 3.0
TARGET_SHARE = 0.40
CLOUDS = ("gcp", "aws", "azure")


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", req).lower()


def closure(requirements: list[Requirement]) -> set[str]:
    """Every installed distribution these requirements pull in."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        key = (_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            deps = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return {name for name, _ in seen}


def size(dist_name: str) -> int:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return 0
    total = 0
    for f in dist.files or []:
        path = f.locate()
        if path.is_file():
            total += path.stat().st_size
    return total


def extra_requirements(extra: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in md.requires("data-flow") or []]
    return [r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": extra})]


def _timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    serial = _timed("from components import plan\nfor s in plan.stacks(): plan.plan_text(s)")
    cold = _timed("from components import plan\nplan.plan_texts(plan.stacks())")

    from components import plan

    for s in plan.stacks():
        plan.plan_text(s)
    warm_started = time.perf_counter()
    lines = sum(plan.plan_text(s).count("\n") for s in plan.stacks())
    warm = time.perf_counter() - warm_started
    print(f"target: {TARGET_S:.0f} s for a full three-cloud plan; cores: {os.cpu_count()}")
    print(f"three-cloud offline plan ({len(plan.stacks())} stacks, {lines} lines)")
    rows = [
        ("cold, a process per stack (dataflow plan --all)", cold),
        ("cold, one process, stack after stack", serial),
        ("warm (engine and SDKs loaded)", warm),
    ]
    for label, seconds in rows:
        print(
            f"  {label:49s} {seconds:5.2f} s = {seconds / TARGET_S:.2f}x the target, "
            f"{seconds / warm:.1f}x the warm plan"
        )
    print(f"  parallel cold / serial cold: {cold / serial:.2f}x")

    base = closure([r for r in map(Requirement, md.requires("data-flow") or []) if r.marker is None])
    per_cloud = {c: closure(extra_requirements(c)) - base for c in CLOUDS}
    every = set().union(*per_cloud.values())
    all_bytes = sum(size(d) for d in every)
    print(f"installed size of the cloud extras beyond the base install (all three: {all_bytes / 1e6:.0f} MB)")
    for cloud, dists in per_cloud.items():
        share = sum(size(d) for d in dists) / all_bytes
        verdict = "ok" if share < TARGET_SHARE else "over"
        mb = sum(size(d) for d in dists) / 1e6
        print(
            f"  {cloud:6s} {mb:6.0f} MB = {share:.0%} of all clouds ({verdict}, target < {TARGET_SHARE:.0%})"
        )


if __name__ == "__main__":
    main()
