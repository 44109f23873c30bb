"""The fast path runs from the serving image: everything its entrypoints and
their store clients import must be installed by that image's requirements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from tests.pipeline_code.closure import distributions_installed_by

ENTRYPOINTS = (
    "pipeline_code.fastpath.__main__",
    "pipeline_code.fastpath.pubsub_push",
    "pipeline_code.fastpath.aws_lambda",
    "pipeline_code.userstate.firestore",
    "pipeline_code.userstate.dynamodb",
    # what the adapters import on use
    "google.cloud.firestore",
    "boto3",
)


# Imported only because this test environment has them: grpc tries
# grpc_tools, google-api-core tries OpenTelemetry's instrumentation (and
# wrapt with it), each in a try/except; setuptools' .pth hook loads itself
# (and its backports) when any interpreter here starts.
PRESENT_HERE_ONLY = {
    "grpcio-tools",
    "opentelemetry-instrumentation",
    "wrapt",
    "setuptools",
    "backports.tarfile",
}


def test_the_fast_path_needs_only_the_serving_images_requirements() -> None:
    # Which distribution installed each loaded module's file (namespace
    # packages such as google.* span many distributions).
    probe = (
        "import importlib, sys, os, importlib.metadata as md\n"
        f"for m in {ENTRYPOINTS!r}: importlib.import_module(m)\n"
        "owner = {os.path.realpath(d.locate_file(f)): d.metadata['Name'] for d in md.distributions() "
        "for f in (d.files or ()) if f.suffix in ('.py', '.so')}\n"
        "files = {os.path.realpath(m.__file__) for m in list(sys.modules.values())\n"
        "         if getattr(m, '__file__', None)}\n"
        "print(' '.join(sorted({owner[f] for f in files if f in owner})))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", probe], text=True).split())
    loaded = {d.lower().replace("_", "-") for d in loaded} - {"data-flow"} - PRESENT_HERE_ONLY
    lines = Path("pipeline_code/serving/requirements.txt").read_text().splitlines()
    requirements = [r for r in lines if r and not r.startswith("#")]
    installed = distributions_installed_by(requirements)
    assert {"google-cloud-firestore", "boto3"} <= {Requirement(r).name for r in requirements}
    assert loaded <= installed, sorted(loaded - installed)
