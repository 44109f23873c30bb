"""Offline plans: deterministic, committed per stack, diffable; and one
entry that builds the same chain on any cloud from the same config."""

from __future__ import annotations

import pytest

pytest.importorskip("pulumi_gcp")
pytest.importorskip("pulumi_aws")
pytest.importorskip("pulumi_azure_native")

from components import plan
from components.chain import OUTPUTS, build_chain
from components.spec import load_spec
from pipeline_code.cli import main
from tests.components.configs import AWS, AZURE, GCP
from tests.components.conftest import run_program

SHARED = {
    "environment": "prod",
    "stream": {"retention_hours": 72},
    "processing": {"shards": 16, "max_workers": 4},
    "model": {"size": "medium", "min_replicas": 2, "max_replicas": 4},
    "serve": {"max_instances": 20},
    "alerts": {"email": "oncall@example.com"},
}
# Resource types of each link, per cloud.
LINKS = {
    "gcp": {
        "ingest": "gcp:pubsub/topic:Topic",
        "process": "gcp:dataflow/flexTemplateJob:FlexTemplateJob",
        "warehouse": "gcp:bigquery/dataset:Dataset",
        "ml": "gcp:vertex/aiEndpoint:AiEndpoint",
        "serve": "gcp:cloudrunv2/service:Service",
        "monitoring": "gcp:monitoring/alertPolicy:AlertPolicy",
    },
    "aws": {
        "ingest": "aws:kinesis/stream:Stream",
        "process": "aws:glue/job:Job",
        "warehouse": "aws:redshiftserverless/workgroup:Workgroup",
        "ml": "aws:sagemaker/endpoint:Endpoint",
        "serve": "aws:lambda/function:Function",
        "monitoring": "aws:cloudwatch/metricAlarm:MetricAlarm",
    },
    "azure": {
        "ingest": "azure-native:eventhub:EventHub",
        "process": "azure-native:datafactory:Pipeline",
        "warehouse": "azure-native:synapse:SqlPool",
        "ml": "azure-native:machinelearningservices:OnlineEndpoint",
        "serve": "azure-native:web:WebApp",
        "monitoring": "azure-native:monitor:MetricAlert",
    },
}
SECTIONS = {"gcp": GCP, "aws": AWS, "azure": AZURE}


@pytest.mark.parametrize("cloud", ["gcp", "aws", "azure"])
def test_one_config_builds_every_link_on_any_cloud(cloud):
    spec = load_spec({"cloud": cloud, cloud: dict(SECTIONS[cloud]), **SHARED})
    rec, chain = run_program(lambda: build_chain(spec))
    types = {r.type for r in rec.resources}
    missing = {link: t for link, t in LINKS[cloud].items() if t not in types}
    assert not missing
    assert set(chain.outputs()) == set(OUTPUTS)


@pytest.fixture(scope="module")
def planned() -> dict[str, str]:
    """Every stack's plan, planned as `dataflow plan --all` plans them: a
    fresh process per stack, side by side."""
    return plan.plan_texts(plan.stacks())


@pytest.mark.parametrize("stack", plan.stacks())
def test_every_stack_matches_its_committed_plan(stack, planned):
    golden = plan.golden_path(stack)
    assert golden.exists(), f"no {golden.name}: run `dataflow plan --stack {stack} --write`"
    changes = plan.diff(golden.read_text(), planned[stack])
    assert not changes, (
        f"stack {stack} changed; review and run `dataflow plan --stack {stack} --write`:\n{changes.text()}"
    )


def test_every_cloud_has_a_committed_stack():
    assert {plan.stack_spec(s).cloud for s in plan.stacks()} == {"gcp", "aws", "azure"}


def test_plans_are_deterministic_and_free_of_object_addresses():
    first, second = plan.plan_text("aws-dev"), plan.plan_text("aws-dev")
    assert first == second and " object at 0x" not in first
    assert "FileAsset(pipeline_code/spark/glue_job.py)" in first


def test_a_diff_names_what_a_change_adds_removes_and_modifies():
    old = plan.golden_path("gcp-dev").read_text()
    lines = old.splitlines()
    topic = next(i for i, line in enumerate(lines) if line.strip().startswith("gcp:pubsub/topic:Topic"))
    setting = topic + 1
    edited = [*lines]
    edited[setting] = edited[setting] + "-edited"
    edited.append("gcp:storage/bucket:Bucket extra-bucket")
    changes = plan.diff("\n".join(edited), old)
    assert changes.removed == ["gcp:storage/bucket:Bucket extra-bucket"] and changes.added == []
    ((resource, (gone, new)),) = changes.modified.items()
    assert resource == lines[topic].strip() and gone == [lines[setting].strip() + "-edited"]
    assert new == [lines[setting].strip()]
    assert "1 to change, 1 to remove" in changes.text()


def test_the_cli_diffs_against_a_plan_file(tmp_path, capsys):
    old = tmp_path / "old.plan"
    old.write_text(
        plan.golden_path("aws-dev").read_text().replace("retentionPeriod: 168.0", "retentionPeriod: 24.0")
    )
    assert main(["plan", "--stack", "aws-dev", "--diff-against", str(old)]) == 0
    out = capsys.readouterr().out
    assert "~ aws:kinesis/stream:Stream dataflow-ingest-stream" in out
    assert "- retentionPeriod: 24.0" in out and "+ retentionPeriod: 168.0" in out
    assert main(["plan", "--stack", "aws-dev", "--diff-against", str(plan.golden_path("aws-dev"))]) == 0
    assert capsys.readouterr().out == "no changes\n"


def test_the_cli_plans_several_stacks_in_order(tmp_path, capsys):
    old = tmp_path / "old.plan"
    old.write_text(plan.golden_path("gcp-dev").read_text())
    assert main(["plan", "--stack", "gcp-dev", "--stack", "gcp-dev", "--diff-against", str(old)]) == 0
    assert capsys.readouterr().out == "no changes\n"  # a stack named twice is planned once
    assert main(["plan", "--stack", "gcp-dev", "--stack", "aws-dev", "--jobs", "2"]) == 0
    golden = [plan.golden_path(s).read_text() for s in ("gcp-dev", "aws-dev")]
    assert capsys.readouterr().out == "".join(golden)  # in the order named
    assert main(["plan", "--all", "--jobs", "0"]) != 0
    assert "--jobs: must be a whole number of at least 1, got '0'" in capsys.readouterr().err


def test_bad_stacks_and_refs_are_named(capsys):
    assert main(["plan", "--stack", "nope"]) != 0
    assert "stack 'nope' has no stacks/Pulumi.nope.yaml" in capsys.readouterr().err
    assert main(["plan", "--stack", "gcp-dev", "--diff-against", "no-such-ref-xyz"]) != 0
    assert "is neither a file nor a git ref" in capsys.readouterr().err


HEAVY = ("numpy", "pyarrow", "duckdb", "scipy", "apache_beam")


@pytest.mark.slow
def test_planning_every_stack_imports_no_data_or_training_library():
    """A cold plan pays for what the stacks use (issue 20): the stacks read
    table descriptions, the export's SQL and the registry's file names, not
    Arrow, DuckDB, NumPy or SciPy (about 0.15 s a stack), nor Beam."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom components import plan\nfor s in plan.stacks(): plan.plan_text(s)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]
