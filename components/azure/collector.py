"""The collector on Azure: the ingest front door as a Function App.

The Functions image of the API runs the collector with
``DATAFLOW_APP=collector``, on the ``FunctionHost`` it is given (the chain
passes the API's Elastic Premium plan and host storage) or on its own. It is public on
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

from components.azure.functions import FunctionHost, function_app
from components.azure.functions import function_host as make_function_host
from components.azure.ingest import Ingest
from components.azure.security import assign
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:azure:Collector"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


class Collector(pulumi.ComponentResource):
    """The collector as a Function App: Segment's tracking API in front of the hub.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role definitions are resolved in it.
        tenant_id: Entra ID tenant id.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        collector: ``data-flow:collector``: instance bound and memory of the collector.
        image: The API's Functions image (it serves the collector with ``DATAFLOW_APP=collector``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        function_host: The plan and host storage to run on (``FunctionHost``). Default: None, the link
            creates its own.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

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
        tags: dict[str, str],
        function_host: FunctionHost | None = None,
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
        # The plan and host storage it stands on: the one given (the chain shares
        # the API's), else its own.
        self.function_host = function_host or make_function_host(
            self,
            name,
            resource_group=resource_group,
            location=location,
            max_instances=collector.max_instances,
            tags=tags,
        )
        self.app, principal, storage_grant = function_app(
            self,
            name,
            host=self.function_host,
            resource_group=resource_group,
            location=location,
            subscription_id=subscription_id,
            image=image,
            app_settings={
                host.ENV_APP: "collector",
                host.ENV_COLLECTOR_SINK: sink,
                host.ENV_SPILL_MB: "0",
                host.ENV_WRITE_KEYS: keys,
                **(
                    {host.ENV_ALLOWED_ORIGINS: ",".join(collector.allowed_origins)}
                    if collector.allowed_origins
                    else {}
                ),
            },
            max_instances=collector.max_instances,
            tags=tags,
            site={"key_vault_reference_identity": "SystemAssigned"},
        )
        self.grants = [
            ingest.grant_publish("collector", principal),
            storage_grant,
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
