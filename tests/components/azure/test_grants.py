"""Every Azure grant verb assigns one role, on exactly its resource."""

from __future__ import annotations

import re

import pytest

from components.azure import AzureChain
from components.azure.security import ROLES
from components.spec import load_spec
from tests.components.configs import AZURE, azure_config
from tests.components.conftest import run_program


def with_grants():
    def program():
        chain = AzureChain("dataflow", load_spec(azure_config()))
        chain.ingest.grant_publish("checkout", "principal-checkout")
        chain.ingest.grant_consume("analytics", "principal-analytics")
        chain.model.grant_invoke("batch", "principal-batch")
        chain.ingest.grant_read_dead_letters("replay", "principal-replay")
        chain.serve.grant_invoke("storefront", "principal-storefront")
        return chain

    return run_program(program)


def test_grant_publish_and_consume_are_the_data_roles_on_the_hub():
    rec, _ = with_grants()
    send = rec.one("authorization:RoleAssignment", "dataflow-ingest-send-checkout").inputs
    receive = rec.one("authorization:RoleAssignment", "dataflow-ingest-receive-analytics").inputs
    hub = send["scope"]
    assert hub.endswith("/EventHub/events") and receive["scope"] == hub
    assert send["roleDefinitionId"].endswith(ROLES["Azure Event Hubs Data Sender"])
    assert receive["roleDefinitionId"].endswith(ROLES["Azure Event Hubs Data Receiver"])
    assert send["principalId"] == "principal-checkout"


def test_model_grant_invoke_is_the_one_action_role_on_the_endpoint():
    rec, _ = with_grants()
    score = rec.one("authorization:RoleAssignment", "dataflow-ml-score-batch").inputs
    scorer = rec.one("authorization:RoleDefinition", "dataflow-ml-scorer")
    assert score["scope"].endswith("/OnlineEndpoint/dataflow-ml-endpoint")
    assert score["roleDefinitionId"] == scorer.id
    assert scorer.inputs["assignableScopes"] == [score["scope"]]


@pytest.mark.slow
def test_role_assignment_names_are_stable_guids():
    first, _ = with_grants()
    second, _ = with_grants()

    def names(rec):
        return {r.name: r.inputs["roleAssignmentName"] for r in rec.of_type("authorization:RoleAssignment")}

    assert names(first) == names(second) and len(set(names(first).values())) == len(names(first))


def test_grant_read_dead_letters_reads_the_dead_letter_container_only():
    rec, _ = with_grants()
    read = rec.one("authorization:RoleAssignment", "dataflow-ingest-read-dead-letters-replay").inputs
    container = rec.one("storage:BlobContainer", "dataflow-lake-dead-letters")
    assert read["scope"] == container.id
    assert read["roleDefinitionId"].endswith(ROLES["Storage Blob Data Reader"])
    assert read["principalId"] == "principal-replay"


def test_serve_grant_invoke_assigns_the_api_apps_role_to_the_caller():
    rec, _ = with_grants()
    kind = "azuread:index/appRoleAssignment:AppRoleAssignment"
    assignment = rec.one(kind, "dataflow-serve-invoke-storefront")
    client_id = load_spec(azure_config()).azure.api_client_id
    # The API's service principal, looked up by the app id App Service auth checks tokens for.
    assert assignment.inputs == {
        "appRoleId": "00000000-0000-0000-0000-000000000000",
        "principalObjectId": "principal-storefront",
        "resourceObjectId": f"sp-{client_id}",
    }
    parent, _protect = rec.options[(kind, assignment.name)]
    assert parent == "data-flow:azure:Serve dataflow-serve"


def test_a_public_api_has_no_callers_to_grant():
    def program():
        config = azure_config(serve={"public": True}, azure={**AZURE, "api_client_id": None})
        chain = AzureChain("dataflow", load_spec(config))
        chain.serve.grant_invoke("storefront", "principal-storefront")

    with pytest.raises(Exception, match=re.escape("grant_invoke('storefront') needs azure.api_client_id")):
        run_program(program)
