"""Secure-by-default building blocks the Azure components share.

- ``assign(...)``: a role assignment scoped to one resource (never a
  resource group or subscription), with a stable name derived from the stack
  and the Pulumi resource name, so re-running never duplicates it.
- ``ROLES``: the built-in roles the chain grants, by name.
- ``private_endpoint(...)``: one sub-resource of a resource, in the chain's subnet.
- ``app_insights(...)``: a workspace-based Application Insights that takes
  telemetry by Entra ID only (local auth off).
- ``Lake``: an ADLS Gen2 account (hierarchical namespace) with the chain's
  containers: TLS 1.2, no shared keys (Entra ID only), no public blobs,
  infrastructure encryption, optional customer-managed key (also over its
  tables with ``tables=True``), optionally closed to public networks.
"""

from __future__ import annotations

import uuid

import pulumi
from pulumi_azure_native import applicationinsights, authorization, network, storage

# Built-in role definition ids (the same in every tenant).
ROLES = {
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
# Roles too broad for any grant of the chain.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
}
_NAMESPACE = uuid.UUID("6f1d0c55-6a4e-4f0e-9d4f-7c0a5e2d9b11")


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    guid = ROLES.get(role, role)
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", guid
    )


def assign(
    name: str,
    *,
    role: str | pulumi.Input[str],
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
    principal_type: str = "ServicePrincipal",
) -> authorization.RoleAssignment:
    """``role`` (a built-in name, or a custom definition's full id) for
    ``principal_id`` on exactly ``scope``."""
    definition = (
        role_definition_id(subscription_id, role)
        if isinstance(role, str) and not role.startswith("/")
        else role
    )
    return authorization.RoleAssignment(
        name,
        role_assignment_name=str(uuid.uuid5(_NAMESPACE, f"{pulumi.get_stack()}/{name}")),
        role_definition_id=definition,
        principal_id=principal_id,
        principal_type=principal_type,
        scope=scope,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def private_endpoint(
    name: str,
    *,
    resource_group: pulumi.Input[str],
    location: str,
    subnet_id: str,
    target_id: pulumi.Input[str],
    group: str,
    connection: str,
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> network.PrivateEndpoint:
    """A private endpoint ``name`` in ``subnet_id`` to one sub-resource
    (``group``) of ``target_id``, through the connection named ``connection``."""
    return network.PrivateEndpoint(
        name,
        resource_group_name=resource_group,
        location=location,
        subnet={"id": subnet_id},
        private_link_service_connections=[
            {"name": connection, "private_link_service_id": target_id, "group_ids": [group]}
        ],
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def app_insights(
    name: str,
    *,
    resource_group: pulumi.Input[str],
    location: str,
    log_workspace_id: pulumi.Input[str],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> applicationinsights.Component:
    """Application Insights ``name`` over the chain's Log Analytics workspace, Entra ID ingestion only."""
    return applicationinsights.Component(
        name,
        resource_group_name=resource_group,
        location=location,
        kind="web",
        application_type="web",
        workspace_resource_id=log_workspace_id,
        disable_local_auth=True,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def account_name(name: str) -> str:
    """A storage account name (3-24 lower-case letters and digits) from a resource name."""
    flat = "".join(ch for ch in name.lower() if ch.isalnum())
    return (flat[:16] + uuid.uuid5(_NAMESPACE, f"{pulumi.get_stack()}/{name}").hex[:8])[:24]


class Lake(pulumi.ComponentResource):
    """An ADLS Gen2 account and its containers (``containers[name]``)."""

    account: storage.StorageAccount
    containers: dict[str, storage.BlobContainer]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        containers: list[str],
        tags: dict[str, str],
        hierarchical: bool = True,
        cmk_key_url: str | None = None,
        tables: bool = False,
        public_network: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("data-flow:azure:Lake", name, None, opts)
        self.resource_group = resource_group
        child = pulumi.ResourceOptions(parent=self)
        encryption: dict = {
            "key_source": "Microsoft.Storage",
            "require_infrastructure_encryption": True,
            "services": {"blob": {"enabled": True, "key_type": "Account"}},
        }
        if tables:
            # Table data under the account key (and so the customer's key), not a service-managed one.
            encryption["services"]["table"] = {"enabled": True, "key_type": "Account"}
        identity = None
        if cmk_key_url:
            vault, _, key = cmk_key_url.removeprefix("https://").partition("/keys/")
            encryption |= {
                "key_source": "Microsoft.Keyvault",
                "key_vault_properties": {"key_name": key.split("/")[0], "key_vault_uri": f"https://{vault}"},
            }
            identity = {"type": "SystemAssigned"}
        self.account = storage.StorageAccount(
            name,
            account_name=account_name(name),
            resource_group_name=resource_group,
            location=location,
            kind="StorageV2",
            sku={"name": "Standard_ZRS"},
            is_hns_enabled=hierarchical,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            # Closed: reachable through private endpoints only.
            **({} if public_network else {"public_network_access": "Disabled"}),
            encryption=encryption,
            identity=identity,
            tags=tags,
            opts=child,
        )
        self.containers = {
            c: storage.BlobContainer(
                f"{name}-{c}",
                container_name=c,
                account_name=self.account.name,
                resource_group_name=resource_group,
                public_access="None",
                opts=child,
            )
            for c in containers
        }
        self.register_outputs({"account": self.account.name})

    def container_id(self, container: str) -> pulumi.Output[str]:
        """The container's resource id: the scope of a grant on it."""
        return self.containers[container].id

    def abfss(self, container: str, path: str = "") -> pulumi.Output[str]:
        return pulumi.Output.concat(
            "abfss://", container, "@", self.account.name, ".dfs.core.windows.net/", path
        )
