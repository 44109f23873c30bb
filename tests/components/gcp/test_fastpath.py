"""The fast path on GCP: the Firestore user-state database with its TTL, the
private Cloud Run service behind a push subscription on the chain's topic,
and exactly its grants (the service writes, the API reads, conditioned on
that one database; only the push identity invokes the service)."""

from __future__ import annotations

from tests.components.conftest import PROJECT_NUMBER
from tests.components.gcp.helpers import KEY, PUBLIC, build, gcp_config

DATABASE = "projects/shop-analytics-dev/databases/dataflow-state"


def test_the_store_is_a_protected_database_whose_states_expire(default):
    rec, _ = default
    db = rec.one("firestore/database:Database").inputs
    assert (db["type"], db["locationId"], db["name"]) == (
        "FIRESTORE_NATIVE",
        "europe-west1",
        "dataflow-state",
    )
    assert db["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED" and "cmekConfig" not in db
    ttl = rec.one("firestore/field:Field").inputs
    assert (ttl["collection"], ttl["field"], ttl["ttlConfig"]) == ("user_state", "expires_at", {})
    assert ttl["database"] == "dataflow-state"


def test_a_customer_managed_key_encrypts_the_store():
    rec, _ = build(gcp={**gcp_config()["gcp"], "kms_key_name": KEY})
    assert rec.one("firestore/database:Database").inputs["cmekConfig"] == {"kmsKeyName": KEY}


def test_the_service_is_private_and_only_the_push_identity_invokes_it(default):
    rec, _ = default
    service = rec.one("cloudrunv2/service:Service", "dataflow-fast-fresh").inputs
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    container = service["template"]["containers"][0]
    assert container["commands"] == ["python", "-m", "pipeline_code.fastpath"]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env == {"USER_STATE": f"firestore:{DATABASE}/user_state", "USER_STATE_TTL_DAYS": "30"}
    invokers = [r for r in rec.of_type("cloudrunv2/serviceIamMember:ServiceIamMember") if "fast" in r.name]
    assert [r.inputs["member"] for r in invokers] == [
        "serviceAccount:dataflow-fast-push@shop-analytics-dev.iam.gserviceaccount.com"
    ]
    assert not [r for r in rec.iam() if r.inputs["member"] in PUBLIC]


def test_pushes_are_signed_retried_and_dead_lettered_to_the_chains_topic(default):
    rec, _ = default
    sub = rec.one("pubsub/subscription:Subscription", "dataflow-fast-push").inputs
    topic = rec.one("pubsub/topic:Topic", "dataflow-ingest-events")
    dead = rec.one("pubsub/topic:Topic", "dataflow-ingest-dead-letters")
    assert sub["topic"] == topic.id
    service = rec.one("cloudrunv2/service:Service", "dataflow-fast-fresh")
    push = sub["pushConfig"]
    assert push["pushEndpoint"] == push["oidcToken"]["audience"]
    assert (
        push["oidcToken"]["serviceAccountEmail"]
        == "dataflow-fast-push@shop-analytics-dev.iam.gserviceaccount.com"
    )
    assert service is not None
    assert sub["deadLetterPolicy"] == {"deadLetterTopic": dead.id, "maxDeliveryAttempts": 10}
    assert sub["retryPolicy"] == {"minimumBackoff": "1s", "maximumBackoff": "60s"}
    assert sub["messageRetentionDuration"] == "3600s" and sub["expirationPolicy"] == {"ttl": ""}
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    fast_agent = {
        (r.type.rsplit(":", 1)[1], r.inputs["role"])
        for r in rec.iam()
        if r.inputs["member"] == agent and r.parent.startswith("data-flow:gcp:FastPath")
    }
    assert fast_agent == {
        ("SubscriptionIAMMember", "roles/pubsub.subscriber"),
        ("IAMMember", "roles/iam.serviceAccountTokenCreator"),
    }


def test_only_the_service_writes_and_only_the_api_reads_the_database(default):
    rec, _ = default
    firestore = {
        (r.inputs["member"].split("@")[0], r.inputs["role"])
        for r in rec.iam()
        if r.inputs["role"].startswith("roles/datastore.")
    }
    assert firestore == {
        ("serviceAccount:dataflow-fast-fresh", "roles/datastore.user"),
        ("serviceAccount:dataflow-serve-api", "roles/datastore.viewer"),
    }
    for r in rec.iam():
        if r.inputs["role"].startswith("roles/datastore."):
            assert r.inputs["condition"]["expression"] == f'resource.name == "{DATABASE}"'
