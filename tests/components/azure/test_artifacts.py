"""The Azure definitions Pulumi deploys, checked with Azure's own SDK models:
the Data Factory pipeline (azure-mgmt-datafactory) and the Synapse Spark job
definition (azure-synapse-artifacts); and the job definition's provider."""

from __future__ import annotations

from azure.mgmt.datafactory import models as adf
from azure.synapse.artifacts import models as syn
from azure.synapse.artifacts._serialization import Model, Serializer

from components.azure.processing import activity_args, pipeline_definition, replay_args, replay_parameters
from components.azure.synapse_job import (
    SparkJobDefinitionProvider,
    job_definition,
    package_digest,
    package_zip,
)
from pipeline_code.spark.synapse import parse_args, parse_replay_args
from tests.components.azure.helpers import build

PIPELINE = pipeline_definition(
    linked_service="synapse", job="dataflow-stream", pool="dataflow", retries=2, retry_interval_s=300
)
LAKE = "abfss://work@lake1.dfs.core.windows.net/"
JOB = job_definition(
    pool="dataflow", file=LAKE + "code/synapse_job.py", py_files=LAKE + "code/pipeline_code.zip",
    args=["--shards", "8"], node_size="Small", min_executors=1, max_executors=2,
)  # fmt: skip


def unknown_keys(model_cls, data: dict, path: str = "") -> list[str]:
    """Keys of ``data`` the SDK model does not define, recursively."""
    fields = {f._rest_name: f for f in model_cls._attr_to_rest_field.values()}
    found = []
    for key, value in data.items():
        if key not in fields:
            found.append(f"{path}.{key}")
            continue
        sub = getattr(
            model_cls(data), fields[key]._attr_name if hasattr(fields[key], "_attr_name") else key, None
        )
        if isinstance(value, dict) and hasattr(type(sub), "_attr_to_rest_field"):
            found += unknown_keys(type(sub), value, f"{path}.{key}")
    return found


def test_the_pipeline_is_a_valid_data_factory_pipeline():
    resource = adf.PipelineResource(PIPELINE)
    assert resource.properties.concurrency == 1
    (raw,) = PIPELINE["properties"]["activities"]
    activity = adf.SynapseSparkJobDefinitionActivity(raw)
    assert activity.type_properties.spark_job.reference_name == "dataflow-stream"
    assert activity.type_properties.target_big_data_pool.reference_name == "dataflow"
    assert activity.policy.retry == 2 and activity.policy.timeout == "7.00:00:00"
    assert activity.linked_service_name.reference_name == "synapse"
    assert unknown_keys(adf.SynapseSparkJobDefinitionActivity, raw) == []
    assert (
        unknown_keys(adf.Pipeline, {k: v for k, v in PIPELINE["properties"].items() if k != "activities"})
        == []
    )


def test_the_unknown_key_check_has_teeth():
    raw = {**PIPELINE["properties"]["activities"][0], "retryPolicy": {"count": 3}}
    assert unknown_keys(adf.SynapseSparkJobDefinitionActivity, raw) == [".retryPolicy"]


def test_the_deployed_pipeline_is_that_definition():
    rec, _ = build()
    (deployed,) = rec.one("datafactory:Pipeline", "dataflow-process-pipeline").inputs["activities"]
    (raw,) = PIPELINE["properties"]["activities"]
    flat = {k: v for k, v in raw.items() if k != "typeProperties"} | raw["typeProperties"]
    assert deployed == flat
    assert activity_args(raw)["spark_job"] == {
        "reference_name": "dataflow-stream",
        "type": "SparkJobDefinitionReference",
    }


def serialize(data: dict) -> dict:
    resource = syn.SparkJobDefinitionResource.deserialize(data)
    models = {k: v for k, v in vars(syn).items() if isinstance(v, type)}
    return Serializer(models).body(resource, "SparkJobDefinitionResource")


