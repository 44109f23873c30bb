"""Grants as verbs: each creates one member binding, on that resource only."""

from __future__ import annotations

from components.gcp import GcpChain
from components.gcp.model import bucket_of, endpoint_id
from components.gcp.processing import image_repository
from components.spec import load_spec
from tests.components.configs import gcp_config
from tests.components.conftest import run_program

ANALYST = "group:analysts@example.com"


def grants_for(member: str, use):
    def build():
        chain = GcpChain("dataflow", load_spec(gcp_config()))
        use(chain)

    rec, _ = run_program(build)
    return [(r.type.rsplit(":", 1)[1], r.inputs) for r in rec.iam() if r.inputs["member"] == member]


def test_grant_publish_is_publisher_on_the_topic_only():
    [(kind, inputs)] = grants_for(ANALYST, lambda c: c.ingest.grant_publish("collector", ANALYST))
    assert (kind, inputs["topic"], inputs["role"]) == (
        "TopicIAMMember",
        "dataflow-ingest-events",
        "roles/pubsub.publisher",
    )


def test_grant_read_dead_letters_is_subscriber_on_the_dead_letter_subscription():
    [(kind, inputs)] = grants_for(ANALYST, lambda c: c.ingest.grant_read_dead_letters("oncall", ANALYST))
    assert (kind, inputs["subscription"], inputs["role"]) == (
        "SubscriptionIAMMember",
        "dataflow-ingest-dead-letters",
        "roles/pubsub.subscriber",
    )


def test_table_grant_write_and_read_are_scoped_to_the_table():
    found = grants_for(
        ANALYST,
        lambda c: (
            c.warehouse.tables["events"].grant_write("loader", ANALYST),
            c.warehouse.views["sessions"].grant_read("bi", ANALYST),
        ),
    )
    assert sorted((i["tableId"], i["role"]) for _, i in found) == [
        ("events", "roles/bigquery.dataEditor"),
        ("sessions", "roles/bigquery.dataViewer"),
    ]


def test_warehouse_grant_read_covers_tables_and_views_but_not_the_dataset():
    found = grants_for(ANALYST, lambda c: c.warehouse.grant_read("bi", ANALYST))
    assert all(i["tableId"] and i["role"] == "roles/bigquery.dataViewer" for _, i in found)
    assert {"events", "sessions", "sessions_changes", "user_features"} <= {i["tableId"] for _, i in found}


def test_grant_predict_is_on_the_one_endpoint():
    [(kind, inputs)] = grants_for(ANALYST, lambda c: c.model.grant_invoke("notebook", ANALYST))
    assert kind == "AiEndpointIamMember" and inputs["endpoint"] == endpoint_id(
        "shop-analytics-dev", "dataflow-ml"
    )


def test_grant_invoke_is_run_invoker_on_the_api():
    [(kind, inputs)] = grants_for(ANALYST, lambda c: c.serve.grant_invoke("web", ANALYST))
    assert (kind, inputs["role"], inputs["name"]) == (
        "ServiceIamMember",
        "roles/run.invoker",
        "dataflow-serve-api",
    )


def test_endpoint_ids_are_numeric_stable_and_distinct():
    a, b = endpoint_id("p", "x-ml"), endpoint_id("p", "y-ml")
    assert a == endpoint_id("p", "x-ml") and a != b
    assert a.isdigit() and len(a) == 10 and a[0] != "0"


def test_helpers_name_bad_values():
    import pytest

    with pytest.raises(ValueError, match=r"'docker\.io/x'"):
        image_repository("docker.io/x")
    with pytest.raises(ValueError, match=r"'s3://b/m'"):
        bucket_of("s3://b/m")
    assert image_repository("europe-west1-docker.pkg.dev/p/r/i:1") == {
        "location": "europe-west1",
        "project": "p",
        "repository": "r",
    }
