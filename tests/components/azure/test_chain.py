"""The whole Azure chain under Pulumi's mocks: every link, the wiring between
them, least privilege, private and encrypted defaults, and each option."""

from __future__ import annotations

import pulumi
import pytest

from components.azure import AzureChain
from components.azure.security import BROAD_ROLES, ROLES
from components.gcp import GcpChain
from components.spec import SpecError, load_spec
from tests.components.conftest import AZURE_SUBSCRIPTION, resolved, run_program
from tests.components.test_spec import AZURE, azure_config, gcp_config


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: AzureChain("dataflow", load_spec(azure_config(**sections))))


@pytest.fixture(scope="module")
def default():
    return build()


def assignments(rec) -> list[dict]:
    return [r.inputs for r in rec.of_type("authorization:RoleAssignment")]


def role(name: str) -> str:
    return (
        f"/subscriptions/{AZURE_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[name]}"
    )


def test_every_link_is_created(default):
    rec, _ = default
    for suffix, count in [
        ("eventhub:Namespace", 1),
        ("eventhub:EventHub", 1),
        ("eventhub:ConsumerGroup", 1),
        ("storage:StorageAccount", 3),  # the lake, ML's workspace storage, the Functions host
        ("synapse:Workspace", 1),
        ("synapse:SqlPool", 1),
        ("synapse:BigDataPool", 1),
        ("datafactory:Factory", 1),
        ("datafactory:Pipeline", 1),
        ("datafactory:Trigger", 1),
        ("dynamic:Resource", 3),  # the Spark job definition and the factory's two Synapse roles
        ("machinelearningservices:Workspace", 1),
        ("machinelearningservices:OnlineEndpoint", 1),
        ("machinelearningservices:OnlineDeployment", 1),
        ("web:WebApp", 1),
        ("monitor:MetricAlert", 7),
        ("monitor:DiagnosticSetting", 5),
        ("monitor:ActionGroup", 1),
    ]:
        assert len(rec.of_type(suffix)) == count, suffix


def test_capture_lands_where_the_spark_job_reads(default):
    rec, _ = default
    hub = rec.one("eventhub:EventHub").inputs
    capture = hub["captureDescription"]
    lake = rec.one("storage:StorageAccount", "dataflow-lake")
    assert capture["enabled"] and capture["encoding"] == "Avro"
    assert capture["destination"]["blobContainer"] == "capture"
    assert capture["destination"]["storageAccountResourceId"].endswith(f"/{lake.inputs['accountName']}")
    job = rec.one("dynamic:Resource", "dataflow-process-job").inputs
    args = job["definition"]["properties"]["jobProperties"]["args"]
    capture_uri = args[args.index("--capture_uri") + 1]
    assert (
        capture_uri
        == f"abfss://capture@{lake.inputs['accountName']}.dfs.core.windows.net/dataflow-ingest-namespace/events/"
    )
    assert args[args.index("--sql_database") + 1] == "dataflow"
    assert args[args.index("--sql_server") + 1] == "dataflow-warehouse-workspace.sql.azuresynapse.net"
    assert job["endpoint"] == "https://dataflow-warehouse-workspace.dev.azuresynapse.net"


def test_the_pipeline_runs_the_job_definition_on_the_pool(default):
    rec, _ = default
    pipeline = rec.one("datafactory:Pipeline").inputs
    (activity,) = pipeline["activities"]
    assert activity["type"] == "SparkJob" and activity["sparkJob"]["referenceName"] == "dataflow-stream"
    assert (
        activity["targetBigDataPool"]["referenceName"]
        == rec.one("synapse:BigDataPool").inputs["bigDataPoolName"]
    )
    assert activity["policy"]["retry"] == 2 and pipeline["concurrency"] == 1
    linked = rec.one("datafactory:LinkedService").inputs["properties"]
    assert linked["authentication"] == "MSI" and linked["type"] == "AzureSynapseArtifacts"
    trigger = rec.one("datafactory:Trigger").inputs["properties"]
    assert trigger["pipelines"][0]["pipelineReference"]["referenceName"] == pipeline["pipelineName"]
    pool = rec.one("synapse:BigDataPool").inputs
    assert pool["autoPause"] == {"enabled": True, "delayInMinutes": 15}
    assert pool["autoScale"] == {"enabled": True, "minNodeCount": 3, "maxNodeCount": 3}
    assert "msgspec" in pool["libraryRequirements"]["content"]


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


