"""Offline plans: what a stack would create, without a cloud account or the CLI.

    dataflow plan --stack gcp-dev                    # print the plan
    dataflow plan --stack gcp-dev --write            # update stacks/plans/gcp-dev.plan
    dataflow plan --stack gcp-dev --diff-against main            # vs the plan at a git ref
    dataflow plan --stack gcp-dev --diff-against old.plan        # vs a plan file
    dataflow plan --all --diff-against main          # every stack, in parallel processes

The stack's config (``stacks/Pulumi.<stack>.yaml``) is validated and the
program runs on the offline engine (``components/mocks.py``); every resource
it declares is printed as a tree (type, name, parent, ``[protect]``) with its
settings flattened to ``key.path: value`` lines, sorted, so the text is the
same on every run and a change reads as a line diff. Computed values (ids,
ARNs, endpoints) are the offline engine's placeholders. The package digest
of the Synapse job is left out: it changes with any code change, which is
not an infrastructure change.

The golden plans in ``stacks/plans/`` are checked by the tests: a change
that alters a stack's resources fails until its plan is rewritten
(``--write``), so every infrastructure change shows in review as a diff.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.mocks import Declared, run_program
from components.spec import ChainSpec, spec_from_stack_file

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
PLANS = STACKS / "plans"
HIDDEN = {"code_digest"}


def stacks() -> list[str]:
    """Every committed stack (``stacks/Pulumi.<stack>.yaml``)."""
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("Pulumi.*.yaml"))


def stack_spec(stack: str) -> ChainSpec:
    path = STACKS / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(
            f"stack {stack!r} has no {path.relative_to(ROOT)} (stacks: {', '.join(stacks())})"
        )
    return spec_from_stack_file(str(path))


def resources(stack: str) -> list[Declared]:
    """Every resource the stack's program declares, on the offline engine."""
    from components.chain import build_chain

    spec = stack_spec(stack)
    recorder, _ = run_program(lambda: build_chain(spec), stack=stack)
    return recorder.resources


def _asset(value: Any) -> Any:
    """Assets and archives by what they hold (paths relative to the repository)."""
    import pulumi

    def rel(path: str) -> str:
        p = Path(path)
        return p.relative_to(ROOT).as_posix() if p.is_absolute() and p.is_relative_to(ROOT) else path

    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        return f"{type(value).__name__}({rel(value.path)})"
    if isinstance(value, pulumi.RemoteAsset | pulumi.RemoteArchive):
        return f"{type(value).__name__}({value.uri})"
    if isinstance(value, pulumi.StringAsset):
        return f"StringAsset(sha256:{hashlib.sha256(value.text.encode()).hexdigest()[:16]})"
    if isinstance(value, pulumi.AssetArchive):
        return {"AssetArchive": {k: _asset(v) for k, v in sorted(value.assets.items())}}
    return value


