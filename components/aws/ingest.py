"""Ingest on AWS: a Kinesis data stream, encrypted with the chain's key, and
an S3 dead-letter location for micro-batches the job could not commit.

Secure by default: the stream is KMS-encrypted, its retention comes from the
spec, and nothing may write or read it until granted: ``grant_publish`` for
producers (the collector, a tracker's backend), ``grant_read`` for the job.
Capacity is on-demand unless the stack sets ``aws.kinesis_shards``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.security import PrivateBucket, grant, kms_statements, statement
from components.spec import DeadLetterSpec, StreamSpec

TYPE = "data-flow:aws:Ingest"

PUBLISH_ACTIONS = ["kinesis:DescribeStreamSummary", "kinesis:PutRecord", "kinesis:PutRecords"]
READ_ACTIONS = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:SubscribeToShard",
]


class Ingest(pulumi.ComponentResource):
    """The stream events arrive on, and where rejected batches are kept.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        stream: ``data-flow:stream``: retention, expected throughput, ack deadline, schema enforcement.
        dead_letters: ``data-flow:dead_letters``: delivery attempts, retention of set-aside events and
            of the dead-letter table.
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        shards: Kinesis shards. Default: None, on-demand capacity.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    stream: aws.kinesis.Stream
    dead_letters: PrivateBucket

    def __init__(
        self,
        name: str,
        *,
        stream: StreamSpec,
        dead_letters: DeadLetterSpec,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        shards: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.kms_key_arn = kms_key_arn
        child = pulumi.ResourceOptions(parent=self)
        mode = {"stream_mode": "PROVISIONED"} if shards else {"stream_mode": "ON_DEMAND"}
        self.stream = aws.kinesis.Stream(
            f"{name}-stream",
            name=f"{name}-events",
            retention_period=stream.retention_hours,
            shard_count=shards,
            stream_mode_details=mode,
            encryption_type="KMS",
            kms_key_id=kms_key_arn,
            # Per-shard metrics feed the iterator-age alarm per shard.
            shard_level_metrics=["IncomingRecords", "IteratorAgeMilliseconds", "OutgoingRecords"],
            tags=tags,
            opts=child,
        )
        self.dead_letters = PrivateBucket(
            f"{name}-dead-letters",
            kms_key_arn=kms_key_arn,
            tags=tags,
            expire_days=dead_letters.table_retention_days,
            opts=child,
        )
        # What to watch: Monitoring takes the link and reads these (CloudWatch dimension values).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "stream": self.stream.name,
        }
        self.register_outputs({"stream": self.stream.arn, "dead_letters": self.dead_letters.bucket.id})

    def grant_publish(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` put records on the stream (and encrypt them)."""
        return grant(
            f"{self.name}-publish-{grantee}",
            role,
            [statement(PUBLISH_ACTIONS, [self.stream.arn]), kms_statements(self.kms_key_arn)],
            self,
        )

    def grant_consume(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` read the stream and write rejected batches to the dead-letter bucket
        (listing it too: Lambda's S3 on-failure destination checks the bucket)."""
        return grant(
            f"{self.name}-read-{grantee}",
            role,
            [
                statement(READ_ACTIONS, [self.stream.arn]),
                statement(["s3:ListBucket"], [self.dead_letters.bucket.arn]),
                statement(["s3:PutObject"], [self.dead_letters.objects()]),
                kms_statements(self.kms_key_arn),
            ],
            self,
        )

    def grant_read_dead_letters(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` list and read the rejected batches (to replay them)."""
        return grant(
            f"{self.name}-read-dead-letters-{grantee}",
            role,
            [
                statement(["s3:ListBucket"], [self.dead_letters.bucket.arn]),
                statement(["s3:GetObject"], [self.dead_letters.objects()]),
                kms_statements(self.kms_key_arn, write=False),
            ],
            self,
        )
