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

A replay is the same template launched in batch with ``replay`` among its
parameters (``pipeline_code/beam/replay_job.py``), on demand, as its own
service account (``replay_service_account``): read on the archive bucket
(``Archive.grant_read``), the warehouse's write grant, read on the tables
and views its lookups and commit read, its own prefix of the staging
bucket's objects (``replay/``), the image, and the same two project roles;
nothing of Pub/Sub::

    gcloud dataflow flex-template run replay-$(date +%Y%m%d%H%M%S) --region REGION \
        --template-file-gcs-location gs://STAGING/templates/data-flow-streaming-chain.json \
        --service-account-email REPLAY_SA --temp-location gs://STAGING/replay/temp \
        --parameters replay=archive,replay_from=2026-11-01,replay_to=2026-11-02,\
archive_uri=gs://ARCHIVE/raw/,output_dataset=PROJECT:DATASET,replay_staging=gs://STAGING/replay/rows
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.gcp.archive import Archive
from components.gcp.ingest import Ingest
from components.gcp.storage import delete, private_bucket
from components.gcp.warehouse import Warehouse
from components.spec import ProcessingSpec
from pipeline_code.host import job_arguments

TYPE = "data-flow:gcp:Processing"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "pipeline_code" / "dataflow"
WORKER_PROJECT_ROLES = ("roles/dataflow.worker", "roles/bigquery.jobUser")
TEMPLATE_OBJECT = "templates/data-flow-streaming-chain.json"
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
        archive: The archive link a replay reads (through its grant verbs).
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
    replay_service_account: gcp.serviceaccount.Account
    job: gcp.dataflow.FlexTemplateJob

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        ingest: Ingest,
        warehouse: Warehouse,
        archive: Archive,
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
            name=TEMPLATE_OBJECT,
            content=template_spec(image),
            content_type="application/json",
            opts=child,
        )
        self.service_account, member = self._account(project, f"{name}-worker", "Data-Flow Dataflow workers")
        self.grants: list[pulumi.Resource] = [
            *self._worker_grants(project, f"{name}-worker", member, image),
            gcp.storage.BucketIAMMember(
                f"{name}-worker-uses-staging",
                bucket=self.bucket.name,
                role="roles/storage.objectAdmin",
                member=member,
                opts=child,
            ),
            *ingest.grant_consume("processing", member),
            *warehouse.grant_write("processing", member),
            # The history lookup reads events and the user_features view (and the table behind it).
            *self._lookup_reads(warehouse, "processing", member),
        ]
        self.replay_service_account, replay = self._account(
            project, f"{name}-replay", "Data-Flow replays (batch Dataflow)"
        )
        self.replay_grants: list[pulumi.Resource] = [
            *self._worker_grants(project, f"{name}-replay", replay, image),
            # Its own prefix: temp files and the rows it stages for its one commit.
            gcp.storage.BucketIAMMember(
                f"{name}-replay-uses-staging",
                bucket=self.bucket.name,
                role="roles/storage.objectAdmin",
                member=replay,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="replay-prefix",
                    description="Only objects under replay/ (and the template it is launched from).",
                    expression=self.bucket.name.apply(
                        lambda b: (
                            f'resource.name.startsWith("projects/_/buckets/{b}/objects/replay/") || '
                            f'resource.name == "projects/_/buckets/{b}/objects/{TEMPLATE_OBJECT}"'
                        )
                    ),
                ),
                opts=child,
            ),
            archive.grant_read("replay", replay),
            *warehouse.grant_write("replay", replay),
            *self._lookup_reads(warehouse, "replay", replay),
            # The commit reads the dead_letters view: what is shown, what a re-run resolves.
            warehouse.views["dead_letters"].grant_read("replay", replay),
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
                "replay_service_account": self.replay_service_account.email,
            }
        )

    def _account(self, project: str, name: str, display: str):
        """A service account and its IAM member string."""
        account = gcp.serviceaccount.Account(
            name,
            project=project,
            account_id=name[:30],
            display_name=display,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return account, account.email.apply(lambda e: f"serviceAccount:{e}")

    def _worker_grants(
        self, project: str, name: str, member: pulumi.Input[str], image: str
    ) -> list[pulumi.Resource]:
        """What any Dataflow worker of the link needs: the two project-level
        roles and a pull of the image."""
        return [
            *(
                gcp.projects.IAMMember(
                    f"{name}-{role.split('/')[1].replace('.', '-').lower()}",
                    project=project,
                    role=role,
                    member=member,
                    opts=pulumi.ResourceOptions(parent=self),
                )
                for role in WORKER_PROJECT_ROLES
            ),
            grant_image_pull(self, f"{name}-pulls-image", image, member),
        ]

    @staticmethod
    def _lookup_reads(warehouse: Warehouse, grantee: str, member: pulumi.Input[str]) -> list[pulumi.Resource]:
        """The history lookup reads events and the user_features view (and the table behind it)."""
        return [
            warehouse.tables["events"].grant_read(grantee, member),
            warehouse.views["user_features"].grant_read(grantee, member),
            warehouse.tables["user_features_changes"].grant_read(grantee, member),
        ]
