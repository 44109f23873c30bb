"""The Flex Template's files: metadata, parameters, image requirements."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_code.beam.pipeline import LOCAL_FLAGS, ProcessingOptions
from tests.pipeline_code.closure import distributions_installed_by

TEMPLATE = Path("pipeline_code/dataflow")


def flags(options_class) -> set[str]:
    import argparse

    parser = argparse.ArgumentParser()
    options_class._add_argparse_args(parser)
    return {a.dest for a in parser._actions if a.dest != "help"}


def test_metadata_lists_every_pipeline_flag():
    metadata = json.loads((TEMPLATE / "metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    assert names == flags(ProcessingOptions) - set(LOCAL_FLAGS)
    assert metadata["streaming"] is True
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional")}
    # The subscription is the stream's, not a replay's (run_streaming names it when missing).
    assert required == {"output_dataset"}


def test_the_job_passes_only_listed_string_parameters():
    pytest.importorskip("pulumi_gcp", reason="the gcp extra is not installed")
    from components.gcp.processing import job_parameters, template_metadata, template_spec
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
    opts = ProcessingOptions(argv)
    assert (opts.input_subscription, opts.batch_seconds) == ("projects/p/subscriptions/s", 5)
    assert opts.view_as(ProcessingOptions).shards == 16


@pytest.mark.slow
def test_the_launcher_entry_imports_only_the_images_requirements():
    """Import the pipeline with every installed module that the image's
    requirements would not bring made unimportable: it must still load
    (optional imports may fail quietly), and the training and serving stacks
    must not come in."""
    import importlib.metadata as md

    requirements = [
        r for r in (TEMPLATE / "requirements.txt").read_text().splitlines() if r and not r.startswith("#")
    ]
    # The image copies pipeline_code in; everything else comes from pip.
    image = distributions_installed_by(requirements) | {"data-flow"}
    assert {
        "apache-beam",
        "duckdb",
        "pyarrow",
        "msgspec",
        "google-cloud-bigquery",
        "google-cloud-storage",
    } <= image
    outside = sorted(
        module
        for module, dists in md.packages_distributions().items()
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & image
    )
    probe = (
        f"import sys; sys.modules.update(dict.fromkeys({outside!r})); "
        "import pipeline_code.beam.streaming, pipeline_code.dataflow.main, pipeline_code.beam.replay_job; "
        "import pipeline_code.warehouses.bigquery as bq; from google.cloud import storage; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules if sys.modules[m] is not None})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scipy" in outside and "uvicorn" in outside  # the check has teeth here
    assert not {"implicit", "scipy", "uvicorn", "pulumi", "pulumi_gcp"} & set(done.stdout.split())


def test_a_launch_naming_replay_runs_the_replay_and_its_flags_parse():
    from pipeline_code.beam.replay_job import replay_of
    from pipeline_code.dataflow.main import is_replay
    from pipeline_code.host import replay_from_arguments

    argv = [
        "--output_dataset=p:d",
        "--replay=dead_letters",
        "--replay_stage=validate",
        "--archive_uri=gs://a/raw/",
    ]
    assert is_replay(argv) and not is_replay(["--output_dataset=p:d", "--replay_staging=gs://b/x"])
    request = replay_from_arguments(ProcessingOptions(argv).view_as(ProcessingOptions))
    assert request.describe() == "dead_letters stage=validate since=any"
    assert replay_of(request, 5).rerun_before_us == 5 and replay_of(request, 5).stage == "validate"
    archive = replay_from_arguments(
        ProcessingOptions(
            ["--replay=archive", "--replay_from=2026-11-01", "--replay_to=2026-11-01T01:00:00Z"]
        )
    )
    assert replay_of(archive, 5).rerun_before_us is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--replay=archive", "--replay_from=2026-11-01", "--replay_to=2026-11-02"],
            "--output_dataset is required",
        ),
        (["--output_dataset=p:d", "--replay=everything"], "--replay must be one of archive, dead_letters"),
        (
            ["--output_dataset=shop-dev:events", "--replay=dead_letters"],
            "needs --replay_staging or --temp_location",
        ),
    ],
)
def test_a_replay_launch_with_bad_flags_names_them(argv, message):
    from pipeline_code.beam.replay_job import run_replay

    with pytest.raises(ValueError, match=re.escape(message)):
        run_replay(argv)


def test_the_templates_replay_parameters_admit_what_the_flags_take():
    metadata = {p["name"]: p for p in json.loads((TEMPLATE / "metadata.json").read_text())["parameters"]}
    good = {
        "replay": ["archive", "dead_letters"],
        "replay_from": ["2026-11-01", "2026-11-01T12:00:00Z", "2026-11-01T12:00:00.5+01:00"],
        "replay_stage": ["validate", "parse"],
        "archive_uri": ["gs://shop-archive/raw/"],
    }
    for name, values in good.items():
        for value in values:
            assert all(re.fullmatch(r, value) for r in metadata[name]["regexes"]), (name, value)
    for name, value in (("replay", "all"), ("replay_from", "yesterday"), ("archive_uri", "s3://b/raw/")):
        assert not all(re.fullmatch(r, value) for r in metadata[name]["regexes"]), (name, value)
