"""The serve link on GCP: the recommendation API on Cloud Run.

The API (``python -m pipeline_code.serving api``) answers
``GET /recommendations/{user_id}`` by calling the Vertex endpoint. It runs as
its own service account, allowed to call that endpoint and nothing else.
Invocation is authenticated by default: only identities granted
``grant_invoke`` may call it; ``serve.public: true`` adds ``allUsers``, and
nothing else does.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.ml import Model
from components.gcp.process import grant_image_pull
from components.spec import ServeSpec
from pipeline_code import host

TYPE = "data-flow:gcp:Serve"


class Serve(pulumi.ComponentResource):
    """A Cloud Run v2 service running the recommendation API."""

    service: gcp.cloudrunv2.Service
    service_account: gcp.serviceaccount.Account
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        model: Model,
        serve: ServeSpec,
        image: str,
        labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.project = project
        self.region = region
        child = pulumi.ResourceOptions(parent=self)
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-api",
            project=project,
            account_id=f"{name}-api"[:30],
            display_name="Data-Flow recommendation API",
            opts=child,
        )
        member = self.service_account.email.apply(lambda e: f"serviceAccount:{e}")
        grants = [
            model.grant_invoke("api", member),
            grant_image_pull(self, f"{name}-api-pulls-image", image, member),
        ]
        endpoint = model.endpoint.id.apply(host.vertex_endpoint)
        self.service = gcp.cloudrunv2.Service(
            f"{name}-api",
            project=project,
            location=region,
            ingress="INGRESS_TRAFFIC_ALL",
            deletion_protection=False,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=self.service_account.email,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=serve.min_instances, max_instance_count=serve.max_instances
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=image,
                        args=["api"],
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=8080),
                        envs=[
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                name=host.ENV_MODEL_ENDPOINT, value=endpoint
                            )
                        ],
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": f"{serve.memory_mb}Mi"}
                        ),
                        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                path="/ping"
                            )
                        ),
                    )
                ],
            ),
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        self.url = self.service.uri
        self.public_invoker = None
        if serve.public:
            self.public_invoker = self.grant_invoke("public", "allUsers")
        self.register_outputs({"url": self.url, "service_account": self.service_account.email})

    def grant_invoke(self, grantee: str, member: pulumi.Input[str]) -> gcp.cloudrunv2.ServiceIamMember:
        """Let ``member`` call the API."""
        return gcp.cloudrunv2.ServiceIamMember(
            f"{self.name}-{grantee}-invokes",
            project=self.project,
            location=self.region,
            name=self.service.name,
            role="roles/run.invoker",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
