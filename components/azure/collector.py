"""The collector on Azure: the ingest front door as a Function App.

The Functions image of the API runs the collector with
``DATAFLOW_APP=collector`` on the API's Elastic Premium plan. It is public on
purpose (browsers and apps call it) and authenticates callers by write key;
the keys are the secret ``write-keys`` in the collector's own Key Vault
(RBAC only, purge protection; set it with ``az keyvault secret set``),
resolved into the app's settings by a Key Vault reference. Its managed
identity may send to the Ingest hub and read that vault's secrets, nothing
else. No local spill on Functions: when Event Hubs stays down the collector
answers 503 and trackers resend.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import keyvault, web

from components.azure.ingest import Ingest
from components.azure.security import assign
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:azure:Collector"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


class Collector(pulumi.ComponentResource):
    app: web.WebApp
    vault: keyvault.Vault
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        tenant_id: pulumi.Input[str],
        ingest: Ingest,
        collector: CollectorSpec,
        image: str,
        plan_id: pulumi.Input[str],
        host_storage_account: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vault = keyvault.Vault(
            f"{name}-keys",
            resource_group_name=resource_group,
            location=location,
            properties={
                "tenant_id": tenant_id,
                "sku": {"family": "A", "name": "standard"},
                "enable_rbac_authorization": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True,
            },
            tags=tags,
            opts=child,
        )
        sink = pulumi.Output.all(ingest.namespace.name, ingest.hub.name).apply(
            lambda v: host.sink("eventhubs", f"{v[0]}.servicebus.windows.net/{v[1]}")
        )
        keys = self.vault.name.apply(lambda v: f"@Microsoft.KeyVault(VaultName={v};SecretName=write-keys)")
        self.app = web.WebApp(
            f"{name}-app",
            resource_group_name=resource_group,
            location=location,
            kind="functionapp,linux,container",
            server_farm_id=plan_id,
            https_only=True,
            identity={"type": "SystemAssigned"},
            key_vault_reference_identity="SystemAssigned",
            site_config={
                "linux_fx_version": f"DOCKER|{image}",
                "acr_use_managed_identity_creds": True,
                "ftps_state": "Disabled",
                "min_tls_version": "1.2",
                "scm_min_tls_version": "1.2",
                "http20_enabled": True,
                "function_app_scale_limit": collector.max_instances,
                "app_settings": [
                    {"name": "FUNCTIONS_EXTENSION_VERSION", "value": "~4"},
                    {"name": "AzureWebJobsStorage__accountName", "value": host_storage_account},
                    {"name": host.ENV_APP, "value": "collector"},
                    {"name": host.ENV_COLLECTOR_SINK, "value": sink},
                    {"name": host.ENV_SPILL_MB, "value": "0"},
                    {"name": host.ENV_WRITE_KEYS, "value": keys},
                ],
            },
            tags=tags,
            opts=child,
        )
        principal = self.app.identity.apply(lambda i: i.principal_id)
        self.grants = [
            ingest.grant_publish("collector", principal),
            assign(
                f"{name}-reads-keys",
                role=KEY_VAULT_SECRETS_USER,
                principal_id=principal,
                scope=self.vault.id,
                subscription_id=subscription_id,
                parent=self,
            ),
        ]
        self.url = self.app.default_host_name.apply(lambda h: f"https://{h}/v1/")
        self.register_outputs({"url": self.url})
