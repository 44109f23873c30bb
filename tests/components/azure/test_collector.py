"""The collector on Azure: a public Function App in front of the Event Hub,
allowed to send to it and read its write keys, nothing else."""

from __future__ import annotations

from components.azure import AzureChain
from components.azure.collector import KEY_VAULT_SECRETS_USER
from components.azure.security import ROLES
from components.policy.rules import violations
from components.spec import load_spec
from tests.components.configs import azure_config
from tests.components.conftest import run_program


def build(**sections):
    return run_program(lambda: AzureChain("dataflow", load_spec(azure_config(**sections))))


def test_the_collector_sends_to_the_ingest_hub_only():
    rec, _ = build()
    app = rec.one("web:WebApp", "dataflow-collector-app").inputs
    settings = {s["name"]: s["value"] for s in app["siteConfig"]["appSettings"]}
    assert settings["DATAFLOW_APP"] == "collector" and settings["COLLECTOR_SPILL_MB"] == "0"
    assert settings["COLLECTOR_SINK"] == "eventhubs:dataflow-ingest-namespace.servicebus.windows.net/events"
    assert (
        settings["DATAFLOW_WRITE_KEYS"]
        == "@Microsoft.KeyVault(VaultName=dataflow-collector-keys;SecretName=write-keys)"
    )
    assert app["httpsOnly"] is True and app["siteConfig"]["minTlsVersion"] == "1.2"
    mine = [a.inputs for a in rec.of_type("authorization:RoleAssignment")
            if a.inputs["principalId"] == "principal-dataflow-collector-app"]  # fmt: skip
    roles = sorted((a["roleDefinitionId"].rsplit("/", 1)[-1], a["scope"].rsplit("/", 2)[-2]) for a in mine)
    # The Functions host keeps its state in the host storage it reaches by identity.
    assert roles == sorted(
        [
            (ROLES["Azure Event Hubs Data Sender"], "EventHub"),
            (KEY_VAULT_SECRETS_USER, "Vault"),
            (ROLES["Storage Blob Data Owner"], "StorageAccount"),
        ]
    )
    api_storage = rec.one("authorization:RoleAssignment", "dataflow-serve-host-storage").inputs["scope"]
    assert [a["scope"] for a in mine if "StorageAccount" in a["scope"]] == [api_storage]
    vault = rec.one("keyvault:Vault", "dataflow-collector-keys").inputs["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enablePurgeProtection"] is True


def test_the_collector_passes_the_policy_pack_and_has_no_auth_wall():
    rec, _ = build()
    assert len(rec.of_type("web:WebAppAuthSettingsV2")) == 1  # the API's, not the collector's
    assert [v for r in rec.resources for v in violations(r.type, r.inputs, r.protect)] == []


def test_the_collector_can_be_left_out():
    rec, _ = build(collector={"enabled": False})
    assert len(rec.of_type("web:WebApp")) == 2


def test_a_collector_without_a_shared_host_stands_on_its_own_plan():
    """Outside the chain the collector needs no API: it declares its own plan and host storage."""
    from components.azure.collector import Collector
    from components.azure.ingest import Ingest
    from components.azure.security import Lake
    from components.spec import CollectorSpec, StreamSpec

    def program():
        lake = Lake(
            "lake",
            resource_group="rg",
            location="westeurope",
            containers=["capture", "dead-letters"],
            tags={},
        )
        ingest = Ingest(
            "ingest",
            resource_group="rg",
            location="westeurope",
            subscription_id="sub",
            stream=StreamSpec(),
            lake=lake,
            partitions=2,
            zone_redundant=False,
            tags={},
        )
        return Collector(
            "collector",
            resource_group="rg",
            location="westeurope",
            subscription_id="sub",
            tenant_id="tenant",
            ingest=ingest,
            collector=CollectorSpec(enabled=True),
            image="r.azurecr.io/api:1",
            tags={},
        )

    rec, _ = run_program(program)
    plan = rec.one("web:AppServicePlan", "collector-plan")
    assert rec.one("web:WebApp", "collector-app").inputs["serverFarmId"] == plan.id
    storage = rec.one("authorization:RoleAssignment", "collector-host-storage").inputs["scope"]
    assert storage.endswith(rec.one("storage:StorageAccount", "collector-host").inputs["accountName"])
