"""The processing link on Azure."""

from __future__ import annotations


def test_capture_lands_where_the_spark_job_reads(default):
    rec, _ = default
    hub = rec.one("eventhub:EventHub").inputs
    capture = hub["captureDescription"]
    lake = rec.one("storage:StorageAccount", "dataflow-lake")
    assert capture["enabled"] and capture["encoding"] == "Avro"
    assert capture["destination"]["blobContainer"] == "capture"
    assert capture["destination"]["storageAccountResourceId"].endswith(f"/{lake.inputs['accountName']}")
    job = rec.one("dynamic:Resource", "dataflow-process-job").inputs
    args = job["definition"]["properties"]["jobProperties"]["args"]
    capture_uri = args[args.index("--capture_uri") + 1]
    assert (
        capture_uri
        == f"abfss://capture@{lake.inputs['accountName']}.dfs.core.windows.net/dataflow-ingest-namespace/events/"
    )
    assert args[args.index("--sql_database") + 1] == "dataflow"
    assert args[args.index("--sql_server") + 1] == "dataflow-warehouse-workspace.sql.azuresynapse.net"
    assert job["endpoint"] == "https://dataflow-warehouse-workspace.dev.azuresynapse.net"


def test_the_pipeline_runs_the_job_definition_on_the_pool(default):
    rec, _ = default
    pipeline = rec.one("datafactory:Pipeline", "dataflow-process-pipeline").inputs
    (activity,) = pipeline["activities"]
    assert activity["type"] == "SparkJob" and activity["sparkJob"]["referenceName"] == "dataflow-stream"
    assert (
        activity["targetBigDataPool"]["referenceName"]
        == rec.one("synapse:BigDataPool").inputs["bigDataPoolName"]
    )
    assert activity["policy"]["retry"] == 2 and pipeline["concurrency"] == 1
    linked = rec.one("datafactory:LinkedService", "dataflow-process-synapse").inputs["properties"]
    assert linked["authentication"] == "MSI" and linked["type"] == "AzureSynapseArtifacts"
    trigger = rec.one("datafactory:Trigger", "dataflow-process-keep-running").inputs["properties"]
    assert trigger["pipelines"][0]["pipelineReference"]["referenceName"] == pipeline["pipelineName"]
    pool = rec.one("synapse:BigDataPool").inputs
    assert pool["autoPause"] == {"enabled": True, "delayInMinutes": 15}
    assert pool["autoScale"] == {"enabled": True, "minNodeCount": 3, "maxNodeCount": 3}
    assert "msgspec" in pool["libraryRequirements"]["content"]
