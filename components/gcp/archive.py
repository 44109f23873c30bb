"""The raw archive on GCP: a Cloud Storage subscription writes every event, as it
arrived, into a bucket of its own.

No job runs it: Pub/Sub writes Avro files with each message's id, publish
time and attributes (``write_metadata``) under ``raw/YYYY/MM/DD/hh/``
(arrival hour, UTC), one file per ``archive.flush_seconds`` or
``archive.flush_mb``. The bucket is private (public access prevention,
uniform access), encrypted with the chain's key when one is set, moves
files to Coldline after 30 days and deletes them after
``archive.retention_days``. The Pub/Sub service agent may create objects
and read the bucket's metadata there, nothing else; readers are granted
with ``grant_read`` (the batch job). ``pipeline_code.streams.pubsub.archive_to_raw``
reads the records back.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.ingest import Ingest, seconds
from components.gcp.storage import delete, move_to, private_bucket
from components.spec import ArchiveSpec, DeadLetterSpec, StreamSpec
from pipeline_code.streams.pubsub import ARCHIVE_HOUR_FORMAT

TYPE = "data-flow:gcp:Archive"
PREFIX = "raw/"


class Archive(pulumi.ComponentResource):
    """Every raw event in Cloud Storage, by arrival hour.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        project_number: The project's number: the Pub/Sub service agent's identity is built from it.
        region: Region of the regional resources.
        ingest: The ingest link whose topic is archived (its dead-letter topic takes what cannot be
            written).
        archive: ``data-flow:archive``: retention and file flushing.
        stream: ``data-flow:stream``: how long the subscription keeps what it has not written yet.
        dead_letters: ``data-flow:dead_letters``: delivery attempts before a message is set aside.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    bucket: gcp.storage.Bucket
    subscription: gcp.pubsub.Subscription
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        project_number: pulumi.Input[str],
        region: str,
        ingest: Ingest,
        archive: ArchiveSpec,
        stream: StreamSpec,
        dead_letters: DeadLetterSpec,
        labels: dict[str, str],
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        rules = [move_to("COLDLINE", 30)]
        if archive.retention_days is not None:
            rules.append(delete(archive.retention_days))
        self.bucket = private_bucket(
            self,
            f"{name}-raw",
            project=project,
            region=region,
            labels=labels,
            rules=rules,
            versioned=False,
            kms_key_name=kms_key_name,
        )
        agent = pulumi.Output.concat(
            "serviceAccount:service-", project_number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        self.agent_grants = [
            gcp.storage.BucketIAMMember(
                f"{name}-agent-{verb}",
                bucket=self.bucket.name,
                role=role,
                member=agent,
                opts=child,
            )
            for verb, role in (
                ("writes", "roles/storage.objectCreator"),
                ("reads-bucket", "roles/storage.legacyBucketReader"),
            )
        ]
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-subscription",
            project=project,
            topic=ingest.topic.id,
            ack_deadline_seconds=300,
            message_retention_duration=seconds(stream.retention_hours * 3600),
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            cloud_storage_config=gcp.pubsub.SubscriptionCloudStorageConfigArgs(
                bucket=self.bucket.name,
                filename_prefix=PREFIX,
                filename_datetime_format=ARCHIVE_HOUR_FORMAT,
                filename_suffix=".avro",
                max_duration=seconds(archive.flush_seconds),
                max_bytes=archive.flush_mb * 1024 * 1024,
                avro_config=gcp.pubsub.SubscriptionCloudStorageConfigAvroConfigArgs(write_metadata=True),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=ingest.dead_letter_topic.id,
                max_delivery_attempts=dead_letters.max_delivery_attempts,
            ),
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.agent_grants),
        )
        self.agent_forwards = gcp.pubsub.SubscriptionIAMMember(
            f"{name}-agent-forwards",
            project=project,
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=agent,
            opts=child,
        )
        self.location = self.bucket.name.apply(lambda b: f"gs://{b}/{PREFIX}")
        self.alert_targets: dict[str, pulumi.Input[str]] = {"subscription": self.subscription.name}
        self.register_outputs({"bucket": self.bucket.name, "location": self.location})

    def grant_read(self, grantee: str, member: pulumi.Input[str]) -> gcp.storage.BucketIAMMember:
        """Let ``member`` list and read the archived files (a batch job, a replay)."""
        return gcp.storage.BucketIAMMember(
            f"{self.name}-{grantee}-reads",
            bucket=self.bucket.name,
            role="roles/storage.objectViewer",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
