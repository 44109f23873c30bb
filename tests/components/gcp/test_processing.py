"""The processing link on GCP."""

from __future__ import annotations

from pipeline_code.tables import TABLES, written_by
from pipeline_code.warehouses import bigquery
from tests.components.configs import gcp_config
from tests.components.gcp.helpers import build, members_of


def test_the_job_reads_the_ingest_subscription_and_writes_the_warehouse(default):
    rec, _ = default
    job = rec.one("FlexTemplateJob")
    sub = rec.one("subscription:Subscription", "dataflow-ingest-pipeline")
    params = job.inputs["parameters"]
    assert params["input_subscription"] == sub.id
    assert params["output_dataset"] == "shop-analytics-dev:dataflow"
    assert all(isinstance(v, str) for v in params.values())
    bucket = rec.one("storage/bucket:Bucket", "dataflow-process-staging")
    assert (
        job.inputs["containerSpecGcsPath"] == f"gs://{bucket.name}/templates/data-flow-streaming-chain.json"
    )
    worker = job.inputs["serviceAccountEmail"]
    assert worker.startswith("dataflow-process-worker@")

    def target(r) -> str:
        for key in ("tableId", "subscription", "bucket", "repository", "project"):
            if key in r.inputs:
                return r.inputs[key]
        raise AssertionError(r.name)

    granted = {(r.type.rsplit(":", 1)[1], target(r), r.inputs["role"]) for r in members_of(rec, worker)}
    physical = {bigquery.physical_name(TABLES[t]) for t in written_by("processing")}
    assert {("IamMember", t, "roles/bigquery.dataEditor") for t in physical} <= granted
    # The training job's table is not the pipeline's to write.
    assert ("IamMember", "model_versions_changes", "roles/bigquery.dataEditor") not in granted
    sub_name = sub.id.rsplit("/", 1)[1]
    assert ("SubscriptionIAMMember", sub_name, "roles/pubsub.subscriber") in granted
    assert ("RepositoryIamMember", "data-flow", "roles/artifactregistry.reader") in granted


def test_the_worker_gets_nothing_beyond_its_resources(default):
    rec, _ = default
    worker = rec.one("FlexTemplateJob").inputs["serviceAccountEmail"]
    project_roles = {
        r.inputs["role"] for r in members_of(rec, worker) if r.type.endswith("projects/iAMMember:IAMMember")
    }
    assert project_roles == {"roles/dataflow.worker", "roles/bigquery.jobUser"}
    for r in members_of(rec, worker):
        if r.type.endswith("bigquery/iamMember:IamMember"):
            assert r.inputs.get("tableId"), "dataset- or project-wide BigQuery grant"


def test_processing_is_private_streaming_and_drains(default):
    rec, _ = default
    job = rec.one("FlexTemplateJob").inputs
    assert job["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert job["onDelete"] == "drain"
    assert job["enableStreamingEngine"] is True
    assert (job["numWorkers"], job["maxWorkers"]) == (1, 3)
    assert "subnetwork" not in job  # the project's default network, still without public IPs


def test_workers_join_the_configured_subnetwork():
    subnet = "regions/europe-west1/subnetworks/dataflow-private"
    rec, _ = build(gcp={**gcp_config()["gcp"], "subnetwork": subnet})
    assert rec.one("FlexTemplateJob").inputs["subnetwork"] == subnet


def test_the_replay_account_reads_the_archive_writes_the_warehouse_and_nothing_of_pubsub(default):
    rec, _ = default
    replay = "serviceAccount:dataflow-process-replay@shop-analytics-dev.iam.gserviceaccount.com"
    mine = [r for r in rec.iam() if r.inputs.get("member") == replay]
    assert not [r for r in mine if r.type.startswith("gcp:pubsub")]
    project_roles = {r.inputs["role"] for r in mine if r.type.endswith("projects/iAMMember:IAMMember")}
    assert project_roles == {"roles/dataflow.worker", "roles/bigquery.jobUser"}
    buckets = {(r.inputs["bucket"], r.inputs["role"]) for r in mine if r.type.endswith("BucketIAMMember")}
    assert buckets == {("dataflow-archive-raw", "roles/storage.objectViewer"),
                       ("dataflow-process-staging", "roles/storage.objectAdmin")}  # fmt: skip
    (staging,) = [
        r
        for r in mine
        if r.type.endswith("BucketIAMMember") and r.inputs["bucket"] == "dataflow-process-staging"
    ]
    assert 'objects/replay/")' in staging.inputs["condition"]["expression"]
    tables = {
        (r.inputs["tableId"], r.inputs["role"])
        for r in mine
        if r.type.endswith("bigquery/iamMember:IamMember")
    }
    writes = {t for t, role in tables if role == "roles/bigquery.dataEditor"}
    assert {"events", "dead_letters_log", "_dataflow_batches", "sessions_changes"} <= writes
    assert "model_versions_changes" not in writes and "model_versions" not in writes
    reads = {t for t, role in tables if role == "roles/bigquery.dataViewer"}
    assert reads == {"events", "user_features", "user_features_changes", "dead_letters"}
    # The streaming workers' grants are untouched by the replay's.
    worker = rec.one("FlexTemplateJob").inputs["serviceAccountEmail"]
    assert worker != replay.removeprefix("serviceAccount:")
