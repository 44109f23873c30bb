"""The Vertex deployment provider's pure parts: check and diff."""

from __future__ import annotations

from components.gcp.vertex import VertexDeploymentProvider

OLD = {
    "project": "p",
    "location": "europe-west1",
    "endpoint_id": "projects/p/locations/europe-west1/endpoints/123",
    "image_uri": "europe-west1-docker.pkg.dev/p/r/model-server:1",
    "artifact_uri": "gs://m/recommender/1",
    "machine_type": "n2-standard-2",
    "min_replicas": 1,
    "max_replicas": 2,
    "display_name": "ml",
    "labels": {"app": "data-flow"},
    "service_account": "server@p.iam.gserviceaccount.com",
    "deployed_model_id": "42",
    "model_name": "projects/p/locations/europe-west1/models/9",
}
provider = VertexDeploymentProvider()


def test_no_change_no_diff():
    d = provider.diff("id", OLD, dict(OLD))
    assert not d.changes and not d.replaces


def test_new_model_files_or_image_replace_before_the_old_is_removed():
    for key, value in (("artifact_uri", "gs://m/recommender/2"), ("image_uri", OLD["image_uri"][:-1] + "2")):
        d = provider.diff("id", OLD, {**OLD, key: value})
        assert d.changes and d.replaces == [key] and d.delete_before_replace is False


def test_replica_bounds_update_in_place():
    d = provider.diff("id", OLD, {**OLD, "max_replicas": 5})
    assert d.changes and d.replaces == []


def test_check_names_each_bad_input():
    bad = {**OLD, "artifact_uri": "/local/model", "min_replicas": 3, "max_replicas": 1, "machine_type": ""}
    failures = {f.property: f.reason for f in provider.check({}, bad).failures}
    assert "'/local/model'" in failures["artifact_uri"]
    assert "3, 1" in failures["min_replicas"]
    assert "machine_type" in failures
    assert not provider.check({}, OLD).failures
