"""The serve link (the API) on GCP."""

from __future__ import annotations

from tests.components.gcp.helpers import PUBLIC, build, members_of


def test_the_api_calls_only_the_endpoint_the_ml_link_created(default):
    rec, _ = default
    endpoint = rec.one("vertex/aiEndpoint:AiEndpoint")
    service = rec.one("cloudrunv2/service:Service", "dataflow-serve-api")
    container = service.inputs["template"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env["MODEL_ENDPOINT"] == f"vertex:{endpoint.id}"
    api = service.inputs["template"]["serviceAccount"]
    grants = members_of(rec, api)
    assert {(r.type.rsplit(":", 1)[1], r.inputs["role"]) for r in grants} == {
        ("AiEndpointIamMember", "roles/aiplatform.user"),
        ("RepositoryIamMember", "roles/artifactregistry.reader"),
        ("IAMMember", "roles/datastore.viewer"),
    }
    predict = next(r for r in grants if r.type.endswith("AiEndpointIamMember"))
    assert predict.inputs["endpoint"] == endpoint.inputs["name"]


def test_public_api_only_by_explicit_config():
    rec, _ = build(serve={"public": True})
    public = [r for r in rec.iam() if r.inputs["member"] in PUBLIC]
    assert [(p.type.rsplit(":", 1)[1], p.inputs["role"]) for p in public] == [
        ("ServiceIamMember", "roles/run.invoker")
    ]
