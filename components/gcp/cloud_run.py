"""One helper for every Cloud Run service of the chain (the API, the
collector, and the stream functions to come), shared by sibling components
the way awsx's ``containers.ts`` serves both ECS services.

``run_identity`` declares the service's own service account (a service
never runs as the default compute identity). ``run_service`` declares a
Cloud Run v2 service running one container on port 8080 as that identity,
scaling between the bounds given, with a memory limit and an HTTP startup
probe, after the grants it needs (image pull plus the caller's) exist.
Who may invoke it is the caller's choice: ``invoker`` grants ``roles/run.invoker``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.processing import grant_image_pull


def run_identity(
    owner: pulumi.Resource, resource_name: str, *, project: str, account_id: str, display_name: str
) -> tuple[gcp.serviceaccount.Account, pulumi.Output[str]]:
    """The service's own service account and its IAM member string."""
    account = gcp.serviceaccount.Account(
        resource_name,
        project=project,
        account_id=account_id[:30],
        display_name=display_name,
        opts=pulumi.ResourceOptions(parent=owner),
    )
    return account, account.email.apply(lambda e: f"serviceAccount:{e}")


def run_service(
    owner: pulumi.Resource,
    resource_name: str,
    *,
    project: str,
    region: str,
    identity: gcp.serviceaccount.Account,
    member: pulumi.Input[str],
    image: str,
    envs: Sequence[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs],
    memory_mb: int,
    min_instances: int,
    max_instances: int,
    probe_path: str,
    labels: dict[str, str],
    pull_grant_name: str,
    grants: Sequence[Any] = (),
    args: Sequence[str] | None = None,
    commands: Sequence[str] | None = None,
    ingress: str = "INGRESS_TRAFFIC_ALL",
) -> gcp.cloudrunv2.Service:
    """A Cloud Run v2 service of ``image`` running as ``identity``.

    ``pull_grant_name`` names the image-pull grant; ``grants`` are what else
    must exist before the first revision starts (other links' grant verbs);
    ``ingress`` ``INGRESS_TRAFFIC_INTERNAL_ONLY`` for a service only
    Google's own senders (Pub/Sub push in the project) and the VPC reach.
    """
    pull = grant_image_pull(owner, pull_grant_name, image, member)
    return gcp.cloudrunv2.Service(
        resource_name,
        project=project,
        location=region,
        ingress=ingress,
        deletion_protection=False,
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=identity.email,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                min_instance_count=min_instances, max_instance_count=max_instances
            ),
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    image=image,
                    args=list(args) if args is not None else None,
                    commands=list(commands) if commands is not None else None,
                    ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=8080),
                    envs=list(envs),
                    resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                        limits={"cpu": "1", "memory": f"{memory_mb}Mi"}
                    ),
                    startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                        http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                            path=probe_path
                        )
                    ),
                )
            ],
        ),
        labels=labels,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[*grants, pull]),
    )


def invoker(
    owner: pulumi.Resource,
    resource_name: str,
    service: gcp.cloudrunv2.Service,
    *,
    project: str,
    region: str,
    member: pulumi.Input[str],
) -> gcp.cloudrunv2.ServiceIamMember:
    """Let ``member`` call ``service`` (``allUsers`` makes it public)."""
    return gcp.cloudrunv2.ServiceIamMember(
        resource_name,
        project=project,
        location=region,
        name=service.name,
        role="roles/run.invoker",
        member=member,
        opts=pulumi.ResourceOptions(parent=owner),
    )
