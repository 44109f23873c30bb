"""The fast path on Azure: the private Table storage account, the Event
Hubs-triggered Function on its own consumer group, and exactly its grants
(the function writes, the API reads, both on the one table)."""

from __future__ import annotations

from tests.components.azure.helpers import AZURE, assignments, build, role
from tests.components.configs import azure_config


def settings(rec, app: str) -> dict:
    return {s["name"]: s["value"] for s in rec.one("web:WebApp", app).inputs["siteConfig"]["appSettings"]}


def state_account(rec):
    (account,) = [a for a in rec.of_type("storage:StorageAccount") if a.name == "dataflow-state-account"]
    return account.inputs


def test_the_store_is_closed_to_keys_and_public_networks(default):
    rec, _ = default
    account = state_account(rec)
    assert account["allowSharedKeyAccess"] is False and account["publicNetworkAccess"] == "Disabled"
    assert account["encryption"]["services"]["table"] == {"enabled": True, "keyType": "Account"}
    assert rec.one("storage:Table").inputs["tableName"] == "userstate"
    (pe,) = [p for p in rec.of_type("network:PrivateEndpoint") if p.name == "dataflow-state-pe"]
    assert pe.inputs["subnet"]["id"] == AZURE["private_endpoint_subnet_id"]


def test_a_customer_managed_key_covers_the_tables():
    key = "https://chain-keys.vault.azure.net/keys/chain"
    rec, _ = build(azure={**azure_config()["azure"], "cmk_key_url": key})
    encryption = state_account(rec)["encryption"]
    assert (
        encryption["keySource"] == "Microsoft.Keyvault"
        and encryption["services"]["table"]["keyType"] == "Account"
    )


def test_the_function_reads_its_own_consumer_group_by_identity(default):
    rec, _ = default
    group = [g for g in rec.of_type("eventhub:ConsumerGroup") if g.name == "dataflow-fast-consumer"]
    assert group[0].inputs["consumerGroupName"] == "fast-path"
    s = settings(rec, "dataflow-fast-app")
    assert s["DATAFLOW_APP"] == "fresh" and s["EVENTHUB_CONSUMER_GROUP"] == "fast-path"
    assert s["EVENTHUB__fullyQualifiedNamespace"].endswith(".servicebus.windows.net")
    assert s["USER_STATE"].startswith("tables:https://") and s["USER_STATE"].endswith(
        ".table.core.windows.net/userstate"
    )
    assert s["USER_STATE_TTL_DAYS"] == "30"
    assert s["AzureFunctionsJobHost__extensions__eventHubs__maxEventBatchSize"] == "100"
    assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert not [k for k in s if "ConnectionString" in k or k == "EVENTHUB"]
    app = rec.one("web:WebApp", "dataflow-fast-app").inputs
    assert app["virtualNetworkSubnetId"] == AZURE["function_subnet_id"]


def test_only_the_function_writes_and_only_the_api_reads_the_table(default):
    rec, _ = default
    table = rec.one("storage:Table").id
    on_table = {(a["principalId"], a["roleDefinitionId"]) for a in assignments(rec) if a["scope"] == table}
    assert on_table == {
        ("principal-dataflow-fast-app", role("Storage Table Data Contributor")),
        ("principal-dataflow-serve-app", role("Storage Table Data Reader")),
    }
    account = next(r for r in rec.of_type("storage:StorageAccount") if r.name == "dataflow-state-account").id
    assert not [a for a in assignments(rec) if a["scope"] == account]
    hub = rec.one("eventhub:EventHub").id
    receivers = {
        a["principalId"]
        for a in assignments(rec)
        if a["scope"] == hub and a["roleDefinitionId"] == role("Azure Event Hubs Data Receiver")
    }
    assert "principal-dataflow-fast-app" in receivers
    api = settings(rec, "dataflow-serve-app")
    assert api["USER_STATE"] == settings(rec, "dataflow-fast-app")["USER_STATE"]
    assert api["USER_STATE_TIMEOUT_MS"] == "150"


def test_the_lag_alert_reads_the_line_the_function_logs(default):
    from pipeline_code.fastpath.azure_function import LAG_LINE

    rec, _ = default
    rule = rec.one("monitor:ScheduledQueryRule", "dataflow-monitoring-fast-path-lag").inputs
    condition = rule["criteria"]["allOf"][0]
    assert condition["metricMeasureColumn"] == "lag_s" and condition["threshold"] == 60
    assert rule["scopes"][0].endswith("/Component/dataflow-fast-insights")
    line = LAG_LINE.format(events=3, failed=0, lag=1.5)
    assert line.startswith("fresh batch ") and "lag_s=1.500" in line and '"lag_s="' in condition["query"]
