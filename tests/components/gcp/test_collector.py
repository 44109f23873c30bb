"""The collector on GCP: Cloud Run in front of the Ingest topic, allowed to
publish to it and read its write keys, nothing else."""

from __future__ import annotations

from components.gcp import GcpChain
from components.spec import load_spec
from tests.components.configs import GCP, gcp_config
from tests.components.conftest import run_program


def build(**sections):
    return run_program(lambda: GcpChain("dataflow", load_spec(gcp_config(**sections))))


def test_the_collector_publishes_to_the_ingest_topic_only():
    rec, _ = build()
    service = rec.one("cloudrunv2/service:Service", "dataflow-collector-service")
    container = service.inputs["template"]["containers"][0]
    assert container["commands"] == ["python", "-m", "pipeline_code.collector"]
    envs = {e["name"]: e for e in container["envs"]}
    topic = rec.one("pubsub/topic:Topic", "dataflow-ingest-events")
    assert envs["COLLECTOR_SINK"]["value"] == f"pubsub:{topic.id}"
    assert envs["COLLECTOR_SPILL_MB"]["value"] == "0"  # no spill on Cloud Run's memory disk
    secret = envs["DATAFLOW_WRITE_KEYS"]["valueSource"]["secretKeyRef"]
    assert secret == {"secret": "dataflow-collector-write-keys", "version": "latest"}
    sa = "serviceAccount:dataflow-collector@" + GCP["project"] + ".iam.gserviceaccount.com"
    grants = [r for r in rec.resources if r.inputs.get("member") == sa]
    assert sorted((r.type.rsplit(":", 1)[-1], r.inputs["role"]) for r in grants) == [
        ("RepositoryIamMember", "roles/artifactregistry.reader"),
        ("SecretIamMember", "roles/secretmanager.secretAccessor"),
        ("TopicIAMMember", "roles/pubsub.publisher"),
    ]
    assert rec.one("pubsub/topicIAMMember:TopicIAMMember", "dataflow-ingest-collector-publishes").inputs[
        "topic"
    ]


def test_the_collector_is_public_and_the_only_public_service():
    rec, _ = build()
    public = {
        r.name for r in rec.resources if r.inputs.get("member") in ("allUsers", "allAuthenticatedUsers")
    }
    assert public == {"dataflow-collector-public"}


def test_the_collector_can_be_left_out():
    rec, _ = build(collector={"enabled": False})
    assert (
        not rec.of_type("secretmanager/secret:Secret") and len(rec.of_type("cloudrunv2/service:Service")) == 2
    )
