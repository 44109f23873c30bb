"""ML on Azure: the one model-server image as an Azure ML managed online endpoint.

The workspace brings what Azure ML requires: a Key Vault (RBAC, purge
protection, no public access), a storage account (Entra ID only; the
workspace's datastores use identity auth) and Application Insights on the
chain's Log Analytics workspace. The environment version registers the
image with its inference routes (``/live``, ``/ping``, ``/invocations`` on
8080: the serving contract the image already meets); the model version points
at the trained model folder. The endpoint takes Entra ID tokens (``AADToken``)
and has public network access off: callers come through the workspace's
private endpoint. Scoring is granted with ``grant_invoke``: a custom role whose
only action is ``onlineEndpoints/score/action``, on this endpoint.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization, keyvault, machinelearningservices

from components.azure.endpoint_traffic import EndpointTraffic
from components.azure.security import Lake, app_insights, assign, private_endpoint
from components.spec import ModelSpec

TYPE = "data-flow:azure:Model"
INSTANCE_TYPES = {"small": "Standard_DS3_v2", "medium": "Standard_DS4_v2", "large": "Standard_DS5_v2"}
DEPLOYMENT = "primary"
PORT = 8080
SCORE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"


class Model(pulumi.ComponentResource):
    """An Azure ML workspace with the recommender on a managed online endpoint.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role definitions are resolved in it.
        tenant_id: Entra ID tenant id.
        model: ``data-flow:model``: machine size, replica bounds, private serving.
        image: The model-server image in ACR.
        artifact_uri: Blob URL of the model version's folder.
        log_workspace_id: Log Analytics workspace that diagnostics go to.
        private_endpoint_subnet_id: Subnet of the workspace's private endpoint.
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        public: Public network access to the workspace and endpoint. Default: False.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    workspace: machinelearningservices.Workspace
    endpoint: machinelearningservices.OnlineEndpoint
    deployment: machinelearningservices.OnlineDeployment

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        tenant_id: pulumi.Input[str],
        model: ModelSpec,
        image: str,
        artifact_uri: str,
        log_workspace_id: pulumi.Input[str],
        private_endpoint_subnet_id: str,
        tags: dict[str, str],
        public: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.subscription_id = subscription_id
        child = pulumi.ResourceOptions(parent=self)
        self.vault = keyvault.Vault(
            f"{name}-vault",
            resource_group_name=resource_group,
            location=location,
            properties={
                "tenant_id": tenant_id,
                "sku": {"family": "A", "name": "standard"},
                "enable_rbac_authorization": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True,
                "public_network_access": "Disabled",
                "network_acls": {"default_action": "Deny", "bypass": "AzureServices"},
            },
            tags=tags,
            opts=child,
        )
        self.storage = Lake(
            f"{name}-store",
            resource_group=resource_group,
            location=location,
            containers=[],
            hierarchical=False,  # Azure ML's workspace storage is a plain blob account
            tags=tags,
            opts=child,
        )
        self.insights = app_insights(
            f"{name}-insights",
            resource_group=resource_group,
            location=location,
            log_workspace_id=log_workspace_id,
            tags=tags,
            parent=self,
        )
        access = "Enabled" if public else "Disabled"
        self.workspace = machinelearningservices.Workspace(
            f"{name}-workspace",
            resource_group_name=resource_group,
            location=location,
            identity={"type": "SystemAssigned"},
            key_vault=self.vault.id,
            storage_account=self.storage.account.id,
            application_insights=self.insights.id,
            public_network_access=access,
            system_datastores_auth_mode="identity",
            sku={"name": "Basic", "tier": "Basic"},
            tags=tags,
            opts=child,
        )
        self.private_endpoint = private_endpoint(
            f"{name}-pe",
            resource_group=resource_group,
            location=location,
            subnet_id=private_endpoint_subnet_id,
            target_id=self.workspace.id,
            group="amlworkspace",
            connection=f"{name}-amlworkspace",
            tags=tags,
            parent=self,
        )
        ws = {"resource_group_name": resource_group, "workspace_name": self.workspace.name}
        self.instance_type = INSTANCE_TYPES[model.size]
        self.instance_count = model.min_replicas
        self.public = public
        self.environment = machinelearningservices.EnvironmentVersion(
            f"{name}-environment",
            name="dataflow-model-server",
            version=image.rsplit(":", 1)[-1].replace(".", "-") if ":" in image else "1",
            properties={
                "image": image,
                "os_type": "Linux",
                "inference_config": {
                    "liveness_route": {"path": "/live", "port": PORT},
                    "readiness_route": {"path": "/ping", "port": PORT},
                    "scoring_route": {"path": "/invocations", "port": PORT},
                },
            },
            **ws,
            opts=child,
        )
        self.model_version = machinelearningservices.ModelVersion(
            f"{name}-model",
            name="dataflow-recommender",
            version=artifact_uri.rstrip("/").rsplit("/", 1)[-1],
            properties={"model_uri": artifact_uri, "model_type": "custom_model"},
            **ws,
            opts=child,
        )
        self.endpoint = machinelearningservices.OnlineEndpoint(
            f"{name}-endpoint",
            endpoint_name=f"{name}-endpoint",
            location=location,
            identity={"type": "SystemAssigned"},
            properties={"auth_mode": "AADToken", "public_network_access": access},
            tags=tags,
            **ws,
            opts=child,
        )

        def probe() -> machinelearningservices.ProbeSettingsArgs:
            return machinelearningservices.ProbeSettingsArgs(
                initial_delay="PT10S", period="PT10S", timeout="PT2S", failure_threshold=30
            )

        self.deployment = machinelearningservices.OnlineDeployment(
            f"{name}-deployment",
            deployment_name=DEPLOYMENT,
            endpoint_name=self.endpoint.name,
            location=location,
            sku={"name": "Default", "capacity": model.min_replicas},
            # Typed args: the properties input is a union (managed or Kubernetes),
            # which a plain dict would reach the engine untranslated.
            properties=machinelearningservices.ManagedOnlineDeploymentArgs(
                endpoint_compute_type="Managed",
                model=self.model_version.id,
                environment_id=self.environment.id,
                instance_type=INSTANCE_TYPES[model.size],
                scale_settings=machinelearningservices.DefaultScaleSettingsArgs(scale_type="Default"),
                liveness_probe=probe(),
                readiness_probe=probe(),
                request_settings=machinelearningservices.OnlineRequestSettingsArgs(
                    request_timeout="PT5S", max_concurrent_requests_per_instance=8
                ),
                app_insights_enabled=True,
                egress_public_network_access="Disabled",
            ),
            tags=tags,
            **ws,
            opts=child,
        )
        # The endpoint's first traffic (it cannot name a deployment before it exists); the
        # training job's rollouts move it after that.
        self.traffic = EndpointTraffic(
            f"{name}-traffic",
            endpoint_id=self.endpoint.id,
            deployment=DEPLOYMENT,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment]),
        )
        # Only scoring, nothing else of the workspace: a role with one action.
        self.scorer_role = authorization.RoleDefinition(
            f"{name}-scorer",
            role_name=f"{name} endpoint scorer ({pulumi.get_stack()})",
            description="Score the Data-Flow recommendation endpoint; nothing else.",
            role_type="CustomRole",
            scope=self.endpoint.id,
            assignable_scopes=[self.endpoint.id],
            permissions=[
                {"actions": [SCORE_ACTION], "not_actions": [], "data_actions": [], "not_data_actions": []}
            ],
            opts=child,
        )
        self.scoring_uri = self.endpoint.properties.apply(lambda p: p.scoring_uri or "")
        # What to watch: Monitoring takes the link and reads these (resource ids: scopes, diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "endpoint": self.endpoint.id,
            "workspace": self.workspace.id,
        }
        self.register_outputs({"endpoint": self.endpoint.id})

    def grant_invoke(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` call this endpoint's scoring route, and only that."""
        return assign(
            f"{self.name}-score-{grantee}",
            role=self.scorer_role.id,
            principal_id=principal_id,
            scope=self.endpoint.id,
            subscription_id=self.subscription_id,
            parent=self,
        )
