"""The slow path on AWS: a scheduled export, a SageMaker training job that
gates, publishes and rolls out, and the model registry it keeps.

    EventBridge Scheduler (model.retrain - 30 min) -> Redshift Data API: UNLOAD the export to Parquet
    EventBridge Scheduler (model.retrain) -> SageMaker CreateTrainingJob (the training image)
        -> gate against models/production/ -> publish to models/ -> blue/green UpdateEndpoint

Why an export: the training job reads Parquet from S3 (SageMaker copies the
``training`` channel in), so it needs no network path or credentials to the
warehouse, and the export (``UNLOAD ... CLEANPATH``) costs one Redshift
Serverless query a day. The registry bucket is private and encrypted with the
chain's key; it keeps ``training/`` (the latest export), ``models/`` (every
version, ``production/``, ``LATEST``, ``promotions.jsonl``, the registry
``dataflow models`` reads locally) and ``jobs/`` (SageMaker's own output,
expired after 30 days).

Identities, each with exactly its grants:

- the scheduler's role runs the export as a warehouse reader (``grant_read``)
  and starts training jobs named ``{name}-*``, passing only the job's role;
- the job's role reads ``training/`` and ``models/``, writes ``models/`` and
  ``jobs/``, records its decisions in ``model_versions`` (``grant_record_models``),
  and deploys to the one endpoint: new models and endpoint
  configurations named ``dataflow-*``, ``UpdateEndpoint`` on that endpoint,
  passing only the endpoint's execution role;
- the warehouse's COPY role may also write ``training/`` (UNLOAD runs as it).

With ``model.retrain`` null both schedules exist but are disabled; a run on
demand is ``aws scheduler`` or ``aws sagemaker create-training-job`` with the
schedule's input (``README``). ``python -m pipeline_code.ml.job --rollback``
with the same settings rolls back.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.model import VARIANT, Model, ecr_repository_arn, image_pull_statements
from components.aws.security import PrivateBucket, grant, kms_statements, service_role, statement
from components.aws.warehouse import Warehouse
from components.spec import DEFAULT_RETRAIN, AlertSpec, ModelSpec, eventbridge_cron, retrain_times
from pipeline_code.host import CLOUDWATCH_NAMESPACE
from pipeline_code.ml.export import export_sql

TYPE = "data-flow:aws:Training"
INSTANCE_TYPES = {"small": "ml.m5.large", "medium": "ml.m5.xlarge", "large": "ml.m5.2xlarge"}
MAX_RUNTIME_S = 4 * 3600


def unload_sql(bucket: str, role_arn: str) -> str:
    """The export: ``ml.export.export_sql`` unloaded as Parquet over the last export."""
    inner = export_sql("redshift").replace("'", "''")
    return (
        f"UNLOAD ('{inner}') TO 's3://{bucket}/training/latest/part-' "
        f"IAM_ROLE '{role_arn}' FORMAT AS PARQUET CLEANPATH"
    )


def training_job_input(
    *,
    name: str,
    image: str,
    role_arn: str,
    bucket: str,
    kms_key_arn: str,
    instance_type: str,
    tolerance: float,
    environment: dict[str, str],
) -> dict[str, Any]:
    """CreateTrainingJob's request, as the schedule sends it. The job name
    takes the schedule's execution id, so every run has its own."""
    return {
        "TrainingJobName": f"{name}-<aws.scheduler.execution-id>",
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": role_arn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/{prefix}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, prefix in (("training", "training/latest/"), ("production", "models/production/"))
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/jobs/", "KmsKeyId": kms_key_arn},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            "VolumeKmsKeyId": kms_key_arn,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "HyperParameters": {"tolerance": str(tolerance)},
        "Environment": environment,
        "EnableInterContainerTrafficEncryption": True,
    }


