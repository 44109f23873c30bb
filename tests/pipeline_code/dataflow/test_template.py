"""The Flex Template's files: metadata, parameters, image requirements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_code.beam.pipeline import ProcessingOptions
from pipeline_code.beam.streaming import StreamingOptions

TEMPLATE = Path("pipeline_code/dataflow")


def flags(options_class) -> set[str]:
    import argparse

    parser = argparse.ArgumentParser()
    options_class._add_argparse_args(parser)
    return {a.dest for a in parser._actions if a.dest != "help"}


def test_metadata_lists_every_pipeline_flag():
    metadata = json.loads((TEMPLATE / "metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    assert names == flags(StreamingOptions) | flags(ProcessingOptions)
    assert metadata["streaming"] is True
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    assert required == {"input_subscription", "output_dataset"}


def test_the_job_passes_only_listed_string_parameters():
    pytest.importorskip("pulumi_gcp", reason="the gcp extra is not installed")
    import re

    from components.gcp.process import job_parameters, template_metadata, template_spec
    from components.spec import ProcessingSpec

    params = job_parameters("projects/shop-dev/subscriptions/s", "shop-dev:events", ProcessingSpec())
    metadata = {p["name"]: p for p in template_metadata()["parameters"]}
    assert set(params) <= set(metadata)
    for name, value in params.items():
        assert isinstance(value, str)
        for regex in metadata[name].get("regexes", []):
            assert re.fullmatch(regex, value), (name, value)
    spec = json.loads(template_spec("europe-west1-docker.pkg.dev/p/r/pipeline:1"))
    assert spec["sdkInfo"] == {"language": "PYTHON"} and spec["image"].endswith("pipeline:1")


def test_the_parameters_parse_as_the_pipelines_flags():
    """What Dataflow passes to main.py is what run_streaming reads."""
    argv = [
        "--input_subscription=projects/p/subscriptions/s",
        "--output_dataset=p:d",
        "--batch_seconds=5",
        "--shards=16",
    ]
    opts = StreamingOptions(argv)
    assert (opts.input_subscription, opts.batch_seconds) == ("projects/p/subscriptions/s", 5)
    assert opts.view_as(ProcessingOptions).shards == 16


def test_the_launcher_entry_imports_only_the_images_requirements():
    probe = (
        "import sys, runpy; sys.argv=['x']; import pipeline_code.beam.streaming; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", probe], text=True).split())
    loaded = {m for m in loaded if not m.startswith(("_", "pipeline_code"))}
    requirements = (TEMPLATE / "requirements.txt").read_text().splitlines()
    named = {
        r.split("[")[0].split(">=")[0].split("==")[0].replace("-", "_")
        for r in requirements
        if r and not r.startswith("#")
    }
    assert "apache_beam" in loaded and "duckdb" in loaded
    # Beam's own dependencies come with it in the SDK image.
    assert not {"implicit", "scipy", "uvicorn", "pulumi", "pulumi_gcp"} & loaded
    assert {"duckdb", "pyarrow", "msgspec"} <= named
