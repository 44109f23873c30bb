"""The slow path on GCP: the scheduled export and custom job, and who may do what."""

from __future__ import annotations

import base64
import json

import sqlglot

from pipeline_code.ml.deploy import target_from_env
from tests.components.gcp.helpers import build, members_of


def _jobs(rec):
    return {r.name: r.inputs for r in rec.of_type("cloudscheduler/job:Job")}


def _body(job: dict) -> dict:
    return json.loads(base64.b64decode(job["httpTarget"]["body"]))


def test_the_export_runs_30_minutes_before_the_custom_job(default):
    rec, _ = default
    jobs = _jobs(rec)
    assert (jobs["dataflow-train-export"]["schedule"], jobs["dataflow-train-run"]["schedule"]) == (
        "30 2 * * *",
        "0 3 * * *",
    )
    assert {j["paused"] for j in jobs.values()} == {False}
    query = _body(jobs["dataflow-train-export"])["configuration"]["query"]["query"]
    assert query.startswith("EXPORT DATA OPTIONS (uri = 'gs://dataflow-train-registry/training/latest/part-*")
    select = query.split(" AS ", 1)[1]
    assert "`shop-analytics-dev.dataflow.events`" in select and sqlglot.parse_one(select, read="bigquery")
    for job in jobs.values():
        assert job["httpTarget"]["oauthToken"]["serviceAccountEmail"].startswith("dataflow-train-scheduler@")
    paused, _ = build(model={"retrain": None})
    assert {j["paused"] for j in _jobs(paused).values()} == {True}


def test_the_custom_job_is_what_vertex_ai_takes(default):
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    rec, _ = default
    run = _jobs(rec)["dataflow-train-run"]
    assert run["httpTarget"]["uri"].endswith("/locations/europe-west1/customJobs")
    body = _body(run)
    job = json_format.ParseDict(body, aiplatform_v1.CustomJob.pb()())  # unknown fields raise
    assert job.job_spec.service_account.startswith("dataflow-train-job@")
    (pool,) = job.job_spec.worker_pool_specs
    args = list(pool.container_spec.args)
    assert args[args.index("--registry") + 1] == "gs://dataflow-train-registry/models/"
    assert args[args.index("--production") + 1] == "/gcs/dataflow-train-registry/models/production"
    env = {e.name: e.value for e in pool.container_spec.env}
    platform, target, canary, bake = target_from_env(env)
    assert (platform, canary, bake) == ("vertex", 10, 600)
    assert target.service_account.startswith("dataflow-ml-server@")
    assert env["WAREHOUSE"] == "bigquery:shop-analytics-dev.dataflow"


def test_the_job_uses_its_bucket_pulls_its_image_and_deploys_nothing_else(default):
    rec, _ = default
    roles = {(r.type.rsplit(":", 1)[1], r.inputs["role"]) for r in members_of(rec, "dataflow-train-job@")}
    assert roles == {
        ("BucketIAMMember", "roles/storage.objectAdmin"),
        ("RepositoryIamMember", "roles/artifactregistry.reader"),
        ("IAMMember", "projects/shop-analytics-dev/roles/dataflow_train_deployer"),
        ("IAMMember", "roles/iam.serviceAccountUser"),
        ("IamMember", "roles/bigquery.dataEditor"),  # model_versions_changes only
    }
    (table,) = [r.inputs["tableId"] for r in members_of(rec, "dataflow-train-job@") if "tableId" in r.inputs]
    assert table == "model_versions_changes"
    deployer = rec.one("projects/iAMCustomRole:IAMCustomRole", "dataflow-train-deployer").inputs
    assert all(p.startswith(("aiplatform.endpoints.", "aiplatform.models.", "aiplatform.operations."))
               for p in deployer["permissions"])  # fmt: skip
    acts_as = rec.one("serviceaccount/iAMMember:IAMMember", "dataflow-train-job-acts-as-server").inputs
    assert "dataflow-ml-server" in acts_as["serviceAccountId"]


def test_the_scheduler_exports_and_launches_as_the_job_only(default):
    rec, _ = default
    roles = {r.inputs["role"] for r in members_of(rec, "dataflow-train-scheduler@")}
    assert roles == {
        "roles/bigquery.jobUser",
        "roles/bigquery.dataViewer",  # events only
        "roles/storage.objectAdmin",
        "projects/shop-analytics-dev/roles/dataflow_train_launcher",
        "roles/iam.serviceAccountUser",
    }
    launcher = rec.one("projects/iAMCustomRole:IAMCustomRole", "dataflow-train-launcher").inputs
    assert launcher["permissions"] == ["aiplatform.customJobs.create"]
