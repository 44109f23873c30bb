"""The raw archive on AWS: Kinesis Data Firehose delivers every event from the
stream to a private S3 bucket, GZIP objects by arrival hour.

A transform Lambda (the serving image, ``pipeline_code.streams.firehose.handler``)
writes each record as one line with its sequence number and arrival time,
so a replay finds the offsets the Glue job stored; Firehose buffers
``archive.flush_seconds`` or ``archive.flush_mb``, compresses and writes
``raw/YYYY/MM/DD/HH/`` objects (and what it could not deliver under
``errors/``). The bucket is private and encrypted with the chain's key, as
is every object Firehose writes; it expires objects after
``archive.retention_days``. Firehose's role reads the stream
(``Ingest.grant_consume``), writes the bucket, invokes the transform and
writes its own log group; readers are granted with ``grant_read``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.ingest import Ingest
from components.aws.lambdas import image_function
from components.aws.security import (
    PrivateBucket,
    encrypted_log_group,
    grant,
    kms_statements,
    log_write,
    service_role,
    statement,
)
from components.spec import ArchiveSpec
from pipeline_code.streams import firehose

TYPE = "data-flow:aws:Archive"
PREFIX = "raw/"


class Archive(pulumi.ComponentResource):
    """Every raw event in S3, by arrival hour.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        ingest: The ingest link whose stream is archived (``grant_consume``).
        archive: ``data-flow:archive``: retention and buffering.
        image: The serving image in ECR (its transform runs through ``awslambdaric``).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        log_retention_days: Days the delivery and transform logs are kept. Default: 30.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    bucket: PrivateBucket
    delivery: aws.kinesis.FirehoseDeliveryStream
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        ingest: Ingest,
        archive: ArchiveSpec,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.kms_key_arn = kms_key_arn
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = PrivateBucket(
            f"{name}-raw", kms_key_arn=kms_key_arn, tags=tags, expire_days=archive.retention_days, opts=child
        )
        transform = image_function(
            self,
            f"{name}-transform",
            function_name=f"{name}-transform",
            handler=firehose.HANDLER,
            image=image,
            memory_mb=256,
            timeout_s=60,
            max_concurrency=5,
            environment={},
            kms_key_arn=kms_key_arn,
            tags=tags,
            public=False,
            runtime_policy=f"{name}-transform-runtime",
            log_retention_days=log_retention_days,
            url=False,
        )
        self.transform = transform.function
        self.log_group = encrypted_log_group(
            f"{name}-delivery-logs",
            f"/aws/kinesisfirehose/{name}",
            kms_key_arn=kms_key_arn,
            tags=tags,
            retention_days=log_retention_days,
            parent=self,
        )
        self.role = service_role(f"{name}-delivery", "firehose.amazonaws.com", tags, self)
        bucket = self.bucket.bucket
        grants = [
            ingest.grant_consume("archive", self.role),
            grant(
                f"{name}-delivery-writes",
                self.role,
                [
                    statement(
                        [
                            "s3:AbortMultipartUpload",
                            "s3:GetBucketLocation",
                            "s3:ListBucket",
                            "s3:ListBucketMultipartUploads",
                        ],
                        [bucket.arn],
                    ),
                    statement(["s3:GetObject", "s3:PutObject"], [self.bucket.objects()]),
                    statement(
                        ["lambda:GetFunctionConfiguration", "lambda:InvokeFunction"], [self.transform.arn]
                    ),
                    log_write(self.log_group),
                    kms_statements(kms_key_arn),
                ],
                self,
            ),
        ]
        self.delivery = aws.kinesis.FirehoseDeliveryStream(
            f"{name}-delivery",
            name=f"{name}-delivery",
            destination="extended_s3",
            kinesis_source_configuration={"kinesis_stream_arn": ingest.stream.arn, "role_arn": self.role.arn},
            extended_s3_configuration={
                "bucket_arn": bucket.arn,
                "role_arn": self.role.arn,
                "prefix": firehose.PREFIX,
                "error_output_prefix": firehose.ERROR_PREFIX,
                "buffering_interval": archive.flush_seconds,
                "buffering_size": archive.flush_mb,
                "compression_format": "GZIP",
                "file_extension": ".jsonl.gz",
                "kms_key_arn": kms_key_arn,
                "cloudwatch_logging_options": {
                    "enabled": True,
                    "log_group_name": self.log_group.name,
                    "log_stream_name": "S3Delivery",
                },
                "processing_configuration": {
                    "enabled": True,
                    "processors": [
                        {
                            "type": "Lambda",
                            "parameters": [
                                {"parameter_name": "LambdaArn", "parameter_value": self.transform.arn},
                                {"parameter_name": "BufferSizeInMBs", "parameter_value": "1"},
                                {"parameter_name": "BufferIntervalInSeconds", "parameter_value": "60"},
                            ],
                        }
                    ],
                },
            },
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        self.location = self.bucket.uri(PREFIX)
        self.alert_targets: dict[str, pulumi.Input[str]] = {"delivery": self.delivery.name}
        self.register_outputs({"bucket": bucket.bucket, "location": self.location})

    def grant_read(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` list and read the archived objects (a batch job, a replay)."""
        return grant(
            f"{self.name}-read-{grantee}",
            role,
            [
                statement(["s3:ListBucket"], [self.bucket.bucket.arn]),
                statement(["s3:GetObject"], [self.bucket.objects(PREFIX)]),
                kms_statements(self.kms_key_arn, write=False),
            ],
            self,
        )