def test_the_api_may_score_that_endpoint_only(default):
    rec, _ = default
    scorer = rec.one("authorization:RoleDefinition").inputs
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
    settings = {s["name"]: s["value"] for s in rec.one("web:WebApp").inputs["siteConfig"]["appSettings"]}
    assert settings["MODEL_ENDPOINT"] == (
        "azureml:https://dataflow-ml-endpoint.westeurope.inference.ml.azure.com/score#primary"
    )


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
    assert rec.one("datafactory:Factory").inputs["publicNetworkAccess"] == "Disabled"
    app = rec.one("web:WebApp").inputs
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
    assert groups == ["Dev", "Sql", "amlworkspace"]


def test_alerts_watch_every_link_and_every_resource_logs(default):
    rec, _ = default
    alerts = {
        a.name.removeprefix("dataflow-monitoring-"): a.inputs for a in rec.of_type("monitor:MetricAlert")
    }
    assert set(alerts) == {
        "capture-stalled",
        "capture-backlog",
        "pipeline-failures",
        "dead-letters",
        "spilled-batches",
        "model-errors",
        "model-latency",
    }
    group = rec.one("monitor:ActionGroup")
    assert all(
        a["actions"] == [{"actionGroupId": alerts and a["actions"][0]["actionGroupId"]}]
        for a in alerts.values()
    )
    assert {a["actions"][0]["actionGroupId"] for a in alerts.values()} == {
        f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{group.inputs['resourceGroupName']}/providers/monitor/ActionGroup/dataflow-monitoring-oncall"
    }
    assert alerts["model-latency"]["criteria"]["allOf"][0]["threshold"] == 500
    dead = alerts["dead-letters"]
    assert dead["scopes"][0].endswith("/Component/dataflow-process-insights")
    assert dead["criteria"]["allOf"][0]["metricName"] == "DeadLettered"
    assert dead["criteria"]["allOf"][0]["threshold"] == 10
    job = rec.one("dynamic:Resource", "dataflow-process-job").inputs["definition"]["properties"][
        "jobProperties"
    ]["args"]
    assert job[job.index("--insights_connection") + 1].startswith("InstrumentationKey=")
    stalled = alerts["capture-stalled"]["criteria"]["allOf"]
    assert [c["metricName"] for c in stalled] == ["IncomingMessages", "CapturedMessages"]
    logged = {d.inputs["resourceUri"].rsplit("/", 2)[-2] for d in rec.of_type("monitor:DiagnosticSetting")}
    assert logged == {"Namespace", "Workspace", "Factory", "WebApp"}
    assert len(rec.of_type("monitor:DiagnosticSetting")) == 5


def test_outputs_have_the_same_names_as_gcps(default):
    _, chain = default
    values = resolved(pulumi.Output.all(**chain.outputs()))
    assert values["warehouse_location"] == "dataflow-warehouse-workspace.sql.azuresynapse.net/dataflow"
    assert values["dead_letter_location"].startswith("abfss://dead-letters@")
    assert values["api_url"] == "https://dataflow-serve-app.azurewebsites.net/recommendations/"
    _, gcp_chain = run_program(lambda: GcpChain("dataflow", load_spec(gcp_config())))
    assert set(chain.outputs()) == set(gcp_chain.outputs())


def at(rec, suffix: str, *path, name: str | None = None):
    """An input of the one resource of a type, by key path."""
    value = rec.one(suffix, name).inputs
    for key in path:
        value = value[key]
    return value


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
            at(rec, "datafactory:Pipeline", "activities")[0]["policy"]["retry"] == 5
            and at(rec, "datafactory:Trigger", "properties", "recurrence", "interval") == 30
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


def snake_keys(value, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key:
                yield f"{path}.{key}"
            yield from snake_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from snake_keys(item, f"{path}[{i}]")


def test_every_input_reaches_the_engine_translated(default):
    """Union-typed inputs given as plain dicts reach the engine with
    snake_case keys, which Azure would reject: typed args are used there."""
    rec, _ = default
    found = [
        k for r in rec.resources if r.type.startswith("azure-native:") for k in snake_keys(r.inputs, r.type)
    ]
    assert found == []
