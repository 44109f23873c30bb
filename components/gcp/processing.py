"""Processing on GCP: the shared Beam pipeline as a streaming Dataflow Flex
Template job.

Creates the staging bucket (uniform access, public access prevention
enforced, versioned, optional CMEK), writes the template spec into it
(pointing at the image built from ``pipeline_code/dataflow/Dockerfile``),
a service account the workers run as, and the job: streaming engine,
private worker IPs, autoscaling between the spec's bounds, drained (not
cancelled) on delete so in-flight events are written first.

The service account gets only what the job touches: subscribe on the
pipeline's subscription, insert and read on the warehouse's tables,
object access on its own bucket, read on the image's repository, and the
two roles that exist only at project level (``dataflow.worker`` to run as a
worker, ``bigquery.jobUser`` to run the history lookups).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.gcp.ingest import Ingest
from components.gcp.storage import delete, private_bucket
from components.gcp.warehouse import Warehouse
from components.spec import ProcessingSpec
from pipeline_code.host import job_arguments

TYPE = "data-flow:gcp:Processing"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "pipeline_code" / "dataflow"
WORKER_PROJECT_ROLES = ("roles/dataflow.worker", "roles/bigquery.jobUser")
_IMAGE = re.compile(r"(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/.+")


def template_metadata() -> dict:
    """The Flex Template's metadata (its parameters), from ``pipeline_code/dataflow``."""
    return json.loads((TEMPLATE_DIR / "metadata.json").read_text(encoding="utf-8"))


def template_spec(image: str) -> str:
    """The spec file a Flex Template job is launched from."""
    spec = {"image": image, "sdkInfo": {"language": "PYTHON"}, "metadata": template_metadata()}
    return json.dumps(spec, indent=2, sort_keys=True)


def job_parameters(subscription: str, dataset: str, processing: ProcessingSpec) -> dict[str, str]:
    """The job's pipeline flags. Dataflow takes strings only."""
    settings = {k.removeprefix("--"): v for k, v in job_arguments(processing.settings()).items()}
    return {"input_subscription": subscription, "output_dataset": dataset, **settings}


def image_repository(image: str) -> dict[str, str]:
    """``REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG`` -> its repository's parts."""
    match = _IMAGE.fullmatch(image)
    if not match:
        raise ValueError(
            f"image {image!r} is not in Artifact Registry (REGION-docker.pkg.dev/PROJECT/REPO/...)"
        )
    return match.groupdict()


def grant_image_pull(
    owner: pulumi.Resource, name: str, image: str, member: pulumi.Input[str]
) -> gcp.artifactregistry.RepositoryIamMember:
    """Let ``member`` pull from the one repository holding ``image``."""
    repo = image_repository(image)
    return gcp.artifactregistry.RepositoryIamMember(
        name,
        project=repo["project"],
        location=repo["location"],
        repository=repo["repository"],
        role="roles/artifactregistry.reader",
        member=member,
        opts=pulumi.ResourceOptions(parent=owner),
    )


class Processing(pulumi.ComponentResource):
    """The streaming Dataflow job and what it needs to run.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        warehouse: The warehouse link the job writes to (through its grant verbs).
        processing: ``data-flow:processing``: micro-batch, windows, shards, workers, retries
            (``ProcessingSpec.settings()`` becomes the job's arguments).
        image: The Flex Template image (``pipeline_code/dataflow/Dockerfile``) in Artifact Registry.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        subnetwork: Subnetwork the workers join (private IPs only). Default: None, the default network.
        machine_type: Worker machine type. Default: ``n2-standard-2``.
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    bucket: gcp.storage.Bucket
    service_account: gcp.serviceaccount.Account
    job: gcp.dataflow.FlexTemplateJob

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        ingest: Ingest,
        warehouse: Warehouse,
        processing: ProcessingSpec,
        image: str,
        labels: dict[str, str],
        subnetwork: str | None = None,
        machine_type: str = "n2-standard-2",
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image_repository(image)  # fail here, naming the image, not at launch

        # Staged and temp files are scratch; old template spec versions too.
        self.bucket = private_bucket(
            self,
            f"{name}-staging",
            project=project,
            region=region,
            labels=labels,
            rules=[delete(30, archived=True), delete(7, prefixes=["temp/", "staging/"])],
            versioned=True,
            kms_key_name=kms_key_name,
        )
        self.template = gcp.storage.BucketObject(
            f"{name}-template",
            bucket=self.bucket.name,
            name="templates/data-flow-streaming-chain.json",
            content=template_spec(image),
            content_type="application/json",
            opts=child,
        )
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-worker",
            project=project,
            account_id=f"{name}-worker"[:30],
            display_name="Data-Flow Dataflow workers",
            opts=child,
        )
        member = self.service_account.email.apply(lambda e: f"serviceAccount:{e}")
        self.grants: list[pulumi.Resource] = [
            gcp.projects.IAMMember(
                f"{name}-worker-{role.split('/')[1].replace('.', '-').lower()}",
                project=project,
                role=role,
                member=member,
                opts=child,
            )
            for role in WORKER_PROJECT_ROLES
        ]
        self.grants.append(
            gcp.storage.BucketIAMMember(
                f"{name}-worker-uses-staging",
                bucket=self.bucket.name,
                role="roles/storage.objectAdmin",
                member=member,
                opts=child,
            )
        )
        self.grants.append(grant_image_pull(self, f"{name}-worker-pulls-image", image, member))
        self.grants += ingest.grant_consume("processing", member)
        self.grants += warehouse.grant_write("processing", member)
        self.grants += [
            # The history lookup reads events and the user_features view (and the table behind it).
            warehouse.tables["events"].grant_read("processing", member),
            warehouse.views["user_features"].grant_read("processing", member),
            warehouse.tables["user_features_changes"].grant_read("processing", member),
        ]

        self.parameters = pulumi.Output.all(ingest.subscription.id, warehouse.dataset.dataset_id).apply(
            lambda ids: job_parameters(ids[0], f"{project}:{ids[1]}", processing)
        )
        self.job = gcp.dataflow.FlexTemplateJob(
            f"{name}-job",
            project=project,
            region=region,
            container_spec_gcs_path=pulumi.Output.concat("gs://", self.bucket.name, "/", self.template.name),
            parameters=self.parameters,
            sdk_container_image=image,
            service_account_email=self.service_account.email,
            temp_location=pulumi.Output.concat("gs://", self.bucket.name, "/temp"),
            staging_location=pulumi.Output.concat("gs://", self.bucket.name, "/staging"),
            subnetwork=subnetwork,
            ip_configuration="WORKER_IP_PRIVATE",
            enable_streaming_engine=True,
            autoscaling_algorithm="THROUGHPUT_BASED",
            num_workers=processing.min_workers,
            max_workers=processing.max_workers,
            machine_type=machine_type,
            kms_key_name=kms_key_name,
            # Drain: stop reading, finish and write what is in flight, then stop.
            on_delete="drain",
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
        )
        # What to watch: Monitoring takes the link and reads these (the Dataflow job's name).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "job": self.job.name,
        }
        self.register_outputs(
            {
                "job_id": self.job.job_id,
                "bucket": self.bucket.url,
                "service_account": self.service_account.email,
            }
        )
