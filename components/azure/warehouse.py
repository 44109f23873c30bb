"""The warehouse on Azure: a Synapse workspace with a dedicated SQL pool.

Secure by default: a managed virtual network with data exfiltration
protection, public network access off (the workspace is reached through
private endpoints for its SQL and development endpoints), Entra ID-only
authentication with an admin group from config, no SQL password anywhere,
and a customer-managed key when ``azure.cmk_key_url`` is set. The workspace's
identity may use the lake's containers it needs, nothing else.

The tables are the logical tables from ``pipeline_code/warehouses/synapse.py``; the
Synapse job creates any that are missing before its first batch (T-SQL DDL
cannot be run by an ARM resource), with the same DDL the tests check.
Queries run on the dedicated pool (size ``azure.sql_pool_sku``; pause it when
idle) or, for ad hoc reads of the lake, on the built-in serverless pool.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import synapse

from components.azure.security import Lake, assign, private_endpoint
from components.azure.synapse_sql import SynapseSqlGrant
from components.spec import WarehouseSpec
from pipeline_code.tables import written_by

TYPE = "data-flow:azure:Warehouse"
FILESYSTEM = "warehouse"


class Warehouse(pulumi.ComponentResource):
    """The Synapse workspace and its dedicated SQL pool, private and Entra ID only.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role definitions are resolved in it.
        warehouse: ``data-flow:warehouse``: dataset/database name, partition retention, deletion
            protection.
        lake: The chain's lake (``Lake``): its containers are the scopes of this link's grants.
        admin_object_id: Object id of the Entra ID group that administers the SQL pool.
        admin_login: Display name of that group.
        tenant_id: Entra ID tenant id.
        private_endpoint_subnet_id: Subnet of the workspace's ``Sql`` and ``Dev`` private endpoints.
        sql_pool_sku: Dedicated SQL pool size (``azure.sql_pool_sku``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        cmk_key_url: Key Vault key URL for customer-managed encryption. Default: None, Microsoft-managed
            keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    workspace: synapse.Workspace
    sql_pool: synapse.SqlPool

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        warehouse: WarehouseSpec,
        lake: Lake,
        admin_object_id: str,
        admin_login: str,
        tenant_id: pulumi.Input[str],
        private_endpoint_subnet_id: str,
        sql_pool_sku: str,
        tags: dict[str, str],
        cmk_key_url: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.subscription_id = subscription_id
        self.database = warehouse.dataset
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=warehouse.deletion_protection)
        encryption = None
        if cmk_key_url:
            encryption = {"cmk": {"key": {"name": "default", "key_vault_url": cmk_key_url}}}
        self.workspace = synapse.Workspace(
            f"{name}-workspace",
            resource_group_name=resource_group,
            location=location,
            identity={"type": "SystemAssigned"},
            default_data_lake_storage={
                "account_url": lake.account.name.apply(lambda a: f"https://{a}.dfs.core.windows.net"),
                "filesystem": FILESYSTEM,
                "resource_id": lake.account.id,
                "create_managed_private_endpoint": True,
            },
            managed_virtual_network="default",
            managed_virtual_network_settings={
                "prevent_data_exfiltration": True,
                "allowed_aad_tenant_ids_for_linking": [],
            },
            public_network_access="Disabled",
            azure_ad_only_authentication=True,
            encryption=encryption,
            tags=tags,
            opts=keep,
        )
        self.admin = synapse.WorkspaceAadAdmin(
            f"{name}-admin",
            resource_group_name=resource_group,
            workspace_name=self.workspace.name,
            administrator_type="ActiveDirectory",
            login=admin_login,
            sid=admin_object_id,
            tenant_id=tenant_id,
            opts=child,
        )
        self.sql_pool = synapse.SqlPool(
            f"{name}-sql",
            sql_pool_name=warehouse.dataset,
            resource_group_name=resource_group,
            workspace_name=self.workspace.name,
            location=location,
            sku={"name": sql_pool_sku},
            create_mode="Default",
            storage_account_type="GRS",
            collation="SQL_Latin1_General_CP1_CI_AS",
            tags=tags,
            opts=keep,
        )
        # Private endpoints: the pool's SQL endpoint and the development endpoint
        # (where Spark job definitions are published), in the chain's subnet.
        self.private_endpoints = [
            private_endpoint(
                f"{name}-pe-{group.lower()}",
                resource_group=resource_group,
                location=location,
                subnet_id=private_endpoint_subnet_id,
                target_id=self.workspace.id,
                group=group,
                connection=f"{name}-{group.lower()}",
                tags=tags,
                parent=self,
            )
            for group in ("Sql", "Dev")
        ]
        principal = self.workspace.identity.apply(lambda i: i.principal_id)
        # The workspace (its Spark pools and COPY INTO run as it) uses exactly these containers.
        self.lake_grants = [
            assign(
                f"{name}-lake-{container}",
                role=role,
                principal_id=principal,
                scope=lake.container_id(container),
                subscription_id=subscription_id,
                parent=self,
            )
            for container, role in (
                (FILESYSTEM, "Storage Blob Data Contributor"),
                ("work", "Storage Blob Data Contributor"),
                ("dead-letters", "Storage Blob Data Contributor"),
                ("capture", "Storage Blob Data Reader"),
            )
        ]
        self.sql_endpoint = self.workspace.connectivity_endpoints.apply(lambda e: (e or {}).get("sql", ""))
        self.dev_endpoint = self.workspace.connectivity_endpoints.apply(lambda e: (e or {}).get("dev", ""))
        # What to watch: Monitoring takes the link and reads these (resource ids: diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "workspace": self.workspace.id,
        }
        self.register_outputs({"workspace": self.workspace.name, "sql_pool": self.sql_pool.name})

    def grant_read(self, grantee: str, principal_name: pulumi.Input[str]) -> SynapseSqlGrant:
        """Let ``principal_name`` (as Entra ID names it: a managed identity's
        resource name, a group's display name) query the tables: a database
        user in the SQL pool with ``db_datareader``."""
        return self._grant(grantee, principal_name, ["db_datareader"], "read")

    def grant_write(self, grantee: str, principal_name: pulumi.Input[str]) -> SynapseSqlGrant:
        """Let ``principal_name`` read and write rows (``db_datareader`` and
        ``db_datawriter``; never the schema)."""
        return self._grant(grantee, principal_name, ["db_datareader", "db_datawriter"], "write")

    def grant_record_models(self, grantee: str, principal_name: pulumi.Input[str]) -> SynapseSqlGrant:
        """Let ``principal_name`` write ``model_versions`` (the training job's
        decisions): DML on that table, no role."""
        return self._grant(grantee, principal_name, [], "record-models", written_by("training"))

    def _grant(
        self,
        grantee: str,
        user: pulumi.Input[str],
        roles: list[str],
        verb: str,
        tables: list[str] | None = None,
    ) -> SynapseSqlGrant:
        return SynapseSqlGrant(
            f"{self.name}-{verb}-{grantee}",
            server=self.sql_endpoint,
            database=self.sql_pool.name,
            user=user,
            roles=roles,
            tables=tables,
            # The pool must exist and the admin group be set before a user can be made.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.sql_pool, self.admin]),
        )
