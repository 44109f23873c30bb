"""The model link on GCP."""

from __future__ import annotations

from tests.components.configs import gcp_config
from tests.components.conftest import PROJECT_NUMBER
from tests.components.gcp.helpers import build


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


def test_private_endpoint_uses_the_network():
    net = f"projects/{PROJECT_NUMBER}/global/networks/shop"
    rec, _ = build(model={"private": True}, gcp={**gcp_config()["gcp"], "network": net})
    assert rec.one("AiEndpoint").inputs["network"] == net
