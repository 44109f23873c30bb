"""Secure-by-default building blocks the AWS components share.

- ``policy(statements)``: an IAM policy document (JSON) from statements that
  always name their resources. ``Resource: "*"`` is refused unless every
  action is one AWS does not scope to a resource (``UNSCOPED_ACTIONS``);
  wildcard actions are always refused.
- ``grant(...)``: an inline policy on a role, the body of every ``grant_*`` verb.
- ``service_role(...)``: a role only one AWS service may assume.
- ``PrivateBucket``: an S3 bucket that is KMS-encrypted, versioned, owner-only
  (ACLs off, every public access blocked) and refuses requests without TLS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

# The policy pack owns what a statement may grant.
from components.policy.rules import statement_problem

Statement = dict[str, Any]


class PolicyError(ValueError):
    """A statement would grant more than the chain allows."""


def statement(actions: Sequence[str], resources: Sequence[Any], condition: dict | None = None) -> Statement:
    s: Statement = {"Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
    if condition:
        s["Condition"] = condition
    return s


def check_statement(s: Statement) -> None:
    """Refuse a statement the policy pack would refuse (the same rule)."""
    problem = statement_problem(s)
    if problem:
        raise PolicyError(problem)


def policy(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """Statements (resources may be Outputs) -> the policy JSON."""

    def render(resolved: list[Statement]) -> str:
        for s in resolved:
            check_statement(s)
        return json.dumps({"Version": "2012-10-17", "Statement": resolved}, sort_keys=True)

    return pulumi.Output.from_input(list(statements)).apply(render)


def grant(
    name: str, role: aws.iam.Role, statements: Sequence[Statement], parent: pulumi.Resource
) -> aws.iam.RolePolicy:
    """Attach ``statements`` to ``role`` as one inline policy."""
    return aws.iam.RolePolicy(
        name, role=role.id, policy=policy(statements), opts=pulumi.ResourceOptions(parent=parent)
    )


def service_role(
    name: str, service: str | list[str], tags: dict[str, str], parent: pulumi.Resource
) -> aws.iam.Role:
    """A role only ``service`` (e.g. ``glue.amazonaws.com``) may assume, with no policy yet."""
    services = [service] if isinstance(service, str) else service
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": services}, "Action": "sts:AssumeRole"}],
    }
    return aws.iam.Role(
        name,
        assume_role_policy=json.dumps(trust, sort_keys=True),
        max_session_duration=3600,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def kms_statements(key_arn: pulumi.Input[str], write: bool = True) -> Statement:
    actions = ["kms:Decrypt", "kms:DescribeKey"]
    if write:
        actions += ["kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    return statement(actions, [key_arn])


class PrivateBucket(pulumi.ComponentResource):
    """An S3 bucket nobody outside the account can reach, encrypted with the chain's key."""

    bucket: aws.s3.Bucket

    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        expire_days: int | None = None,
        expire_prefixes: dict[str, int] | None = None,
        force_destroy: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("data-flow:aws:PrivateBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(name, force_destroy=force_destroy, tags=tags, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-no-public",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": kms_key_arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        rules: list[dict[str, Any]] = [
            {
                "id": "abort-incomplete-uploads",
                "status": "Enabled",
                "filter": {},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                "noncurrent_version_expiration": {"noncurrent_days": 30},
            }
        ]
        if expire_days is not None:
            rules.append(
                {"id": "expire", "status": "Enabled", "filter": {}, "expiration": {"days": expire_days}}
            )
        for prefix, days in sorted((expire_prefixes or {}).items()):
            rules.append(
                {
                    "id": f"expire-{prefix.strip('/').replace('/', '-')}",
                    "status": "Enabled",
                    "filter": {"prefix": prefix},
                    "expiration": {"days": days},
                }
            )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id, rules=rules, opts=child
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "DenyInsecureTransport",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": [arn, f"{arn}/*"],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ],
                    },
                    sort_keys=True,
                )
            ),
            opts=child,
        )
        self.register_outputs({"bucket": self.bucket.id})

    def objects(self, prefix: str = "") -> pulumi.Output[str]:
        """The ARN pattern of the objects under ``prefix``."""
        return self.bucket.arn.apply(lambda arn: f"{arn}/{prefix}*")

    def uri(self, prefix: str = "") -> pulumi.Output[str]:
        return self.bucket.bucket.apply(lambda b: f"s3://{b}/{prefix}")


def encrypted_log_group(
    name: str,
    physical: str,
    *,
    kms_key_arn: pulumi.Input[str],
    tags: dict[str, str],
    retention_days: int,
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogGroup:
    """A log group created ahead of its writer, so its retention and key are ours."""
    return aws.cloudwatch.LogGroup(
        name,
        name=physical,
        retention_in_days=retention_days,
        kms_key_id=kms_key_arn,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def log_write(group: aws.cloudwatch.LogGroup) -> Statement:
    """Writing to that one log group's streams."""
    return statement(["logs:CreateLogStream", "logs:PutLogEvents"], [group.arn.apply(lambda a: f"{a}:*")])
