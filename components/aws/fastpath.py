"""The fast path on AWS: a DynamoDB table of users' recent activity, and the
Lambda that keeps it, behind a Kinesis event source mapping.

``UserState`` is the store: on-demand (pay per request), encrypted with the
chain's key, TTL on ``expires_at`` (``fast_path.ttl_days`` after a user's
last event), reachable only through IAM (DynamoDB has no public data plane
to close; a VPC gateway endpoint keeps in-VPC callers off the internet).
Exactly two verbs touch it: ``grant_write`` (the function: read and
conditional put) and ``grant_read`` (the API: get).

``FastPath`` is the function (the serving image, handler
``pipeline_code.fastpath.aws_lambda.handler``) and its event source mapping
on the chain's stream: from the newest records, batches of
``fast_path.batch_size`` within ``batch_window_seconds``, partial batch
responses (``ReportBatchItemFailures``), a failing batch bisected and
retried a bounded number of times, records older than
``max_event_age_seconds`` skipped (no longer fresh), and what is given up
described in the chain's dead-letter bucket (the S3 on-failure destination).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.ingest import Ingest
from components.aws.lambdas import image_function
from components.aws.security import grant, kms_statements, statement
from components.spec import FastPathSpec
from pipeline_code import host
from pipeline_code.userstate.dynamodb import KEY, TTL_ATTRIBUTE

STORE_TYPE = "data-flow:aws:UserState"
FUNCTION_TYPE = "data-flow:aws:FastPath"
HANDLER = "pipeline_code.fastpath.aws_lambda.handler"
RETRIES = 5


class UserState(pulumi.ComponentResource):
    """The online store of each user's recent activity: one DynamoDB table.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    table: aws.dynamodb.Table
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(STORE_TYPE, name, None, opts)
        self.name = name
        self.kms_key_arn = kms_key_arn
        self.table = aws.dynamodb.Table(
            f"{name}-table",
            billing_mode="PAY_PER_REQUEST",
            hash_key=KEY,
            attributes=[{"name": KEY, "type": "S"}],
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": kms_key_arn},
            # Derived state: the fast path rebuilds it from the stream, so no
            # point-in-time recovery is paid for.
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.location = self.table.name.apply(lambda t: host.user_state("dynamodb", t))
        self.alert_targets: dict[str, pulumi.Input[str]] = {"table": self.table.name}
        self.register_outputs({"table": self.table.name, "location": self.location})

    def grant_write(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` read and conditionally replace users' states (the fast path)."""
        return grant(
            f"{self.name}-write-{grantee}",
            role,
            [
                statement(["dynamodb:GetItem", "dynamodb:PutItem"], [self.table.arn]),
                kms_statements(self.kms_key_arn),
            ],
            self,
        )

    def grant_read(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` read one user's state at a time (the API)."""
        return grant(
            f"{self.name}-read-{grantee}",
            role,
            [
                statement(["dynamodb:GetItem"], [self.table.arn]),
                kms_statements(self.kms_key_arn, write=False),
            ],
            self,
        )


class FastPath(pulumi.ComponentResource):
    """The stream function that applies each event to its user's state.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        ingest: The ingest link whose stream the function consumes (``grant_consume``); its
            dead-letter bucket keeps what the function gives up.
        user_state: The store the function writes (``grant_write``).
        fast_path: ``data-flow:fast_path``: TTL, batching, event age, memory and instance bounds.
        image: The serving image in ECR (run through ``awslambdaric``).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        log_retention_days: Days the function's log group keeps entries. Default: 30.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    function: aws.lambda_.Function
    mapping: aws.lambda_.EventSourceMapping

    def __init__(
        self,
        name: str,
        *,
        ingest: Ingest,
        user_state: UserState,
        fast_path: FastPathSpec,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(FUNCTION_TYPE, name, None, opts)
        deployed = image_function(
            self,
            name,
            function_name=f"{name}-fresh",
            handler=HANDLER,
            image=image,
            memory_mb=fast_path.memory_mb,
            timeout_s=60,
            max_concurrency=fast_path.max_instances,
            environment={
                host.ENV_USER_STATE: user_state.location,
                host.ENV_USER_STATE_TTL_DAYS: str(fast_path.ttl_days),
            },
            kms_key_arn=kms_key_arn,
            tags=tags,
            public=False,
            runtime_policy=f"{name}-function-runtime",
            role_grants=[
                lambda role: ingest.grant_consume("fast-path", role),
                lambda role: user_state.grant_write("fast-path", role),
            ],
            log_retention_days=log_retention_days,
            url=False,
        )
        self.function, self.role, self.log_group = deployed.function, deployed.role, deployed.log_group
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-stream",
            event_source_arn=ingest.stream.arn,
            function_name=self.function.arn,
            starting_position="LATEST",
            batch_size=fast_path.batch_size,
            maximum_batching_window_in_seconds=fast_path.batch_window_seconds,
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=RETRIES,
            maximum_record_age_in_seconds=fast_path.max_event_age_seconds,
            destination_config={"on_failure": {"destination_arn": ingest.dead_letters.bucket.arn}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alert_targets: dict[str, pulumi.Input[str]] = {"function": self.function.name}
        self.register_outputs({"function": self.function.name})
