"""The raw archive on GCP: a Cloud Storage subscription writing Avro with
metadata into a private bucket with the spec's lifecycle."""

from __future__ import annotations

from tests.components.conftest import PROJECT_NUMBER
from tests.components.gcp.helpers import build


def test_the_subscription_writes_avro_with_metadata_by_arrival_hour(default):
    rec, _ = default
    sub = rec.one("pubsub/subscription:Subscription", "dataflow-archive-subscription").inputs
    topic = rec.one("pubsub/topic:Topic", "dataflow-ingest-events")
    assert sub["topic"] == topic.id
    config = sub["cloudStorageConfig"]
    assert config["avroConfig"] == {"writeMetadata": True}
    assert (config["filenamePrefix"], config["filenameDatetimeFormat"]) == ("raw/", "YYYY/MM/DD/hh/")
    assert (config["maxDuration"], config["maxBytes"]) == ("300s", 64 * 1024 * 1024)
    assert sub["deadLetterPolicy"]["maxDeliveryAttempts"] == 10 and sub["retryPolicy"]


def test_the_bucket_is_private_and_keeps_what_the_spec_says(default):
    rec, _ = default
    bucket = rec.one("storage/bucket:Bucket", "dataflow-archive-raw").inputs
    assert bucket["publicAccessPrevention"] == "enforced" and bucket["uniformBucketLevelAccess"] is True
    ages = {r["action"]["type"]: r["condition"]["age"] for r in bucket["lifecycleRules"]}
    assert ages == {"SetStorageClass": 30, "Delete": 400}
    forever, _ = build(archive={"retention_days": None, "flush_seconds": 60, "flush_mb": 8})
    rules = forever.one("storage/bucket:Bucket", "dataflow-archive-raw").inputs["lifecycleRules"]
    assert [r["action"]["type"] for r in rules] == ["SetStorageClass"]
    config = forever.one("pubsub/subscription:Subscription", "dataflow-archive-subscription").inputs[
        "cloudStorageConfig"
    ]
    assert (config["maxDuration"], config["maxBytes"]) == ("60s", 8 * 1024 * 1024)


def test_only_the_pubsub_agent_writes_the_bucket(default):
    rec, _ = default
    on_bucket = {
        (r.inputs["member"], r.inputs["role"])
        for r in rec.iam()
        if r.type.endswith("BucketIAMMember") and r.inputs["bucket"] == "dataflow-archive-raw"
    }
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    replay = "serviceAccount:dataflow-process-replay@shop-analytics-dev.iam.gserviceaccount.com"
    # The agent writes; the replay job (through grant_read) only reads.
    assert on_bucket == {
        (agent, "roles/storage.objectCreator"),
        (agent, "roles/storage.legacyBucketReader"),
        (replay, "roles/storage.objectViewer"),
    }
