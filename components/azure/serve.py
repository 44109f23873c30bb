"""Serving on Azure: the recommendation API as a Function App.

The app runs the API's Functions image (``pipeline_code/serving/azure/Dockerfile``:
the Azure Functions Python host with ``pipeline_code.serving.azure_function``,
an ASGI function around the same ``RecommendationApi``) on an Elastic Premium
plan, integrated into the chain's VNet so it reaches the private ML endpoint
and the fast path's private user-state table (``USER_STATE``).
Secure by default: HTTPS only, TLS 1.2, FTP off, a managed identity that may
score that one endpoint (and read its own host storage), and App Service
authentication that refuses requests without an Entra ID token for
``azure.api_client_id`` unless ``serve.public``. Callers are granted with
``grant_invoke``: an app-role assignment on that application (set
"assignment required" on its enterprise application, so unassigned
principals get no token). ``MODEL_ENDPOINT`` is
``azureml:<scoring uri>#<deployment>``.
"""

from __future__ import annotations

import pulumi
import pulumi_azuread as azuread
from pulumi_azure_native import web

from components.azure.fastpath import UserState
from components.azure.functions import function_app, function_host
from components.azure.model import Model
from components.spec import FastPathSpec, ServeSpec
from pipeline_code import host

TYPE = "data-flow:azure:Serve"
DEFAULT_ACCESS = "00000000-0000-0000-0000-000000000000"
"""The app role every application has when it defines none (Entra's "Default Access")."""


class Serve(pulumi.ComponentResource):
    """The recommendation API as a Function App behind App Service authentication.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role definitions are resolved in it.
        tenant_id: Entra ID tenant id.
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        user_state: The fast path's store, read once per request (``grant_read``).
        fast_path: ``data-flow:fast_path``: the read's time budget.
        serve: ``data-flow:serve``: instance bounds, memory and ``public`` (off: callers must be
            granted).
        image: The API's Functions image in ACR (``pipeline_code/serving/azure/Dockerfile``).
        subnet_id: Subnet the Function App joins, to reach the private ML endpoint.
        insights_connection: Application Insights connection string of the app.
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        client_id: Entra ID app (client) id callers get tokens for; required unless ``serve.public``.
            Default: None.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    app: web.WebApp
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        tenant_id: pulumi.Input[str],
        model: Model,
        user_state: UserState,
        fast_path: FastPathSpec,
        serve: ServeSpec,
        image: str,
        subnet_id: str,
        insights_connection: pulumi.Input[str],
        tags: dict[str, str],
        client_id: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.client_id = client_id
        self._api_principal: pulumi.Output[str] | None = None
        child = pulumi.ResourceOptions(parent=self)
        self.function_host = function_host(
            self,
            name,
            resource_group=resource_group,
            location=location,
            max_instances=serve.max_instances,
            tags=tags,
        )
        self.plan, self.host_storage = self.function_host.plan, self.function_host.storage
        # No deployment pinned: the endpoint's traffic decides, so the training job's
        # blue/green rollouts reach the API (a pinned one would be deleted by the first).
        endpoint = model.scoring_uri.apply(host.azureml_endpoint)
        self.app, principal, storage_grant = function_app(
            self,
            name,
            host=self.function_host,
            resource_group=resource_group,
            location=location,
            subscription_id=subscription_id,
            image=image,
            app_settings={
                "APPLICATIONINSIGHTS_CONNECTION_STRING": insights_connection,
                host.ENV_MODEL_ENDPOINT: endpoint,
                host.ENV_USER_STATE: user_state.location,
                host.ENV_USER_STATE_TIMEOUT_MS: str(fast_path.read_timeout_ms),
            },
            max_instances=serve.max_instances,
            tags=tags,
            # Inside the chain's VNet, to reach the private ML endpoint.
            site={"virtual_network_subnet_id": subnet_id, "client_cert_enabled": False},
            site_config={
                "vnet_route_all_enabled": True,
                "minimum_elastic_instance_count": max(1, serve.min_instances),
            },
        )
        self.grants = [
            model.grant_invoke("api", principal),
            user_state.grant_read("api", principal),
            storage_grant,
        ]
        self.auth = None
        if not serve.public:
            self.auth = web.WebAppAuthSettingsV2(
                f"{name}-auth",
                name=self.app.name,
                resource_group_name=resource_group,
                platform={"enabled": True},
                global_validation={
                    "require_authentication": True,
                    "unauthenticated_client_action": "Return401",
                },
                http_settings={"require_https": True},
                identity_providers={
                    "azure_active_directory": {
                        "enabled": True,
                        "registration": {
                            "client_id": client_id,
                            "open_id_issuer": pulumi.Output.concat(
                                "https://sts.windows.net/", tenant_id, "/v2.0"
                            ),
                        },
                        "validation": {"allowed_audiences": [f"api://{client_id}"]},
                    }
                },
                opts=child,
            )
        self.url = self.app.default_host_name.apply(lambda h: f"https://{h}/recommendations/")
        # What to watch: Monitoring takes the link and reads these (resource ids: diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "app": self.app.id,
        }
        self.register_outputs({"url": self.url})

    def grant_invoke(self, grantee: str, principal_id: pulumi.Input[str]) -> azuread.AppRoleAssignment:
        """Let ``principal_id`` call the API: an assignment of the API
        application's default app role to that principal, on the API's
        service principal (``azure.api_client_id``). With "assignment
        required" set on that enterprise application, Entra ID issues tokens
        for the API to assigned principals only, and App Service
        authentication refuses every request without one."""
        if self.client_id is None:
            raise ValueError(
                f"{self.name}: grant_invoke({grantee!r}) needs azure.api_client_id (got None): "
                "a public API (serve.public) has no callers to grant"
            )
        if self._api_principal is None:
            self._api_principal = azuread.get_service_principal_output(client_id=self.client_id).object_id
        return azuread.AppRoleAssignment(
            f"{self.name}-invoke-{grantee}",
            app_role_id=DEFAULT_ACCESS,
            principal_object_id=principal_id,
            resource_object_id=self._api_principal,
            opts=pulumi.ResourceOptions(parent=self),
        )
