"""The fast path on Azure: Table storage of users' recent activity, and the
Function that keeps it, triggered by the chain's Event Hub.

``UserState`` is the store: a storage account of its own holding one table,
Entra ID only (shared keys off), table data under the account key (the
chain's customer-managed key when ``azure.cmk_key_url`` is set), public
network access disabled and a private endpoint (``table``) in the chain's
subnet. Table storage has no TTL: every entity carries ``expires_at``
(``fast_path.ttl_days`` after a user's last event), readers treat an
expired one as absent and the fast path's app purges them daily
(``pipeline_code.userstate.tables``). Exactly two verbs touch it:
``grant_write`` (Storage Table Data Contributor) and ``grant_read``
(Storage Table Data Reader), each scoped to the one table.

``FastPath`` is the Function App (the Functions image with
``DATAFLOW_APP=fresh``) on the API's plan, inside the chain's VNet (it
reaches the store's private endpoint), with an Event Hubs trigger on its
own consumer group (``fast-path``) reached by identity
(``EVENTHUB__fullyQualifiedNamespace``), batches of ``fast_path.batch_size``
and the retry policy of ``pipeline_code.fastpath.azure_function``. It
reports to an Application Insights of its own (Entra ID ingestion, local
auth off), where Monitoring watches its failed invocations and the lag it
logs per batch.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import eventhub, storage

from components.azure.functions import FunctionHost, function_app
from components.azure.ingest import Ingest
from components.azure.security import Lake, app_insights, assign, private_endpoint
from components.spec import FastPathSpec
from pipeline_code import host

LAG_QUERY = (
    'traces | where message startswith "fresh batch " '
    '| parse message with * "lag_s=" lag_s:real '
    "| summarize lag_s = max(lag_s) by bin(timestamp, 1m)"
)
"""The fast path's lag, from the line ``pipeline_code.fastpath.azure_function``
logs per batch (``LAG_LINE``)."""
STORE_TYPE = "data-flow:azure:UserState"
FUNCTION_TYPE = "data-flow:azure:FastPath"
TABLE = "userstate"
CONSUMER_GROUP = "fast-path"


class UserState(pulumi.ComponentResource):
    """The online store of each user's recent activity: one table in a private account.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group every child is created in.
        location: Azure region of the children.
        subscription_id: Subscription id: role assignments are scoped within it.
        private_endpoint_subnet_id: Subnet of the account's ``table`` private endpoint.
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        cmk_key_url: Key Vault key (``https://VAULT.vault.azure.net/keys/NAME``) for customer-managed
            encryption. Default: None, Microsoft-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    account: Lake
    table: storage.Table
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        private_endpoint_subnet_id: str,
        tags: dict[str, str],
        cmk_key_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(STORE_TYPE, name, None, opts)
        self.name = name
        self.subscription_id = subscription_id
        child = pulumi.ResourceOptions(parent=self)
        self.account = Lake(
            f"{name}-account",
            resource_group=resource_group,
            location=location,
            containers=[],
            hierarchical=False,
            tables=True,
            public_network=False,
            cmk_key_url=cmk_key_url,
            tags=tags,
            opts=child,
        )
        self.table = storage.Table(
            f"{name}-table",
            table_name=TABLE,
            account_name=self.account.account.name,
            resource_group_name=resource_group,
            opts=child,
        )
        self.private_endpoint = private_endpoint(
            f"{name}-pe",
            resource_group=resource_group,
            location=location,
            subnet_id=private_endpoint_subnet_id,
            target_id=self.account.account.id,
            group="table",
            connection=f"{name}-table",
            tags=tags,
            parent=self,
        )
        self.location = self.account.account.name.apply(
            lambda a: host.user_state("tables", f"https://{a}.table.core.windows.net/{TABLE}")
        )
        self.alert_targets: dict[str, pulumi.Input[str]] = {"account": self.account.account.id}
        self.register_outputs({"table": self.table.id, "location": self.location})

    def _assign(self, grantee: str, verb: str, role: str, principal_id: pulumi.Input[str]):
        return assign(
            f"{self.name}-{verb}-{grantee}",
            role=role,
            principal_id=principal_id,
            scope=self.table.id,
            subscription_id=self.subscription_id,
            parent=self,
        )

    def grant_write(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read and write users' states (the fast path)."""
        return self._assign(grantee, "write", "Storage Table Data Contributor", principal_id)

    def grant_read(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read users' states (the API)."""
        return self._assign(grantee, "read", "Storage Table Data Reader", principal_id)


class FastPath(pulumi.ComponentResource):
    """The Event Hubs-triggered Function that applies each event to its user's state.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group every child is created in.
        location: Azure region of the children.
        subscription_id: Subscription id: role assignments are scoped within it.
        ingest: The ingest link whose hub triggers the function (``grant_consume``).
        user_state: The store the function writes (``grant_write``).
        fast_path: ``data-flow:fast_path``: TTL, batch size and instance bounds.
        image: The Functions image (``pipeline_code/serving/azure/Dockerfile``) in the registry.
        function_host: The plan and host storage the app stands on (the chain shares the API's).
        subnet_id: Subnet the app is integrated into, to reach the store's private endpoint.
        log_workspace_id: Log Analytics workspace behind the app's Application Insights.
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        ingest: Ingest,
        user_state: UserState,
        fast_path: FastPathSpec,
        image: str,
        function_host: FunctionHost,
        subnet_id: str,
        log_workspace_id: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(FUNCTION_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.location = location
        self.insights = app_insights(
            f"{name}-insights",
            resource_group=resource_group,
            location=location,
            log_workspace_id=log_workspace_id,
            tags=tags,
            parent=self,
        )
        self.consumer_group = eventhub.ConsumerGroup(
            f"{name}-consumer",
            consumer_group_name=CONSUMER_GROUP,
            event_hub_name=ingest.hub.name,
            namespace_name=ingest.namespace.name,
            resource_group_name=resource_group,
            opts=child,
        )
        prefix = "AzureFunctionsJobHost__extensions__eventHubs__"
        self.app, principal, storage_grant = function_app(
            self,
            name,
            host=function_host,
            resource_group=resource_group,
            location=location,
            subscription_id=subscription_id,
            image=image,
            app_settings={
                "APPLICATIONINSIGHTS_CONNECTION_STRING": self.insights.connection_string,
                # Local auth is off: telemetry goes in with the app's identity.
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
                host.ENV_APP: "fresh",
                f"{host.EVENTHUB_CONNECTION}__fullyQualifiedNamespace": ingest.namespace.name.apply(
                    lambda n: f"{n}.servicebus.windows.net"
                ),
                host.ENV_EVENTHUB_NAME: ingest.hub.name,
                host.ENV_EVENTHUB_CONSUMER_GROUP: self.consumer_group.name,
                # host.json's Event Hubs settings, per app: batch size and the read-ahead behind it.
                f"{prefix}maxEventBatchSize": str(fast_path.batch_size),
                f"{prefix}prefetchCount": str(2 * fast_path.batch_size),
                host.ENV_USER_STATE: user_state.location,
                host.ENV_USER_STATE_TTL_DAYS: str(fast_path.ttl_days),
            },
            max_instances=fast_path.max_instances,
            tags=tags,
            # Inside the chain's VNet, to reach the store's private endpoint.
            site={"virtual_network_subnet_id": subnet_id, "client_cert_enabled": False},
            site_config={"vnet_route_all_enabled": True},
        )
        self.grants = [
            ingest.grant_consume("fast-path", principal),
            user_state.grant_write("fast-path", principal),
            storage_grant,
            assign(
                f"{name}-sends-telemetry",
                role="Monitoring Metrics Publisher",
                principal_id=principal,
                scope=self.insights.id,
                subscription_id=subscription_id,
                parent=self,
            ),
        ]
        self.alert_targets: dict[str, pulumi.Input[str]] = {"app": self.app.id, "insights": self.insights.id}
        self.register_outputs({"app": self.app.name})
