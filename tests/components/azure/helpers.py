"""What the Azure component tests share: building the chain, reading what it declared."""

from __future__ import annotations

from components.azure import AzureChain
from components.azure.security import ROLES
from components.spec import load_spec
from tests.components.configs import AZURE, azure_config
from tests.components.conftest import AZURE_SUBSCRIPTION, run_program


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: AzureChain("dataflow", load_spec(azure_config(**sections))))


def assignments(rec) -> list[dict]:
    return [r.inputs for r in rec.of_type("authorization:RoleAssignment")]


def role(name: str) -> str:
    return (
        f"/subscriptions/{AZURE_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[name]}"
    )


def at(rec, suffix: str, *path, name: str | None = None):
    """An input of the one resource of a type, by key path."""
    value = rec.one(suffix, name).inputs
    for key in path:
        value = value[key]
    return value


def snake_keys(value, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            # Names we choose (environment variables, as upper case) are data, not schema.
            if "_" in key and not key.isupper():
                yield f"{path}.{key}"
            yield from snake_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from snake_keys(item, f"{path}[{i}]")


LAKE = "dataflow-lake"


KEY_URL = "https://shop-keys.vault.azure.net/keys/chain"


DEPLOYMENT = "machinelearningservices:OnlineDeployment"


OPTIONS = [
    ({"serve": {"public": True}}, lambda rec: not rec.of_type("web:WebAppAuthSettingsV2")),
    ({"warehouse": {"dataset": "shop"}}, lambda rec: at(rec, "synapse:SqlPool", "sqlPoolName") == "shop"),
    (
        {"processing": {"min_workers": 4, "max_workers": 8}},
        lambda rec: (
            at(rec, "synapse:BigDataPool", "autoScale")
            == {"enabled": True, "minNodeCount": 4, "maxNodeCount": 8}
        ),
    ),
    (
        {"model": {"size": "large", "min_replicas": 2, "max_replicas": 3}},
        lambda rec: (
            at(rec, DEPLOYMENT, "properties", "instanceType") == "Standard_DS5_v2"
            and at(rec, DEPLOYMENT, "sku", "capacity") == 2
        ),
    ),
    (
        {"stream": {"throughput_mb_per_s": 3, "retention_hours": 48}},
        lambda rec: (
            at(rec, "eventhub:Namespace", "sku", "capacity") == 3
            and at(rec, "eventhub:EventHub", "retentionDescription", "retentionTimeInHours") == 48
        ),
    ),
    (
        {"azure": {**AZURE, "zone_redundant": False, "eventhub_partitions": 8}},
        lambda rec: (
            at(rec, "eventhub:Namespace", "zoneRedundant") is False
            and at(rec, "eventhub:EventHub", "partitionCount") == 8
        ),
    ),
    (
        {"azure": {**AZURE, "cmk_key_url": KEY_URL}},
        lambda rec: (
            at(rec, "synapse:Workspace", "encryption", "cmk", "key", "keyVaultUrl") == KEY_URL
            and at(rec, "storage:StorageAccount", "encryption", "keySource", name=LAKE)
            == "Microsoft.Keyvault"
        ),
    ),
    (
        {"processing": {"retries": 5, "restart_minutes": 30}},
        lambda rec: (
            at(rec, "datafactory:Pipeline", "activities", name="dataflow-process-pipeline")[0]["policy"][
                "retry"
            ]
            == 5
            and at(
                rec,
                "datafactory:Trigger",
                "properties",
                "recurrence",
                "interval",
                name="dataflow-process-keep-running",
            )
            == 30
            and (
                a := at(
                    rec,
                    "dynamic:Resource",
                    "definition",
                    "properties",
                    "jobProperties",
                    "args",
                    name="dataflow-process-job",
                )
            )[a.index("--commit_attempts") + 1]
            == "6"
        ),
    ),
    (
        {"alerts": {"email": "oncall@example.com"}},
        lambda rec: (
            at(rec, "monitor:ActionGroup", "emailReceivers")[0]["emailAddress"] == "oncall@example.com"
        ),
    ),
]
