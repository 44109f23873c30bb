"""The serve link on GCP: the recommendation API on Cloud Run.

The API (``python -m pipeline_code.serving api``) answers
``GET /recommendations/{user_id}`` by calling the Vertex endpoint, with each
user's fresh items read from the fast path's Firestore database
(``USER_STATE``). It runs as its own service account, allowed to call that
endpoint and read that database, and nothing else.
Invocation is authenticated by default: only identities granted
``grant_invoke`` may call it; ``serve.public: true`` adds ``allUsers``, and
nothing else does.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.cloud_run import invoker, run_identity, run_service
from components.gcp.fastpath import UserState
from components.gcp.model import Model
from components.spec import FastPathSpec, ServeSpec
from pipeline_code import host

TYPE = "data-flow:gcp:Serve"


class Serve(pulumi.ComponentResource):
    """A Cloud Run v2 service running the recommendation API.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        user_state: The fast path's store, read once per request (``grant_read``).
        fast_path: ``data-flow:fast_path``: the read's time budget.
        serve: ``data-flow:serve``: instance bounds, memory and ``public`` (off: callers must be
            granted).
        image: The API image (the serving Dockerfile) in Artifact Registry.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

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
        user_state: UserState,
        fast_path: FastPathSpec,
        serve: ServeSpec,
        image: str,
        labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.project = project
        self.region = region
        self.service_account, member = run_identity(
            self,
            f"{name}-api",
            project=project,
            account_id=f"{name}-api",
            display_name="Data-Flow recommendation API",
        )
        self.service = run_service(
            self,
            f"{name}-api",
            project=project,
            region=region,
            identity=self.service_account,
            member=member,
            image=image,
            args=["api"],
            envs=[
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=host.ENV_MODEL_ENDPOINT, value=model.endpoint.id.apply(host.vertex_endpoint)
                ),
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=host.ENV_USER_STATE, value=user_state.location
                ),
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=host.ENV_USER_STATE_TIMEOUT_MS, value=str(fast_path.read_timeout_ms)
                ),
            ],
            memory_mb=serve.memory_mb,
            min_instances=serve.min_instances,
            max_instances=serve.max_instances,
            probe_path="/ping",
            labels=labels,
            pull_grant_name=f"{name}-api-pulls-image",
            grants=[model.grant_invoke("api", member), user_state.grant_read("api", member)],
        )
        self.url = self.service.uri
        self.public_invoker = None
        if serve.public:
            self.public_invoker = self.grant_invoke("public", "allUsers")
        self.register_outputs({"url": self.url, "service_account": self.service_account.email})

    def grant_invoke(self, grantee: str, member: pulumi.Input[str]) -> gcp.cloudrunv2.ServiceIamMember:
        """Let ``member`` call the API."""
        return invoker(
            self,
            f"{self.name}-{grantee}-invokes",
            self.service,
            project=self.project,
            region=self.region,
            member=member,
        )
