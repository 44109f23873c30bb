"""The whole Azure chain under Pulumi's mocks: every link, the wiring between
them, least privilege, private and encrypted defaults, and each option."""

from __future__ import annotations

import pulumi
import pytest

from components.azure import AzureChain
from components.azure.security import BROAD_ROLES
from components.gcp import GcpChain
from components.spec import SpecError, load_spec
from tests.components.azure.helpers import OPTIONS, assignments, build, role, snake_keys
from tests.components.configs import AZURE, gcp_config
from tests.components.conftest import resolved, run_program


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("eventhub:Namespace", 1),
        ("eventhub:EventHub", 1),
        ("eventhub:ConsumerGroup", 2),  # the pipeline's and the fast path's
        ("storage:StorageAccount", 4),  # the lake, ML's workspace storage, the Functions host, user state
        ("storage:Table", 1),
        ("synapse:Workspace", 1),
        ("synapse:SqlPool", 1),
        ("synapse:BigDataPool", 1),
        ("datafactory:Factory", 2),  # processing's and the training export's
        # the stream, the replay, the training export and the decisions' copy
        ("datafactory:Pipeline", 4),
        ("datafactory:Trigger", 3),
        ("machinelearningservices:Schedule", 1),
        # the two Spark job definitions, the factory's two Synapse roles, the export's warehouse
        # reader, the decisions' model_versions writer and the endpoint's first traffic
        ("dynamic:Resource", 7),
        ("machinelearningservices:Workspace", 1),
        ("machinelearningservices:OnlineEndpoint", 1),
        ("machinelearningservices:OnlineDeployment", 1),
        ("web:WebApp", 2),  # the API and the fast path
        ("monitor:MetricAlert", 10),
        ("storage:ManagementPolicy", 1),
        # the fast path's lag; training failed, missing, refused in a row, its model too old
        ("monitor:ScheduledQueryRule", 5),
        ("monitor:DiagnosticSetting", 7),
        ("monitor:ActionGroup", 1),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_every_role_assignment_is_narrow_and_on_one_resource(default):
    rec, _ = default
    found = assignments(rec)
    assert found and not [a for a in found if a["roleDefinitionId"].rsplit("/", 1)[-1] in BROAD_ROLES]
    for a in found:
        # A resource, never a subscription or a resource group.
        assert a["scope"].count("/providers/") >= 1, a["scope"]
    by_role = {}
    for a in found:
        by_role.setdefault(a["roleDefinitionId"], []).append(a)
    capture = [
        a
        for a in by_role[role("Storage Blob Data Contributor")]
        if a["principalId"] == "principal-dataflow-ingest-namespace"
    ]
    assert len(capture) == 1 and capture[0]["scope"].endswith("/BlobContainer/capture")
    synapse = [a for a in found if a["principalId"] == "principal-dataflow-warehouse-workspace"]
    assert sorted(a["scope"].rsplit("/", 1)[-1] for a in synapse) == [
        "capture",
        "dead-letters",
        "warehouse",
        "work",
    ]
    assert [a["roleDefinitionId"] for a in synapse if a["scope"].endswith("/capture")] == [
        role("Storage Blob Data Reader")
    ]


def test_nothing_is_public_by_default(default):
    rec, _ = default
    ns = rec.one("eventhub:Namespace").inputs
    assert ns["disableLocalAuth"] is True and ns["minimumTlsVersion"] == "1.2" and ns["zoneRedundant"] is True
    assert ns["sku"]["name"] == "Standard"
    for account in rec.of_type("storage:StorageAccount"):
        i = account.inputs
        assert i["allowBlobPublicAccess"] is False and i["allowSharedKeyAccess"] is False
        assert (
            i["minimumTlsVersion"] == "TLS1_2" and i["encryption"]["requireInfrastructureEncryption"] is True
        )
    assert all(c.inputs["publicAccess"] == "None" for c in rec.of_type("storage:BlobContainer"))
    ws = rec.one("synapse:Workspace").inputs
    assert ws["publicNetworkAccess"] == "Disabled" and ws["azureADOnlyAuthentication"] is True
    assert ws["managedVirtualNetworkSettings"]["preventDataExfiltration"] is True
    assert "sqlAdministratorLoginPassword" not in ws
    assert rec.one("machinelearningservices:Workspace").inputs["publicNetworkAccess"] == "Disabled"
    endpoint = rec.one("machinelearningservices:OnlineEndpoint").inputs["properties"]
    assert endpoint == {"authMode": "AADToken", "publicNetworkAccess": "Disabled"}
    assert rec.one("keyvault:Vault").inputs["properties"]["publicNetworkAccess"] == "Disabled"
    assert {f.inputs["publicNetworkAccess"] for f in rec.of_type("datafactory:Factory")} == {"Disabled"}
    app = rec.one("web:WebApp", "dataflow-serve-app").inputs
    assert app["httpsOnly"] is True and app["siteConfig"]["ftpsState"] == "Disabled"
    assert app["virtualNetworkSubnetId"] == AZURE["function_subnet_id"]
    auth = rec.one("web:WebAppAuthSettingsV2").inputs
    assert auth["globalValidation"] == {
        "requireAuthentication": True,
        "unauthenticatedClientAction": "Return401",
    }
    assert auth["identityProviders"]["azureActiveDirectory"]["validation"]["allowedAudiences"] == [
        f"api://{AZURE['api_client_id']}"
    ]
    groups = sorted(
        g
        for pe in rec.of_type("network:PrivateEndpoint")
        for c in pe.inputs["privateLinkServiceConnections"]
        for g in c["groupIds"]
    )
    assert groups == ["Dev", "Sql", "amlworkspace", "table"]


def test_outputs_have_the_same_names_as_gcps(default):
    _, chain = default
    values = resolved(pulumi.Output.all(**chain.outputs()))
    assert values["warehouse_location"] == "dataflow-warehouse-workspace.sql.azuresynapse.net/dataflow"
    assert values["dead_letter_location"].startswith("abfss://dead-letters@")
    assert values["api_url"] == "https://dataflow-serve-app.azurewebsites.net/recommendations/"
    _, gcp_chain = run_program(lambda: GcpChain("dataflow", load_spec(gcp_config())))
    assert set(chain.outputs()) == set(gcp_chain.outputs())


@pytest.mark.slow
@pytest.mark.parametrize(("sections", "check"), OPTIONS)
def test_each_option_changes_what_it_says(sections, check):
    rec, _ = build(**sections)
    assert check(rec)


def test_defaults_differ_from_each_option(default):
    rec, _ = default
    assert rec.one("web:WebAppAuthSettingsV2")
    assert rec.one("eventhub:EventHub").inputs["partitionCount"] == 4
    assert (
        rec.one("storage:StorageAccount", "dataflow-lake").inputs["encryption"]["keySource"]
        == "Microsoft.Storage"
    )
    assert rec.one("monitor:ActionGroup").inputs["emailReceivers"] == []


def test_a_chain_for_another_cloud_is_refused():
    with pytest.raises(SpecError, match=r"AzureChain needs data-flow:cloud 'azure'.*'gcp'"):
        AzureChain("dataflow", load_spec(gcp_config()))


def test_every_input_reaches_the_engine_translated(default):
    """Union-typed inputs given as plain dicts reach the engine with
    snake_case keys, which Azure would reject: typed args are used there."""
    rec, _ = default
    found = [
        k for r in rec.resources if r.type.startswith("azure-native:") for k in snake_keys(r.inputs, r.type)
    ]
    assert found == []