class Training(pulumi.ComponentResource):
    """The export and training schedules, the training job's identity, and the model registry.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        region: Region of the schedules, the job and the endpoint.
        model_spec: ``data-flow:model``: the schedule, the gate's tolerance, the canary and bake.
        alerts: ``data-flow:alerts``: (read by Monitoring) refusals in a row, the served model's age.
        warehouse: The warehouse link the export reads (``grant_read``).
        model: The model link whose endpoint the job rolls out to.
        image: The training image in ECR (``pipeline_code/ml/Dockerfile``).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    bucket: PrivateBucket
    role: aws.iam.Role
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: str,
        model_spec: ModelSpec,
        alerts: AlertSpec,
        warehouse: Warehouse,
        model: Model,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.kms_key_arn = kms_key_arn
        child = pulumi.ResourceOptions(parent=self)
        ecr_repository_arn(image)  # fail here, naming the image
        self.bucket = PrivateBucket(
            f"{name}-registry",
            kms_key_arn=kms_key_arn,
            tags=tags,
            expire_prefixes={"jobs/": 30},
            opts=child,
        )
        bucket = self.bucket.bucket
        account = aws.get_caller_identity_output().account_id
        sagemaker_arn = account.apply(lambda a: f"arn:aws:sagemaker:{region}:{a}")

        self.role = service_role(f"{name}-job", "sagemaker.amazonaws.com", tags, self)
        self.grants = [
            grant(
                f"{name}-job",
                self.role,
                [
                    statement(["s3:ListBucket"], [bucket.arn]),
                    statement(
                        ["s3:GetObject"], [self.bucket.objects("training/"), self.bucket.objects("models/")]
                    ),
                    statement(
                        ["s3:DeleteObject", "s3:PutObject"],
                        [self.bucket.objects("models/"), self.bucket.objects("jobs/")],
                    ),
                    kms_statements(kms_key_arn),
                    *image_pull_statements(image),
                    statement(
                        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                        [
                            account.apply(
                                lambda a: f"arn:aws:logs:{region}:{a}:log-group:/aws/sagemaker/TrainingJobs:*"
                            )
                        ],
                    ),
                    statement(
                        ["cloudwatch:PutMetricData"],
                        ["*"],
                        {
                            "StringEquals": {
                                "cloudwatch:namespace": [CLOUDWATCH_NAMESPACE, "/aws/sagemaker/TrainingJobs"]
                            }
                        },
                    ),
                    # The rollout: new models and configurations, and the one endpoint.
                    statement(
                        ["sagemaker:AddTags", "sagemaker:CreateEndpointConfig", "sagemaker:CreateModel"],
                        [
                            sagemaker_arn.apply(lambda a: f"{a}:model/dataflow-*"),
                            sagemaker_arn.apply(lambda a: f"{a}:endpoint-config/dataflow-*"),
                        ],
                    ),
                    statement(
                        ["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint"], [model.endpoint.arn]
                    ),
                    statement(
                        ["iam:PassRole"],
                        [model.role.arn],
                        {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                    ),
                ],
                self,
            ),
            # The endpoint's models read their files from the registry.
            self.grant_read("endpoint", model.role),
            # Its decisions, in the warehouse's model_versions and nowhere else.
            *warehouse.grant_record_models("training", self.role),
            # UNLOAD writes the export as the warehouse's COPY role.
            grant(
                f"{name}-export-writes",
                warehouse.copy_role,
                [
                    statement(["s3:GetBucketLocation", "s3:ListBucket"], [bucket.arn]),
                    statement(["s3:DeleteObject", "s3:PutObject"], [self.bucket.objects("training/")]),
                    kms_statements(kms_key_arn),
                ],
                self,
            ),
        ]

        self.scheduler_role = service_role(f"{name}-scheduler", "scheduler.amazonaws.com", tags, self)
        self.grants += [
            *warehouse.grant_read("training-export", self.scheduler_role),
            grant(
                f"{name}-scheduler",
                self.scheduler_role,
                [
                    statement(
                        ["sagemaker:AddTags", "sagemaker:CreateTrainingJob"],
                        [sagemaker_arn.apply(lambda a: f"{a}:training-job/{name}-*")],
                    ),
                    statement(
                        ["iam:PassRole"],
                        [self.role.arn],
                        {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                    ),
                ],
                self,
            ),
        ]

        times = retrain_times(model_spec)
        export_cron, train_cron = times or retrain_times(ModelSpec(retrain=DEFAULT_RETRAIN))  # type: ignore[misc]
        state = "ENABLED" if times else "DISABLED"
        # Alarms SageMaker watches during a blue/green rollout, and rolls back on.
        endpoint_dims = {"EndpointName": model.endpoint.name, "VariantName": VARIANT}
        self.rollback_alarms = [
            aws.cloudwatch.MetricAlarm(
                f"{name}-rollback-{key}",
                name=f"{name}-rollback-{key}",
                alarm_description=f"Rolls a new model version back: {what}",
                namespace="AWS/SageMaker",
                metric_name=metric,
                dimensions=endpoint_dims,
                statistic=stat,
                period=60,
                evaluation_periods=2,
                comparison_operator="GreaterThanThreshold",
                threshold=threshold,
                treat_missing_data="notBreaching",
                tags=tags,
                opts=child,
            )
            for key, what, metric, stat, threshold in (
                ("errors", "the endpoint answers 5xx", "Invocation5XXErrors", "Sum", 0),
                (
                    "latency",
                    f"p99 latency above {alerts.latency_p99_ms} ms",
                    "ModelLatency",
                    "p99",
                    alerts.latency_p99_ms * 1000,
                ),
            )
        ]
        rollout = pulumi.Output.all(
            model.endpoint.name,
            model.role.arn,
            model.capture.uri("capture/"),
            kms_key_arn,
            pulumi.Output.all(*model.security_group_ids),
            pulumi.Output.all(*[a.name for a in self.rollback_alarms]),
        ).apply(
            lambda v: json.dumps(
                {
                    "platform": "sagemaker",
                    "endpoint": v[0],
                    "image": model.image,
                    "execution_role_arn": v[1],
                    "instance_type": model.instance_type,
                    "instance_count": model.instance_count,
                    "kms_key_arn": v[3],
                    "capture_uri": v[2],
                    "alarms": list(v[5]),
                    "subnet_ids": model.subnet_ids,
                    "security_group_ids": list(v[4]),
                    "canary_percent": model_spec.canary_percent,
                    "bake_seconds": model_spec.bake_minutes * 60,
                },
                sort_keys=True,
            )
        )
        self.job_input = pulumi.Output.all(
            self.role.arn, bucket.bucket, kms_key_arn, rollout, warehouse.workgroup.workgroup_name
        ).apply(
            lambda v: training_job_input(
                name=name,
                image=image,
                role_arn=v[0],
                bucket=v[1],
                kms_key_arn=v[2],
                instance_type=INSTANCE_TYPES[model_spec.training_size],
                tolerance=model_spec.tolerance,
                environment={
                    "ROLLOUT": v[3],
                    "TRAINING_METRICS": "cloudwatch",
                    "TRAINING_NAME": name,
                    "REGISTRY": f"s3://{v[1]}/models/",
                    "WAREHOUSE": f"redshift:{v[4]}/{warehouse.database}",
                },
            )
        )
        common = {
            "flexible_time_window": {"mode": "OFF"},
            "schedule_expression_timezone": "UTC",
            "state": state,
        }
        self.export_schedule = aws.scheduler.Schedule(
            f"{name}-export",
            name=f"{name}-export",
            description="Data-Flow: unload the training export from Redshift to the registry bucket",
            schedule_expression=eventbridge_cron(export_cron),
            target={
                "arn": "arn:aws:scheduler:::aws-sdk:redshiftdata:executeStatement",
                "role_arn": self.scheduler_role.arn,
                "input": pulumi.Output.all(
                    warehouse.workgroup.workgroup_name, bucket.bucket, warehouse.copy_role.arn
                ).apply(
                    lambda v: json.dumps(
                        {"WorkgroupName": v[0], "Database": warehouse.database, "Sql": unload_sql(v[1], v[2])}
                    )
                ),
                "retry_policy": {"maximum_retry_attempts": 3, "maximum_event_age_in_seconds": 1800},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
            **common,
        )
        self.train_schedule = aws.scheduler.Schedule(
            f"{name}-run",
            name=f"{name}-run",
            description="Data-Flow: train, gate against production, publish and roll out",
            schedule_expression=eventbridge_cron(train_cron),
            target={
                "arn": "arn:aws:scheduler:::aws-sdk:sagemaker:createTrainingJob",
                "role_arn": self.scheduler_role.arn,
                "input": self.job_input.apply(lambda body: json.dumps(body, sort_keys=True)),
                "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": 3600},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
            **common,
        )
        self.location = self.bucket.uri("models/")
        # What to watch: Monitoring takes the link and reads these (CloudWatch dimension values).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "registry": name,
            "scheduled": "yes" if times else "",
        }
        self.register_outputs({"location": self.location, "role": self.role.arn})

    def grant_read(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` read the registry's model versions (an endpoint's models, a reviewer)."""
        return grant(
            f"{self.name}-read-{grantee}",
            role,
            [
                statement(["s3:ListBucket"], [self.bucket.bucket.arn]),
                statement(["s3:GetObject"], [self.bucket.objects("models/")]),
                kms_statements(self.kms_key_arn, write=False),
            ],
            self,
        )
