"""One helper for every Function App of the chain (the API, the collector,
and the stream functions to come), shared by sibling components the way
awsx's ``containers.ts`` serves both ECS services.

``function_host`` declares what Function Apps stand on: an Elastic Premium
plan (Linux) and the host's own storage account, reached by identity (no
connection string, no key). A ``FunctionHost`` is an explicit link: the
chain's Serve creates one and the Collector stands on it, or a component
creates its own.

``function_app`` declares a hardened container Function App on a host:
HTTPS only, TLS 1.2, FTP off, HTTP/2, the image pulled with the app's
managed identity, identity-based host storage (the identity gets Blob Data
Owner on that account), a scale limit, and the caller's app settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_azure_native import authorization, web

from components.azure.security import Lake, assign


@dataclass
class FunctionHost:
    """The plan and host storage Function Apps stand on."""

    plan: web.AppServicePlan
    storage: Lake


def function_host(
    owner: pulumi.Resource,
    name: str,
    *,
    resource_group: pulumi.Input[str],
    location: str,
    max_instances: int,
    tags: dict[str, str],
) -> FunctionHost:
    """An Elastic Premium plan ``{name}-plan`` and host storage ``{name}-host``."""
    child = pulumi.ResourceOptions(parent=owner)
    storage = Lake(
        f"{name}-host",
        resource_group=resource_group,
        location=location,
        containers=[],
        hierarchical=False,
        tags=tags,
        opts=child,
    )
    plan = web.AppServicePlan(
        f"{name}-plan",
        resource_group_name=resource_group,
        location=location,
        kind="elastic",
        reserved=True,  # Linux
        sku={"name": "EP1", "tier": "ElasticPremium"},
        maximum_elastic_worker_count=max_instances,
        tags=tags,
        opts=child,
    )
    return FunctionHost(plan, storage)


def function_app(
    owner: pulumi.Resource,
    name: str,
    *,
    host: FunctionHost,
    resource_group: pulumi.Input[str],
    location: str,
    subscription_id: pulumi.Input[str],
    image: str,
    app_settings: Mapping[str, pulumi.Input[str]],
    max_instances: int,
    tags: dict[str, str],
    site: Mapping[str, Any] | None = None,
    site_config: Mapping[str, Any] | None = None,
) -> tuple[web.WebApp, pulumi.Output[str], authorization.RoleAssignment]:
    """A container Function App ``{name}-app`` on ``host``; returns it, its
    identity's principal id and its host-storage grant (``{name}-host-storage``).

    ``site`` and ``site_config`` add what only this app needs (a VNet, a Key
    Vault reference identity, instance floors)."""
    app = web.WebApp(
        f"{name}-app",
        resource_group_name=resource_group,
        location=location,
        kind="functionapp,linux,container",
        server_farm_id=host.plan.id,
        https_only=True,
        identity={"type": "SystemAssigned"},
        **dict(site or {}),
        site_config={
            "linux_fx_version": f"DOCKER|{image}",
            "acr_use_managed_identity_creds": True,
            "ftps_state": "Disabled",
            "min_tls_version": "1.2",
            "scm_min_tls_version": "1.2",
            "http20_enabled": True,
            **dict(site_config or {}),
            "function_app_scale_limit": max_instances,
            "app_settings": [
                {"name": "FUNCTIONS_EXTENSION_VERSION", "value": "~4"},
                {"name": "AzureWebJobsStorage__accountName", "value": host.storage.account.name},
                *({"name": k, "value": v} for k, v in app_settings.items()),
            ],
        },
        tags=tags,
        opts=pulumi.ResourceOptions(parent=owner),
    )
    principal = app.identity.apply(lambda i: i.principal_id)
    # Identity-based host storage (no connection string, no key).
    storage_grant = assign(
        f"{name}-host-storage",
        role="Storage Blob Data Owner",
        principal_id=principal,
        scope=host.storage.account.id,
        subscription_id=subscription_id,
        parent=owner,
    )
    return app, principal, storage_grant
