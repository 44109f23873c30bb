"""The ML link on Azure."""

from __future__ import annotations


def test_the_endpoints_first_traffic_goes_to_its_deployment_once_and_then_is_the_rollouts():
    from pulumi_azure_native import machinelearningservices as ml

    from components.azure.endpoint_traffic import EndpointTrafficProvider, first_traffic_body
    from tests.pipeline_code.ml.test_rollout import _snake

    got = {
        "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/"
        "onlineEndpoints/e",
        "location": "westeurope",
        "identity": {"type": "SystemAssigned", "principalId": "p"},
        "properties": {"authMode": "AADToken", "publicNetworkAccess": "Disabled", "traffic": {},
                       "scoringUri": "https://e/score", "provisioningState": "Succeeded"},
    }  # fmt: skip
    body = first_traffic_body(got, "primary")
    assert body["properties"]["traffic"] == {"primary": 100} and "scoringUri" not in body["properties"]
    # The body's keys are the ARM schema's, as azure-native's generated input types say.
    ml.OnlineEndpointPropertiesArgs(**_snake(body["properties"]))
    assert body["identity"] == {"type": "SystemAssigned"}
    # After a rollout the endpoint routes elsewhere: nothing is sent.
    moved = {**got, "properties": {**got["properties"], "traffic": {"d-20261130": 100}}}
    assert first_traffic_body(moved, "primary") is None
    provider = EndpointTrafficProvider()
    props = {"endpoint_id": got["id"], "deployment": "primary"}
    assert provider.check({}, props).failures == []
    bad = provider.check({}, {"endpoint_id": "e", "deployment": ""}).failures
    assert sorted(f.property for f in bad) == ["deployment", "endpoint_id"]
    assert provider.diff("x", props, props).changes is False
    assert provider.diff("x", props, {**props, "deployment": "other"}).replaces == ["deployment"]


def test_the_chain_gives_the_endpoint_its_first_traffic_after_the_deployment(default):
    rec, _ = default
    traffic = rec.one("dynamic:Resource", "dataflow-ml-traffic").inputs
    assert traffic["deployment"] == "primary"
    assert traffic["endpoint_id"].endswith("/OnlineEndpoint/dataflow-ml-endpoint")