def missing_required(model: Model, path: str = "") -> list[str]:
    """Required attributes (the model's ``_validation``) left empty, recursively."""
    found = [
        f"{path}.{attr}"
        for attr, rule in getattr(model, "_validation", {}).items()
        if rule.get("required") and getattr(model, attr, None) is None
    ]
    for attr in getattr(model, "_attribute_map", {}):
        value = getattr(model, attr, None)
        if isinstance(value, Model):
            found += missing_required(value, f"{path}.{attr}")
    return found


def test_the_job_definition_is_a_valid_synapse_spark_job_definition():
    resource = syn.SparkJobDefinitionResource.deserialize(JOB)
    assert resource.properties.target_big_data_pool.reference_name == "dataflow"
    assert resource.properties.job_properties.conf["spark.submit.pyFiles"] == LAKE + "code/pipeline_code.zip"
    assert (
        not resource.properties.additional_properties
        and not resource.properties.job_properties.additional_properties
    )
    # Every key survives the SDK's round trip, and its required fields are present.
    assert serialize(JOB) == JOB
    assert missing_required(resource) == []
    broken = {"properties": {**JOB["properties"], "jobProperties": {"name": "x", "file": "f"}}}
    assert ".properties.job_properties.driver_memory" in missing_required(
        syn.SparkJobDefinitionResource.deserialize(broken)
    )


def test_the_deployed_job_runs_the_synapse_entry_with_the_chains_settings():
    rec, _ = build(processing={"shards": 16, "batch_seconds": 30})
    props = rec.one("dynamic:Resource", "dataflow-process-job").inputs
    job = props["definition"]["properties"]["jobProperties"]
    assert job["file"].endswith("/code/synapse_job.py") and job["file"] == props["script_uri"]
    assert job["conf"]["spark.submit.pyFiles"] == props["package_uri"]
    args = parse_args(job["args"])
    assert (args.settings.shards, args.settings.batch_seconds) == (16, 30)
    assert props["code_digest"] == package_digest()
    serialize(props["definition"])


def test_the_package_zip_has_the_package_at_its_top(tmp_path):
    import zipfile

    path = tmp_path / "p.zip"
    path.write_bytes(package_zip())
    names = zipfile.ZipFile(path).namelist()
    assert "pipeline_code/spark/synapse.py" in names and "pipeline_code/spark/adapter.py" in names
    assert all(n.startswith("pipeline_code/") for n in names) and not [n for n in names if "__pycache__" in n]


def test_the_provider_checks_and_diffs_without_calling_azure():
    provider = SparkJobDefinitionProvider()
    props = {"endpoint": "https://ws.dev.azuresynapse.net", "name": "dataflow-stream", "definition": JOB}
    props |= {"script_uri": LAKE + "code/synapse_job.py", "package_uri": LAKE + "code/pipeline_code.zip"}
    props |= {"code_digest": "a", "script": "synapse_job.py"}
    assert provider.check({}, props).failures == []
    bad = provider.check(
        {},
        {
            **props,
            "endpoint": "ws",
            "script": "nowhere.py",
            "definition": {"properties": {"jobProperties": {"file": "x.py"}}},
        },
    )
    assert sorted(f.property for f in bad.failures) == ["definition", "endpoint", "script"]
    assert provider.diff("id", props, {**props, "script": "synapse_replay_job.py"}).changes is True
    assert provider.diff("id", props, props).changes is False
    new_code = provider.diff("id", props, {**props, "code_digest": "b"})
    assert new_code.changes is True and new_code.replaces == []
    renamed = provider.diff("id", props, {**props, "name": "other"})
    assert renamed.replaces == ["name"]


def test_the_factory_gets_exactly_its_two_synapse_roles():
    from components.azure.synapse_job import SynapseRoleProvider, role_assignment_body

    rec, _ = build()
    roles = {r.name: r.inputs for r in rec.of_type("dynamic:Resource") if "role" in r.inputs}
    assert sorted(r["role"] for r in roles.values()) == ["Synapse Artifact User", "Synapse Compute Operator"]
    assert {r["principal_id"] for r in roles.values()} == {"principal-dataflow-process-factory"}
    assert {r["workspace"] for r in roles.values()} == {"dataflow-warehouse-workspace"}
    assert len({r["assignment_id"] for r in roles.values()}) == 2
    assert role_assignment_body("role-1", "p-1", "ws") == {
        "roleId": "role-1",
        "principalId": "p-1",
        "scope": "workspaces/ws",
    }
    provider = SynapseRoleProvider()
    props = next(iter(roles.values()))
    assert provider.check({}, props).failures == []
    assert provider.diff("id", props, {**props, "principal_id": "other"}).replaces == ["principal_id"]
    assert [f.property for f in provider.check({}, {**props, "role": ""}).failures] == ["role"]


