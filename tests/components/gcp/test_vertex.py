"""The Vertex deployment provider's pure parts: check, diff and the REST bodies."""

from __future__ import annotations

import pytest

from components.gcp.vertex import VertexDeploymentProvider, deploy_request, mutate_request, upload_request

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


def parse_as(body: dict, message_type) -> object:
    """Parse a REST body into the API's own protobuf type (unknown fields fail)."""
    from google.protobuf import json_format

    message = message_type()
    json_format.ParseDict(body, message._pb if hasattr(message, "_pb") else message)
    return message


def test_the_rest_bodies_are_the_vertex_api_messages():
    pytest.importorskip("google.cloud.aiplatform_v1", reason="the dataflow extra brings the API types")
    from google.cloud.aiplatform_v1 import types

    key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    upload = parse_as(upload_request({**OLD, "kms_key_name": key}), types.UploadModelRequest)
    assert upload.model.container_spec.health_route == "/ping"
    assert upload.model.container_spec.ports[0].container_port == 8080
    assert upload.model.encryption_spec.kms_key_name.endswith("/cryptoKeys/k")
    deploy = parse_as(deploy_request(OLD, OLD["model_name"]), types.DeployModelRequest)
    assert deploy.deployed_model.dedicated_resources.max_replica_count == 2
    assert (
        deploy.traffic_split["0"] == 100 and deploy.deployed_model.service_account == OLD["service_account"]
    )
    mutate = parse_as(mutate_request("42", {**OLD, "max_replicas": 5}), types.MutateDeployedModelRequest)
    assert mutate.deployed_model.dedicated_resources.max_replica_count == 5
    assert list(mutate.update_mask.paths) == [
        "dedicated_resources.min_replica_count",
        "dedicated_resources.max_replica_count",
    ]
    with pytest.raises(Exception, match="deployedModell"):
        parse_as({"deployedModell": {}}, types.DeployModelRequest)


def test_an_update_mutates_the_model_that_serves_now_not_the_one_first_deployed():
    from components.gcp.vertex import serving_model

    # After a training rollout: the first deployment (111) is gone, 222 serves.
    endpoint = {"deployedModels": [{"id": "222"}], "trafficSplit": {"222": 100}}
    assert serving_model(endpoint, "111") == "222"
    # Mid-canary: the larger share is the one that serves.
    canary = {"deployedModels": [{"id": "222"}, {"id": "333"}], "trafficSplit": {"222": 90, "333": 10}}
    assert serving_model(canary, "111") == "222"
    # A split naming a model no longer deployed, or none at all: what Pulumi knows.
    assert serving_model({"deployedModels": [], "trafficSplit": {"222": 100}}, "111") == "111"
    assert serving_model({}, "111") == "111"
