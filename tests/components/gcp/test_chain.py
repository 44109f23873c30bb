"""The whole GCP chain under Pulumi's mocks: every link, the wiring between
them, least privilege, encryption and private defaults, and each option."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.gcp import GcpChain
from components.spec import load_spec
from pipeline_code.tables import TABLES
from pipeline_code.warehouses import bigquery
from tests.components.conftest import PROJECT_NUMBER, run_program
from tests.components.test_spec import gcp_config

KEY = "projects/shop-analytics-dev/locations/europe-west1/keyRings/data/cryptoKeys/chain"
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC = {"allUsers", "allAuthenticatedUsers"}


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: GcpChain("dataflow", load_spec(gcp_config(**sections))))


@pytest.fixture(scope="module")
def default():
    return build()


def members_of(rec, email_prefix: str) -> list:
    return [r for r in rec.iam() if str(r.inputs["member"]).startswith(f"serviceAccount:{email_prefix}")]


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("pubsub/schema:Schema", 1),
        ("pubsub/topic:Topic", 2),
        ("pubsub/subscription:Subscription", 2),
        ("bigquery/dataset:Dataset", 1),
        ("bigquery/table:Table", len(TABLES) + sum(bigquery.is_change_log(t) for t in TABLES.values())),
        ("storage/bucket:Bucket", 1),
        ("storage/bucketObject:BucketObject", 1),
        ("dataflow/flexTemplateJob:FlexTemplateJob", 1),
        ("vertex/aiEndpoint:AiEndpoint", 1),
        ("dynamic:Resource", 1),
        ("cloudrunv2/service:Service", 1),
        ("monitoring/alertPolicy:AlertPolicy", 5),
        ("monitoring/dashboard:Dashboard", 1),
        ("serviceaccount/account:Account", 3),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_components_parent_their_children(default):
    rec, _ = default
    types = {r.type for r in rec.resources}
    assert {
        f"data-flow:gcp:{k}"
        for k in ("Chain", "Ingest", "Warehouse", "Processing", "Model", "Serve", "Monitoring")
    } <= types


def test_the_job_reads_the_ingest_subscription_and_writes_the_warehouse(default):
    rec, _ = default
    job = rec.one("FlexTemplateJob")
    sub = rec.one("subscription:Subscription", "dataflow-ingest-pipeline")
    params = job.inputs["parameters"]
    assert params["input_subscription"] == sub.id
    assert params["output_dataset"] == "shop-analytics-dev:dataflow"
    assert all(isinstance(v, str) for v in params.values())
    bucket = rec.one("storage/bucket:Bucket")
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
    physical = {bigquery.physical_name(t) for t in TABLES.values()}
    assert {("IamMember", t, "roles/bigquery.dataEditor") for t in physical} <= granted
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


def test_the_api_calls_only_the_endpoint_the_ml_link_created(default):
    rec, _ = default
    endpoint = rec.one("vertex/aiEndpoint:AiEndpoint")
    service = rec.one("cloudrunv2/service:Service")
    container = service.inputs["template"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env["MODEL_ENDPOINT"] == f"vertex:{endpoint.id}"
    api = service.inputs["template"]["serviceAccount"]
    grants = members_of(rec, api)
    assert {(r.type.rsplit(":", 1)[1], r.inputs["role"]) for r in grants} == {
        ("AiEndpointIamMember", "roles/aiplatform.user"),
        ("RepositoryIamMember", "roles/artifactregistry.reader"),
    }
    predict = next(r for r in grants if r.type.endswith("AiEndpointIamMember"))
    assert predict.inputs["endpoint"] == endpoint.inputs["name"]


def test_the_model_is_deployed_to_the_endpoint(default):
    rec, _ = default
    endpoint = rec.one("vertex/aiEndpoint:AiEndpoint")
    deployment = rec.one("dynamic:Resource")
    assert deployment.inputs["endpoint_id"] == endpoint.id
    assert deployment.inputs["artifact_uri"] == "gs://shop-models/recommender/20261124"
    assert deployment.inputs["image_uri"].endswith("/model-server:1.0.0")
    assert (deployment.inputs["min_replicas"], deployment.inputs["max_replicas"]) == (1, 2)
    reads = next(r for r in rec.iam() if r.name == "dataflow-ml-server-reads-model")
    assert (reads.inputs["bucket"], reads.inputs["role"]) == ("shop-models", "roles/storage.objectViewer")


def test_no_primitive_roles_and_nothing_public_by_default(default):
    rec, _ = default
    for r in rec.iam():
        assert r.inputs["role"] not in PRIMITIVE_ROLES, r.name
        assert r.inputs["member"] not in PUBLIC, r.name
    bucket = rec.one("storage/bucket:Bucket").inputs
    assert bucket["publicAccessPrevention"] == "enforced" and bucket["uniformBucketLevelAccess"] is True
    assert "network" not in rec.one("vertex/aiEndpoint:AiEndpoint").inputs


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


def test_ingest_has_schema_retention_retry_and_dead_letters(default):
    rec, _ = default
    topic = next(r for r in rec.of_type("topic:Topic") if r.name == "dataflow-ingest-events")
    dead = next(r for r in rec.of_type("topic:Topic") if r.name == "dataflow-ingest-dead-letters")
    sub = rec.one("subscription:Subscription", "dataflow-ingest-pipeline").inputs
    schema = rec.one("pubsub/schema:Schema").inputs
    assert schema["type"] == "PROTOCOL_BUFFER" and "message Event" in schema["definition"]
    assert topic.inputs["schemaSettings"]["encoding"] == "JSON"
    assert topic.inputs["messageRetentionDuration"] == "604800s"
    assert sub["deadLetterPolicy"] == {"deadLetterTopic": dead.id, "maxDeliveryAttempts": 10}
    assert sub["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert sub["expirationPolicy"] == {"ttl": ""}
    dlq_sub = rec.one("subscription:Subscription", "dataflow-ingest-dead-letters").inputs
    assert dlq_sub["topic"] == dead.id
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    agent_grants = {
        (r.type.rsplit(":", 1)[1], r.inputs["role"]) for r in rec.iam() if r.inputs["member"] == agent
    }
    assert agent_grants == {
        ("TopicIAMMember", "roles/pubsub.publisher"),
        ("SubscriptionIAMMember", "roles/pubsub.subscriber"),
    }


def test_warehouse_tables_match_the_logical_tables(default):
    rec, _ = default
    tables = {r.inputs["tableId"]: r.inputs for r in rec.of_type("bigquery/table:Table")}
    for t in TABLES.values():
        physical = tables[bigquery.physical_name(t)]
        assert json.loads(physical["schema"]) == bigquery.schema_fields(t)
        assert physical["deletionProtection"] is True
        if t.partition_by:
            assert physical["timePartitioning"]["field"] == t.partition_by
        if bigquery.is_change_log(t):
            assert tables[t.name]["view"]["useLegacySql"] is False
    assert tables["events"]["clusterings"] == ["event_name", "user_key"]
    assert tables["dead_letters"]["timePartitioning"]["expirationMs"] == 400 * 86_400_000
    dataset = rec.one("bigquery/dataset:Dataset").inputs
    assert dataset["deleteContentsOnDestroy"] is False and dataset["location"] == "europe-west1"


def test_alerts_cover_every_link_without_email(default):
    rec, _ = default
    filters = " ".join(
        c["conditionThreshold"]["filter"] for p in rec.of_type("AlertPolicy") for c in p.inputs["conditions"]
    )
    for metric in (
        "subscription/oldest_unacked_message_age",
        "job/user_counter",
        "topic/send_message_operation_count",
        "job/system_lag",
        "job/data_watermark_age",
        "prediction/online/error_count",
        "prediction/online/prediction_latencies",
    ):
        assert metric in filters
    assert not rec.of_type("NotificationChannel")
    dashboard = json.loads(rec.one("Dashboard").inputs["dashboardJson"])
    assert len(dashboard["mosaicLayout"]["tiles"]) == 7


def test_labels_reach_every_labelled_child(default):
    rec, _ = default
    for r in rec.resources:
        if "labels" in r.inputs and r.type.startswith("gcp:") and not r.type.endswith("NotificationChannel"):
            assert r.inputs["labels"]["app"] == "data-flow", r.name


def test_outputs_are_the_cross_cloud_contract():
    checked = []

    def build_and_check():
        chain = GcpChain("dataflow", load_spec(gcp_config()))
        outs = chain.outputs()

        def check(values):
            named = dict(zip(outs, values, strict=True))
            assert set(named) == {
                "ingest_endpoint",
                "dead_letter_location",
                "warehouse_location",
                "processing_job",
                "model_endpoint",
                "api_url",
                "collector_url",
            }
            assert named["ingest_endpoint"] == "projects/shop-analytics-dev/topics/dataflow-ingest-events"
            assert named["api_url"].startswith("https://")
            checked.append(True)

        return pulumi.Output.all(*outs.values()).apply(check)

    run_program(build_and_check)
    assert checked == [True]  # the check ran: an unresolved Output would skip it


# Options: each turns exactly one default.


def test_customer_managed_key_encrypts_every_store():
    rec, _ = build(gcp={**gcp_config()["gcp"], "kms_key_name": KEY})
    assert all(r.inputs["kmsKeyName"] == KEY for r in rec.of_type("topic:Topic"))
    assert rec.one("bigquery/dataset:Dataset").inputs["defaultEncryptionConfiguration"] == {"kmsKeyName": KEY}
    assert all(
        r.inputs["encryptionConfiguration"] == {"kmsKeyName": KEY}
        for r in rec.of_type("bigquery/table:Table")
        if "view" not in r.inputs
    )
    assert rec.one("storage/bucket:Bucket").inputs["encryption"] == {"defaultKmsKeyName": KEY}
    assert rec.one("FlexTemplateJob").inputs["kmsKeyName"] == KEY
    assert rec.one("AiEndpoint").inputs["encryptionSpec"] == {"kmsKeyName": KEY}


def test_public_api_only_by_explicit_config():
    rec, _ = build(serve={"public": True})
    public = [r for r in rec.iam() if r.inputs["member"] in PUBLIC]
    assert [(p.type.rsplit(":", 1)[1], p.inputs["role"]) for p in public] == [
        ("ServiceIamMember", "roles/run.invoker")
    ]


def test_private_endpoint_uses_the_network():
    net = f"projects/{PROJECT_NUMBER}/global/networks/shop"
    rec, _ = build(model={"private": True}, gcp={**gcp_config()["gcp"], "network": net})
    assert rec.one("AiEndpoint").inputs["network"] == net


def test_schema_enforcement_can_be_turned_off():
    rec, _ = build(stream={"enforce_schema": False})
    assert not rec.of_type("pubsub/schema:Schema")
    assert all("schemaSettings" not in r.inputs for r in rec.of_type("topic:Topic"))


def test_deletion_protection_can_be_turned_off_for_throwaway_stacks():
    rec, _ = build(warehouse={"deletion_protection": False, "partition_retention_days": 30})
    tables = {r.inputs["tableId"]: r.inputs for r in rec.of_type("bigquery/table:Table")}
    assert all(t["deletionProtection"] is False for t in tables.values())
    assert tables["events"]["timePartitioning"]["expirationMs"] == 30 * 86_400_000


def test_alert_email_becomes_the_notification_channel():
    rec, _ = build(alerts={"email": "oncall@example.com"})
    channel = rec.one("NotificationChannel")
    assert channel.inputs["labels"] == {"email_address": "oncall@example.com"}
    assert all(p.inputs["notificationChannels"] == [channel.id] for p in rec.of_type("AlertPolicy"))


def test_spec_sizes_reach_the_resources():
    rec, _ = build(
        processing={"min_workers": 2, "max_workers": 20},
        model={"size": "large", "min_replicas": 2, "max_replicas": 4},
        serve={"max_instances": 50, "memory_mb": 1024},
    )
    job = rec.one("FlexTemplateJob").inputs
    assert (job["numWorkers"], job["maxWorkers"]) == (2, 20)
    deployment = rec.one("dynamic:Resource").inputs
    assert (deployment["machine_type"], deployment["min_replicas"], deployment["max_replicas"]) == (
        "n2-standard-8",
        2,
        4,
    )
    template = rec.one("cloudrunv2/service:Service").inputs["template"]
    assert template["scaling"]["maxInstanceCount"] == 50
    assert template["containers"][0]["resources"]["limits"]["memory"] == "1024Mi"


def test_a_chain_for_another_cloud_is_refused():
    from components.spec import SpecError
    from tests.components.test_spec import aws_config

    spec = load_spec(aws_config())
    with pytest.raises(SpecError, match=r"GcpChain needs data-flow:cloud 'gcp'.*'aws'"):
        GcpChain("dataflow", spec)
