"""The one-way layers: ``lint-imports`` keeps the contracts in pyproject.toml,
and a back-arrow planted in a copy of the tree breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the two packages and the contracts, importable from tmp_path only."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("pipeline_code", "components"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_layer_contract(tree):
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the core importing an engine
        ("pipeline_code/core/_planted.py", "import pipeline_code.beam.pipeline\n", "pipeline_code: apps"),
        # an engine importing an app
        ("pipeline_code/spark/_planted.py", "import pipeline_code.local.run\n", "pipeline_code: apps"),
        # one app importing another
        ("pipeline_code/collector/_planted.py", "import pipeline_code.serving.api\n", "pipeline_code: apps"),
        # the code importing the infrastructure
        ("pipeline_code/host_planted.py", "import components.spec\n", "never imports components"),
        # one cloud's links importing another's
        ("components/gcp/_planted.py", "import components.aws.ingest\n", "components: chain"),
    ],
)
def test_a_planted_back_arrow_breaks_its_contract(tree, module, line, broken):
    (tree / module).write_text(line)
    done = lint(tree)
    assert done.returncode != 0
    assert f"{broken}" in done.stdout and "BROKEN" in done.stdout
    assert module.removesuffix(".py").replace("/", ".") in done.stdout
