"""What an image's requirements install: the import-closure tests of the
Dataflow and Glue jobs ask which distributions a job's code may import."""

from __future__ import annotations

import re


def distributions_installed_by(requirements: list[str]) -> set[str]:
    """Every distribution pip installs for these requirements (as installed here)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            deps = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return {name for name, _ in seen}
