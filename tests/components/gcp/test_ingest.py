"""The ingest link on GCP."""

from __future__ import annotations

from tests.components.conftest import PROJECT_NUMBER
from tests.components.gcp.helpers import build


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
        (r.type.rsplit(":", 1)[1], r.inputs["role"])
        for r in rec.iam()
        if r.inputs["member"] == agent and r.parent.startswith("data-flow:gcp:Ingest")
    }
    assert agent_grants == {
        ("TopicIAMMember", "roles/pubsub.publisher"),
        ("SubscriptionIAMMember", "roles/pubsub.subscriber"),
    }


def test_schema_enforcement_can_be_turned_off():
    rec, _ = build(stream={"enforce_schema": False})
    assert not rec.of_type("pubsub/schema:Schema")
    assert all("schemaSettings" not in r.inputs for r in rec.of_type("topic:Topic"))
