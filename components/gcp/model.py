"""The ML link on GCP: a Vertex AI endpoint serving the one model-server image.

The endpoint is created with Pulumi's own resource (private on a VPC network
when the spec says so, CMEK-encrypted when a key is configured); the model
upload and deployment go through ``VertexDeployment``, a dynamic provider
over the Vertex SDK. The model runs as its own service account, which may
read the model files' bucket and nothing else. Callers need
``grant_invoke``: nobody can call the endpoint by default.
"""

from __future__ import annotations

import zlib

import pulumi
import pulumi_gcp as gcp

from components.gcp.vertex import VertexDeployment
from components.spec import ModelSpec

TYPE = "data-flow:gcp:Model"
MACHINE_TYPES = {"small": "n2-standard-2", "medium": "n2-standard-4", "large": "n2-standard-8"}


def endpoint_id(project: str, name: str) -> str:
    """Vertex endpoint ids are numeric (at most 10 digits, no leading zero):
    a stable one per project and component name."""
    return str(1_000_000_000 + zlib.crc32(f"{project}/{name}".encode()) % 9_000_000_000)


def bucket_of(uri: str) -> str:
    """``gs://bucket/path`` -> ``bucket``."""
    if not uri.startswith("gs://") or len(uri) <= 5:
        raise ValueError(f"model artifact uri {uri!r} must be gs://BUCKET/PATH")
    return uri[5:].split("/", 1)[0]


class Model(pulumi.ComponentResource):
    """A Vertex AI endpoint with the recommender deployed on it.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        model: ``data-flow:model``: machine size, replica bounds, private serving.
        image: The model-server image in Artifact Registry (``pipeline_code/serving/Dockerfile``).
        artifact_uri: ``gs://`` folder of the model version to deploy.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        network: VPC network for a private endpoint (``model.private``). Default: None, a public
            endpoint with IAM.
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    endpoint: gcp.vertex.AiEndpoint
    deployment: VertexDeployment
    service_account: gcp.serviceaccount.Account

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        model: ModelSpec,
        image: str,
        artifact_uri: str,
        labels: dict[str, str],
        network: str | None = None,
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.project = project
        self.region = region
        child = pulumi.ResourceOptions(parent=self)
        if model.private and not network:
            raise ValueError(
                f"model.private is true but network is {network!r}; a private endpoint needs one"
            )
        self.endpoint = gcp.vertex.AiEndpoint(
            f"{name}-endpoint",
            project=project,
            location=region,
            name=endpoint_id(project, name),
            display_name=f"{name}-recommender",
            description="Data-Flow recommender (the one model-server image).",
            network=network if model.private else None,
            encryption_spec=(
                gcp.vertex.AiEndpointEncryptionSpecArgs(kms_key_name=kms_key_name) if kms_key_name else None
            ),
            labels=labels,
            opts=child,
        )
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-server",
            project=project,
            account_id=f"{name}-server"[:30],
            display_name="Data-Flow model server",
            opts=child,
        )
        server = self.service_account.email.apply(lambda e: f"serviceAccount:{e}")
        self.reads_model = gcp.storage.BucketIAMMember(
            f"{name}-server-reads-model",
            bucket=bucket_of(artifact_uri),
            role="roles/storage.objectViewer",
            member=server,
            opts=child,
        )
        self.image = image
        self.machine_type = MACHINE_TYPES[model.size]
        self.min_replicas, self.max_replicas = model.min_replicas, model.max_replicas
        self.deployment = VertexDeployment(
            f"{name}-deployment",
            project=project,
            location=region,
            endpoint_id=self.endpoint.id,
            image_uri=image,
            artifact_uri=artifact_uri,
            machine_type=MACHINE_TYPES[model.size],
            min_replicas=model.min_replicas,
            max_replicas=model.max_replicas,
            display_name=f"{name}-recommender",
            labels=labels,
            service_account=self.service_account.email,
            kms_key_name=kms_key_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.reads_model]),
        )
        # The registered model whose versions the training job's rollouts add.
        self.model_id = self.deployment.model_name.apply(lambda n: (n or "").rsplit("/", 1)[-1])
        # What to watch: Monitoring takes the link and reads these (the Vertex endpoint's id).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "endpoint": self.endpoint.name,
        }
        self.register_outputs(
            {"endpoint": self.endpoint.id, "deployed_model_id": self.deployment.deployed_model_id}
        )

    def grant_invoke(self, grantee: str, member: pulumi.Input[str]) -> gcp.vertex.AiEndpointIamMember:
        """Let ``member`` call this endpoint (and no other)."""
        return gcp.vertex.AiEndpointIamMember(
            f"{self.name}-{grantee}-predicts",
            project=self.project,
            location=self.region,
            endpoint=self.endpoint.name,
            role="roles/aiplatform.user",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
