"""The whole GCP chain under Pulumi's mocks: every link, the wiring between
them, least privilege, encryption and private defaults, and each option."""

from __future__ import annotations

import pulumi
import pytest

from components.gcp import GcpChain
from components.spec import load_spec
from pipeline_code.tables import TABLES
from pipeline_code.warehouses import bigquery
from tests.components.configs import gcp_config
from tests.components.conftest import run_program
from tests.components.gcp.helpers import KEY, PRIMITIVE_ROLES, PUBLIC, build


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("pubsub/schema:Schema", 1),
        ("pubsub/topic:Topic", 2),
        (
            "pubsub/subscription:Subscription",
            4,
        ),  # the pipeline's, dead letters, the fast path's push, archive
        ("bigquery/dataset:Dataset", 1),
        # tables, their views, and _dataflow_batches
        ("bigquery/table:Table", len(TABLES) + sum(bigquery.has_view(t) for t in TABLES.values()) + 1),
        ("storage/bucket:Bucket", 3),  # staging, archive, model registry
        ("storage/bucketObject:BucketObject", 1),
        ("dataflow/flexTemplateJob:FlexTemplateJob", 1),
        ("vertex/aiEndpoint:AiEndpoint", 1),
        ("dynamic:Resource", 1),
        ("cloudrunv2/service:Service", 2),  # the API and the fast path
        ("firestore/database:Database", 1),
        ("firestore/field:Field", 1),
        ("monitoring/alertPolicy:AlertPolicy", 12),  # 9, and the slow path's 3 log-match alerts
        ("monitoring/dashboard:Dashboard", 1),
        # + the fast path's and its push identity, the training job's and its scheduler's
        ("serviceaccount/account:Account", 8),
        ("cloudscheduler/job:Job", 2),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_components_parent_their_children(default):
    rec, _ = default
    types = {r.type for r in rec.resources}
    assert {
        f"data-flow:gcp:{k}"
        for k in ("Chain", "Ingest", "Warehouse", "Processing", "Model", "Serve", "Monitoring")
    } <= types


def test_no_primitive_roles_and_nothing_public_by_default(default):
    rec, _ = default
    for r in rec.iam():
        assert r.inputs["role"] not in PRIMITIVE_ROLES, r.name
        assert r.inputs["member"] not in PUBLIC, r.name
    for bucket in (b.inputs for b in rec.of_type("storage/bucket:Bucket")):
        assert bucket["publicAccessPrevention"] == "enforced" and bucket["uniformBucketLevelAccess"] is True
    assert "network" not in rec.one("vertex/aiEndpoint:AiEndpoint").inputs


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
                "user_state_location",
                "archive_location",
                "model_registry_location",
            }
            assert named["ingest_endpoint"] == "projects/shop-analytics-dev/topics/dataflow-ingest-events"
            assert named["api_url"].startswith("https://")
            assert named["user_state_location"] == (
                "firestore:projects/shop-analytics-dev/databases/dataflow-state/user_state"
            )
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
    assert all(
        b.inputs["encryption"] == {"defaultKmsKeyName": KEY} for b in rec.of_type("storage/bucket:Bucket")
    )
    assert rec.one("FlexTemplateJob").inputs["kmsKeyName"] == KEY
    assert rec.one("AiEndpoint").inputs["encryptionSpec"] == {"kmsKeyName": KEY}


def test_deletion_protection_can_be_turned_off_for_throwaway_stacks():
    rec, _ = build(warehouse={"deletion_protection": False, "partition_retention_days": 30})
    tables = {r.inputs["tableId"]: r.inputs for r in rec.of_type("bigquery/table:Table")}
    assert all(t["deletionProtection"] is False for t in tables.values())
    assert tables["events"]["timePartitioning"]["expirationMs"] == 30 * 86_400_000


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
    template = rec.one("cloudrunv2/service:Service", "dataflow-serve-api").inputs["template"]
    assert template["scaling"]["maxInstanceCount"] == 50
    assert template["containers"][0]["resources"]["limits"]["memory"] == "1024Mi"


def test_a_chain_for_another_cloud_is_refused():
    from components.spec import SpecError
    from tests.components.configs import aws_config

    spec = load_spec(aws_config())
    with pytest.raises(SpecError, match=r"GcpChain needs data-flow:cloud 'gcp'.*'aws'"):
        GcpChain("dataflow", spec)
