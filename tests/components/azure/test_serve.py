"""The serve link (the API) on Azure."""

from __future__ import annotations

from tests.components.azure.helpers import assignments


def test_the_api_may_score_that_endpoint_only(default):
    rec, _ = default
    scorer = rec.one("authorization:RoleDefinition", "dataflow-ml-scorer").inputs
    assert scorer["permissions"] == [
        {
            "actions": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"],
            "notActions": [],
            "dataActions": [],
            "notDataActions": [],
        }
    ]
    endpoint_id = scorer["assignableScopes"][0]
    assert endpoint_id.endswith("/OnlineEndpoint/dataflow-ml-endpoint")
    api = [a for a in assignments(rec) if a["principalId"] == "principal-dataflow-serve-app"]
    assert {a["scope"] for a in api if "OnlineEndpoint" in a["scope"]} == {endpoint_id}
    app = rec.one("web:WebApp", "dataflow-serve-app").inputs
    settings = {s["name"]: s["value"] for s in app["siteConfig"]["appSettings"]}
    # No deployment pinned: the API follows the endpoint's traffic, which the rollouts move.
    assert (
        settings["MODEL_ENDPOINT"]
        == "azureml:https://dataflow-ml-endpoint.westeurope.inference.ml.azure.com/score"
    )