def _flatten(value: Any, path: str) -> list[str]:
    value = _asset(value)
    if isinstance(value, dict):
        if not value:
            return [f"{path}: {{}}"]
        return [line for k in sorted(value) for line in _flatten(value[k], f"{path}.{k}" if path else k)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [line for i, v in enumerate(value) for line in _flatten(v, f"{path}[{i}]")]
    if isinstance(value, str) and value[:1] in "{[":
        with contextlib.suppress(ValueError):  # policies, dashboards: JSON in a string, shown canonically
            value = json.loads(value)
    return [f"{path}: {json.dumps(value, sort_keys=True, default=str)}"]


def render(declared: list[Declared], stack: str) -> str:
    """The plan as text: a tree of resources, each with its sorted settings."""
    children: dict[str | None, list[Declared]] = {}
    for r in declared:
        children.setdefault(r.parent, []).append(r)
    lines = [f"# offline plan of stack {stack}: {len(declared)} resources"]

    def walk(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: (r.name, r.type)):
            pad = "  " * depth
            lines.append(f"{pad}{r.type} {r.name}{' [protect]' if r.protect else ''}")
            settings = {k: v for k, v in r.inputs.items() if k not in HIDDEN and not k.startswith("__")}
            if settings:
                lines.extend(f"{pad}    {line}" for line in _flatten(settings, ""))
            walk(f"{r.type} {r.name}", depth + 1)

    walk(None, 0)
    return "\n".join(lines) + "\n"


def plan_text(stack: str) -> str:
    return render(resources(stack), stack)


def plan_texts(names: list[str], jobs: int | None = None) -> dict[str, str]:
    """Several stacks' plans, each in its own fresh process, ``jobs`` at a
    time (default: one per core): a process imports only its own cloud's
    SDK, and the clouds' imports and programs run side by side. One stack
    is planned here, in this process."""
    if len(names) <= 1:
        return {name: plan_text(name) for name in names}
    for name in names:
        stack_spec(name)  # a wrong stack or spec fails here, before any process starts
    workers = min(len(names), jobs or os.cpu_count() or 1)
    # spawn: a child starts clean (no SDK imported, no engine state), on every OS.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(names, pool.map(plan_text, names), strict=True))


@dataclass(frozen=True)
class PlanDiff:
    added: list[str]
    removed: list[str]
    modified: dict[str, tuple[list[str], list[str]]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def text(self) -> str:
        out = [f"+ {r}" for r in self.added] + [f"- {r}" for r in self.removed]
        for r, (gone, new) in sorted(self.modified.items()):
            out.append(f"~ {r}")
            out += [f"    - {line}" for line in gone] + [f"    + {line}" for line in new]
        n = f"{len(self.added)} to add, {len(self.modified)} to change, {len(self.removed)} to remove"
        return "\n".join([*out, n]) + "\n"


def _parse(text: str) -> dict[str, list[str]]:
    """Plan text -> ``{"type name": [setting lines]}``."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        line = raw.strip()
        if ": " not in line:  # a resource; settings are always "path: value"
            current = line.removesuffix(" [protect]")
            out[current] = ["protect: true"] if line.endswith(" [protect]") else []
        elif current is not None:
            out[current].append(line)
    return out


def diff(old: str, new: str) -> PlanDiff:
    before, after = _parse(old), _parse(new)
    modified = {}
    for r in sorted(before.keys() & after.keys()):
        gone = [line for line in before[r] if line not in after[r]]
        added = [line for line in after[r] if line not in before[r]]
        if gone or added:
            modified[r] = (gone, added)
    return PlanDiff(sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys()), modified)


def golden_path(stack: str) -> Path:
    return PLANS / f"{stack}.plan"


def baseline(stack: str, ref_or_file: str) -> str:
    """A plan to compare with: a file, or the golden plan at a git ref."""
    path = Path(ref_or_file)
    if path.is_file():
        return path.read_text()
    rel = golden_path(stack).relative_to(ROOT).as_posix()
    done = subprocess.run(
        ["git", "show", f"{ref_or_file}:{rel}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise FileNotFoundError(
            f"--diff-against {ref_or_file!r} is neither a file nor a git ref holding {rel}: "
            f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'not found'}"
        )
    return done.stdout


def cmd_plan(args: argparse.Namespace) -> None:
    """Print stacks' offline plans, write them as the golden plans, or diff
    them (several stacks: planned in parallel processes, shown in order).
    A wrong stack, spec or ref raises ``ValueError``/``OSError`` (the CLI
    prints them as one line)."""
    names = stacks() if args.all else list(dict.fromkeys(args.stack or []))
    if not names:
        raise ValueError("name a stack with --stack (repeatable), or --all")
    several = len(names) > 1
    for name, text in plan_texts(names, args.jobs).items():
        if args.diff_against:
            changes = diff(baseline(name, args.diff_against), text)
            if several:
                sys.stdout.write(f"# {name}\n")
            sys.stdout.write(changes.text() if changes else "no changes\n")
        elif args.write:
            path = golden_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
        else:
            sys.stdout.write(text)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return int(value)


def add_command(sub: argparse._SubParsersAction) -> None:
    """``dataflow plan``: registered as a ``dataflow.commands`` entry point."""
    pl = sub.add_parser("plan", help="a stack's resources, offline (no cloud account, no Pulumi CLI)")
    which = pl.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", action="append", help="stack name: stacks/Pulumi.<stack>.yaml (repeatable)")
    which.add_argument("--all", action="store_true", help="every committed stack")
    pl.add_argument(
        "--jobs", type=_positive, default=None, help="stacks planned at once (default: one per core)"
    )
    pl.add_argument("--diff-against", default=None, help="a plan file, or a git ref holding stacks/plans/")
    pl.add_argument("--write", action="store_true", help="write stacks/plans/<stack>.plan")
    pl.set_defaults(func=cmd_plan)
