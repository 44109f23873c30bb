"""The whole chain on AWS, from one ``ChainSpec``.

    trackers -> Lambda URL (Collector) -> Kinesis (Ingest) -> Glue streaming (Processing)
        -> Redshift Serverless (Warehouse) -> SageMaker (Model) -> Lambda (Serve), watched by Monitoring
    Kinesis -> Lambda (FastPath) -> DynamoDB (UserState) -> read by Serve
    Kinesis -> Firehose -> S3 (Archive)
    Redshift -> UNLOAD -> SageMaker training (Training) -> gated blue/green rollout to the endpoint

Each link is its own component and can be used alone; this one wires them:
the job reads the stream Ingest created and merges into the tables
Warehouse created, the API calls the endpoint Model created, and each role
is granted exactly those resources. One KMS key (created with rotation,
unless ``aws.kms_key_arn`` names one) encrypts every store, log and topic.
``outputs()`` is the stack's contract for other stacks (the same names on
every cloud).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components.aws.archive import Archive
from components.aws.collector import Collector
from components.aws.fastpath import FastPath, UserState
from components.aws.ingest import Ingest
from components.aws.model import Model
from components.aws.monitoring import Monitoring
from components.aws.processing import Processing
from components.aws.serve import Serve
from components.aws.training import Training
from components.aws.warehouse import Warehouse
from components.outputs import ChainOutputs
from components.spec import ChainSpec, SpecError

TYPE = "data-flow:aws:Chain"
KEY_ACTIONS = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
]


def key_policy(account: str, region: str) -> str:
    """The chain key's policy: the account administers it (IAM policies then
    grant its use, as every ``grant_*`` does); CloudWatch Logs may use it for
    this account's log groups, and CloudWatch alarms for the encrypted topic."""
    log_groups = f"arn:aws:logs:{region}:{account}:log-group:*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "LogsEncryptThisAccountsGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": KEY_ACTIONS,
                    "Resource": "*",
                    "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
                },
                {
                    "Sid": "AlarmsPublishToTheEncryptedTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                },
            ],
        },
        sort_keys=True,
    )


class AwsChain(pulumi.ComponentResource):
    """Every link of the chain on AWS.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        spec: The validated chain spec (``components.spec.load_spec``); its ``aws`` section is required.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    def __init__(self, name: str, spec: ChainSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        if spec.cloud != "aws" or spec.aws is None:
            raise SpecError(
                f"AwsChain needs data-flow:cloud 'aws' and a data-flow:aws section (got {spec.cloud!r})"
            )
        super().__init__(TYPE, name, None, opts)
        a = spec.aws
        tags = spec.house_labels()
        child = pulumi.ResourceOptions(parent=self)

        self.key: aws.kms.Key | None = None
        if a.kms_key_arn:
            key_arn: pulumi.Input[str] = a.kms_key_arn
        else:
            account = aws.get_caller_identity_output().account_id
            self.key = aws.kms.Key(
                f"{name}-key",
                description=f"{name}: the chain's stores, logs and topics",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=account.apply(lambda acct: key_policy(acct, a.region)),
                tags=tags,
                opts=child,
            )
            aws.kms.Alias(
                f"{name}-key-alias", name=f"alias/{name}", target_key_id=self.key.key_id, opts=child
            )
            key_arn = self.key.arn

        self.ingest = Ingest(
            f"{name}-ingest",
            stream=spec.stream,
            dead_letters=spec.dead_letters,
            kms_key_arn=key_arn,
            tags=tags,
            shards=a.kinesis_shards,
            opts=child,
        )
        self.archive = Archive(
            f"{name}-archive",
            ingest=self.ingest,
            archive=spec.archive,
            image=a.api_image,
            kms_key_arn=key_arn,
            tags=tags,
            opts=child,
        )
        self.warehouse = Warehouse(
            f"{name}-warehouse",
            warehouse=spec.warehouse,
            vpc_id=a.vpc_id,
            subnet_ids=a.subnet_ids,
            kms_key_arn=key_arn,
            tags=tags,
            base_rpus=a.redshift_base_rpus,
            opts=child,
        )
        self.processing = Processing(
            f"{name}-process",
            region=a.region,
            ingest=self.ingest,
            warehouse=self.warehouse,
            archive=self.archive,
            processing=spec.processing,
            kms_key_arn=key_arn,
            tags=tags,
            connector_jar_url=a.kinesis_connector_jar_url,
            worker_type=a.glue_worker_type,
            opts=child,
        )
        self.model = Model(
            f"{name}-ml",
            model=spec.model,
            image=a.model_server_image,
            artifact_uri=a.model_artifact_uri,
            kms_key_arn=key_arn,
            tags=tags,
            subnet_ids=a.subnet_ids,
            security_group_id=self.warehouse.client_security_group.id,
            opts=child,
        )
        self.training = Training(
            f"{name}-train",
            region=a.region,
            model_spec=spec.model,
            alerts=spec.alerts,
            warehouse=self.warehouse,
            model=self.model,
            image=a.training_image,
            kms_key_arn=key_arn,
            tags=tags,
            opts=child,
        )
        self.user_state = UserState(f"{name}-state", kms_key_arn=key_arn, tags=tags, opts=child)
        self.fast_path = FastPath(
            f"{name}-fast",
            ingest=self.ingest,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            image=a.api_image,
            kms_key_arn=key_arn,
            tags=tags,
            opts=child,
        )
        self.serve = Serve(
            f"{name}-serve",
            model=self.model,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            serve=spec.serve,
            image=a.api_image,
            kms_key_arn=key_arn,
            tags=tags,
            opts=child,
        )
        self.collector = None
        if spec.collector.enabled:
            self.collector = Collector(
                f"{name}-collector",
                ingest=self.ingest,
                collector=spec.collector,
                image=a.api_image,
                kms_key_arn=key_arn,
                tags=tags,
                opts=child,
            )
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            region=a.region,
            alerts=spec.alerts,
            ingest=self.ingest,
            processing=self.processing,
            model=self.model,
            fast_path=self.fast_path,
            user_state=self.user_state,
            archive=self.archive,
            training=self.training,
            kms_key_arn=key_arn,
            tags=tags,
            opts=child,
        )
        self.register_outputs(dict(self.outputs()))

    def outputs(self) -> ChainOutputs:
        """What other stacks read (``pulumi.StackReference``); same keys on every cloud."""
        return ChainOutputs(
            ingest_endpoint=self.ingest.stream.arn,
            dead_letter_location=self.ingest.dead_letters.uri(),
            warehouse_location=pulumi.Output.concat(
                self.warehouse.workgroup.workgroup_name, "/", self.warehouse.database
            ),
            processing_job=self.processing.job.name,
            model_endpoint=self.model.endpoint.arn,
            api_url=self.serve.url,
            collector_url=self.collector.url if self.collector else pulumi.Output.from_input(""),
            user_state_location=self.user_state.location,
            archive_location=self.archive.location,
            model_registry_location=self.training.location,
        )
