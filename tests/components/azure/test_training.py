"""The slow path on Azure: the export pipeline, the scheduled command job, the job's identity."""

from __future__ import annotations

import re

import sqlglot
from azure.mgmt.datafactory import models as adf

from components.azure.training import DEPLOYER_ACTIONS, export_pipeline, record_pipeline
from pipeline_code.ml.export import export_sql
from tests.components.azure.test_artifacts import unknown_keys

PIPELINE = export_pipeline(parquet_dataset="training_export", sql_dataset="events")


def test_the_export_pipeline_is_a_valid_data_factory_pipeline():
    resource = adf.PipelineResource(PIPELINE)
    assert resource.properties.concurrency == 1
    delete, copy = PIPELINE["properties"]["activities"]
    for cls, raw in ((adf.DeleteActivity, delete), (adf.CopyActivity, copy)):
        # These SDK models flatten typeProperties: each key must land on an attribute.
        model = cls(raw)
        for key in raw["typeProperties"]:
            assert getattr(model, re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()) is not None, (cls, key)
        assert unknown_keys(cls, {k: v for k, v in raw.items() if k != "typeProperties"}) == []
    assert adf.CopyActivity({**copy, "typeProperties": {"sorce": {}}}).source is None  # the check has teeth
    activity = adf.CopyActivity(copy)
    assert activity.depends_on[0].activity == "ClearLastExport"
    assert copy["typeProperties"]["source"]["sqlReaderQuery"] == export_sql("tsql")
    assert sqlglot.parse_one(export_sql("tsql"), read="tsql")


def test_the_export_runs_daily_30_minutes_before_the_job(default):
    rec, _ = default
    trigger = rec.one("datafactory:Trigger", "dataflow-train-export-daily").inputs["properties"]
    assert trigger["recurrence"]["schedule"] == {"minutes": [30], "hours": [2]}
    schedule = rec.one("machinelearningservices:Schedule").inputs["properties"]
    assert schedule["trigger"] == {"triggerType": "Cron", "expression": "0 3 * * *", "timeZone": "UTC"}
    assert schedule["isEnabled"] is True


def test_the_command_job_mounts_the_export_and_the_registry_as_its_own_identity(default):
    rec, _ = default
    job = rec.one("machinelearningservices:Schedule").inputs["properties"]["action"]["jobDefinition"]
    assert job["identity"]["identityType"] == "Managed"
    assert job["identity"]["clientId"] == "client-dataflow-train-job"
    assert job["inputs"]["data"]["uri"] == "azureml://datastores/dataflow_registry/paths/training/latest/"
    assert job["outputs"]["registry"]["mode"] == "ReadWriteMount"
    assert "--registry ${{outputs.registry}}" in job["command"] and "${{inputs.data}}" in job["command"]
    assert '"platform": "azureml"' in job["environmentVariables"]["ROLLOUT"]


def test_the_jobs_identity_writes_the_registry_and_may_only_roll_out(default):
    rec, _ = default
    mine = [
        a.inputs
        for a in rec.of_type("authorization:RoleAssignment")
        if a.inputs["principalId"] == "principal-dataflow-train-job"
    ]
    scopes = sorted(a["scope"].rsplit("/", 2)[-2] for a in mine)
    assert scopes == ["BlobContainer", "Workspace"]
    role = rec.one("authorization:RoleDefinition", "dataflow-train-deployer").inputs
    assert role["permissions"][0]["actions"] == list(DEPLOYER_ACTIONS)
    assert all(a.startswith("Microsoft.MachineLearningServices/workspaces/") for a in DEPLOYER_ACTIONS)


def test_the_jobs_health_reaches_the_alerts_through_application_insights(default):
    rec, _ = default
    job = rec.one("machinelearningservices:Schedule").inputs["properties"]["action"]["jobDefinition"]
    env = job["environmentVariables"]
    assert env["TRAINING_METRICS"] == "appinsights" and env["TRAINING_NAME"] == "dataflow-train"
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith("InstrumentationKey=")
    refused = rec.one("monitor:ScheduledQueryRule", "dataflow-monitoring-model-refused").inputs
    query = refused["criteria"]["allOf"][0]["query"]
    assert 'customDimensions.Job) == "dataflow-train"' in query and "value >= 3" in query
    assert refused["scopes"][0].endswith("/Component/dataflow-ml-insights")


def test_the_decisions_copy_is_a_valid_upsert_into_model_versions():
    definition = record_pipeline(parquet_dataset="decisions", sql_dataset="model_versions")
    (copy,) = definition["properties"]["activities"]
    model = adf.CopyActivity(copy)
    sink = adf.SqlDWSink(copy["typeProperties"]["sink"])
    assert sink.write_behavior == "Upsert" and sink.upsert_settings["keys"] == ["model_version"]
    assert model.sink["type"] == "SqlDWSink"
    source = adf.ParquetSource(copy["typeProperties"]["source"])
    assert source.store_settings["wildcardFileName"] == "*.parquet"
    assert unknown_keys(adf.SqlDWSink, copy["typeProperties"]["sink"]) == []
    assert unknown_keys(adf.ParquetSource, copy["typeProperties"]["source"]) == []
    assert unknown_keys(adf.CopyActivity, {k: v for k, v in copy.items() if k != "typeProperties"}) == []


def test_the_job_writes_its_decisions_and_the_factory_upserts_them_after_its_time(default):
    from pipeline_code.tables import TABLES

    rec, _ = default
    job = rec.one("machinelearningservices:Schedule").inputs["properties"]["action"]["jobDefinition"]
    assert job["environmentVariables"]["WAREHOUSE"] == "registry:decisions/"
    # Training at 03:00 with a 4-hour limit: the copy runs at 07:30.
    trigger = rec.one("datafactory:Trigger", "dataflow-train-record-daily").inputs["properties"]
    assert trigger["recurrence"]["schedule"] == {"minutes": [30], "hours": [7]}
    assert trigger["pipelines"][0]["pipelineReference"]["referenceName"] == "training-record"
    source = rec.one("datafactory:Dataset", "dataflow-train-decisions").inputs["properties"]
    assert source["location"] == {
        "type": "AzureBlobStorageLocation",
        "container": "registry",
        "folderPath": "decisions",
    }
    sink = rec.one("datafactory:Dataset", "dataflow-train-model-versions").inputs["properties"]
    assert sink["table"] == "model_versions" == TABLES["model_versions"].name
    # The factory's database user may write model_versions, and only that.
    grant = rec.one("dynamic:Resource", "dataflow-warehouse-record-models-training-record").inputs
    assert grant["tables"] == ["model_versions"] and grant["roles"] == []
    assert grant["user"] == "dataflow-train-factory"  # the factory's identity signs in by its name