REPLAY = pipeline_definition(
    linked_service="synapse", job="dataflow-replay", pool="dataflow", retries=0, retry_interval_s=30,
    description="replays", timeout="0.12:00:00", args=replay_args(["--shards", "8"]),
    parameters=replay_parameters(),
)  # fmt: skip


def test_the_replay_pipeline_is_a_valid_data_factory_pipeline_with_its_parameters():
    resource = adf.PipelineResource(REPLAY)
    assert sorted(resource.properties.parameters) == ["from", "replay", "since", "stage", "to"]
    assert resource.properties.parameters["from"].default_value == ""
    assert resource.properties.parameters["replay"].default_value is None  # a run must name it
    (raw,) = REPLAY["properties"]["activities"]
    activity = adf.SynapseSparkJobDefinitionActivity(raw)
    assert activity.type_properties.arguments[-5:] == [
        "--replay=@{pipeline().parameters.replay}",
        "--replay_from=@{pipeline().parameters.from}",
        "--replay_to=@{pipeline().parameters.to}",
        "--replay_stage=@{pipeline().parameters.stage}",
        "--replay_since=@{pipeline().parameters.since}",
    ]
    assert unknown_keys(adf.SynapseSparkJobDefinitionActivity, raw) == []
    assert (
        unknown_keys(adf.Pipeline, {k: v for k, v in REPLAY["properties"].items() if k != "activities"}) == []
    )


def _run_with(args: list[str], parameters: dict[str, str]) -> list[str]:
    """The arguments Data Factory hands the job for a run with ``parameters``
    (``@{pipeline().parameters.X}`` interpolated; an unset one is empty)."""
    import re

    return [
        re.sub(r"@\{pipeline\(\)\.parameters\.(\w+)\}", lambda m: parameters.get(m[1], ""), a) for a in args
    ]


def test_the_deployed_replay_job_parses_a_runs_parameters():
    rec, _ = build()
    props = rec.one("dynamic:Resource", "dataflow-process-replay-job").inputs
    assert props["script"] == "synapse_replay_job.py" and props["script_uri"].endswith(
        "/code/synapse_replay_job.py"
    )
    pipeline = rec.one("datafactory:Pipeline", "dataflow-process-replay-pipeline").inputs
    (activity,) = pipeline["activities"]
    assert activity["sparkJob"]["referenceName"] == "dataflow-replay" == pipeline["pipelineName"]
    assert activity["policy"]["retry"] == 0 and activity["policy"]["timeout"] == "0.12:00:00"
    archive = parse_replay_args(
        _run_with(activity["arguments"], {"replay": "archive", "from": "2026-11-01", "to": "2026-11-02"})
    )
    lake = rec.one("storage:StorageAccount", "dataflow-lake").inputs["accountName"]
    assert archive.capture_uri == f"abfss://capture@{lake}.dfs.core.windows.net"
    assert archive.request.describe() == "archive 2026-11-01T00:00:00+00:00..2026-11-02T00:00:00+00:00"
    rerun = parse_replay_args(
        _run_with(activity["arguments"], {"replay": "dead_letters", "stage": "validate"})
    )
    assert rerun.request.describe() == "dead_letters stage=validate since=any"
    # The definition's own arguments are the activity's without the run's.
    job_args = props["definition"]["properties"]["jobProperties"]["args"]
    assert activity["arguments"][: len(job_args)] == job_args
    # No trigger runs it.
    triggers = [r.inputs["properties"] for r in rec.of_type("datafactory:Trigger")]
    assert not [
        t
        for t in triggers
        for p in t.get("pipelines", [])
        if p["pipelineReference"]["referenceName"] == "dataflow-replay"
    ]
