"""ML on AWS: the one model-server image as a SageMaker real-time endpoint.

The model is ``model.tar.gz`` in S3 (a ``dataflow train`` version, packed),
which SageMaker copies to ``/opt/ml/model`` before starting the image with
``serve``; the server then answers ``GET /ping`` and ``POST /invocations``
on 8080. Secure by default: the container runs with network isolation (it
needs nothing from the network), the endpoint's storage and captured
requests are encrypted with the chain's key, 10% of requests and answers
are captured to a private bucket for monitoring, and the execution role can
read that one artifact and pull that one repository. Instances scale
between the spec's replica bounds on invocations per instance. Callers are
granted with ``grant_invoke``.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_aws as aws

from components.aws.security import PrivateBucket, grant, kms_statements, service_role, statement
from components.spec import ModelSpec

TYPE = "data-flow:aws:Model"
INSTANCE_TYPES = {"small": "ml.m5.large", "medium": "ml.m5.xlarge", "large": "ml.m5.2xlarge"}
VARIANT = "primary"
INVOCATIONS_PER_INSTANCE = 200.0


def ecr_repository_arn(image: str) -> str:
    """``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`` -> the repository's ARN."""
    m = re.fullmatch(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)[:@].+", image)
    if not m:
        raise ValueError(f"image {image!r} is not an ECR image URI")
    account, region, repo = m.groups()
    return f"arn:aws:ecr:{region}:{account}:repository/{repo}"


def s3_object_arn(uri: str) -> str:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    return "arn:aws:s3:::" + uri.removeprefix("s3://")


def image_pull_statements(image: str) -> list:
    return [
        statement(
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [ecr_repository_arn(image)],
        ),
        statement(["ecr:GetAuthorizationToken"], ["*"]),
    ]


class Model(pulumi.ComponentResource):
    """SageMaker model, endpoint configuration, endpoint and its autoscaling.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        model: ``data-flow:model``: machine size, replica bounds, private serving.
        image: The model-server image in ECR.
        artifact_uri: ``s3://.../model.tar.gz`` of the model version to deploy.
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        subnet_ids: Subnets for the endpoint's network interfaces. Default: None, no VPC.
        security_group_id: Security group of those interfaces. Default: None.
        capture_percent: Share of requests captured to the private capture bucket. Default: 10.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    endpoint: aws.sagemaker.Endpoint
    role: aws.iam.Role
    capture: PrivateBucket

    def __init__(
        self,
        name: str,
        *,
        model: ModelSpec,
        image: str,
        artifact_uri: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        subnet_ids: list[str] | None = None,
        security_group_id: pulumi.Input[str] | None = None,
        capture_percent: int = 10,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        endpoint_name = f"{name}-endpoint"
        self.capture = PrivateBucket(
            f"{name}-capture", kms_key_arn=kms_key_arn, tags=tags, expire_days=90, opts=child
        )
        self.role = service_role(f"{name}-execution", "sagemaker.amazonaws.com", tags, self)
        self.role_policy = grant(
            f"{name}-execution",
            self.role,
            [
                statement(["s3:GetObject"], [s3_object_arn(artifact_uri)]),
                statement(["s3:PutObject"], [self.capture.objects()]),
                *image_pull_statements(image),
                statement(
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    [
                        aws.get_caller_identity_output().account_id.apply(
                            lambda acct: (
                                f"arn:aws:logs:*:{acct}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}:*"
                            )
                        )
                    ],
                ),
                statement(
                    ["cloudwatch:PutMetricData"],
                    ["*"],
                    {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}},
                ),
                kms_statements(kms_key_arn),
            ],
            self,
        )
        self.image = image
        self.instance_type = INSTANCE_TYPES[model.size]
        self.instance_count = model.min_replicas
        self.subnet_ids: list[str] = list(subnet_ids or []) if model.private else []
        self.security_group_ids: list[pulumi.Input[str]] = (
            [security_group_id] if model.private and security_group_id is not None else []
        )
        vpc = None
        if model.private:
            if not subnet_ids or security_group_id is None:
                raise ValueError("model.private needs subnet_ids and a security group")
            vpc = {"subnets": subnet_ids, "security_group_ids": [security_group_id]}
        self.model = aws.sagemaker.Model(
            f"{name}-model",
            execution_role_arn=self.role.arn,
            primary_container={"image": image, "model_data_url": artifact_uri, "mode": "SingleModel"},
            enable_network_isolation=True,
            vpc_config=vpc,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
        )
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            kms_key_arn=kms_key_arn,
            production_variants=[
                {
                    "variant_name": VARIANT,
                    "model_name": self.model.name,
                    "initial_instance_count": model.min_replicas,
                    "instance_type": INSTANCE_TYPES[model.size],
                }
            ],
            data_capture_config={
                "enable_capture": True,
                "initial_sampling_percentage": capture_percent,
                "destination_s3_uri": self.capture.uri("capture/"),
                "kms_key_id": kms_key_arn,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
                "capture_content_type_header": {"json_content_types": ["application/json"]},
            },
            tags=tags,
            opts=child,
        )
        self.endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            name=endpoint_name,
            endpoint_config_name=self.config.name,
            tags=tags,
            # The training job's rollouts move the endpoint to new configurations
            # (blue/green); a later `pulumi up` must not move it back.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["endpointConfigName"]),
        )
        resource_id = self.endpoint.name.apply(lambda n: f"endpoint/{n}/variant/{VARIANT}")
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="sagemaker",
            resource_id=resource_id,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=model.min_replicas,
            max_capacity=model.max_replicas,
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-scaling-policy",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            target_tracking_scaling_policy_configuration={
                "target_value": INVOCATIONS_PER_INSTANCE,
                "predefined_metric_specification": {
                    "predefined_metric_type": "SageMakerVariantInvocationsPerInstance"
                },
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
            opts=child,
        )
        # What to watch: Monitoring takes the link and reads these (CloudWatch dimension values).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "endpoint": self.endpoint.name,
            "variant": VARIANT,
        }
        self.register_outputs({"endpoint": self.endpoint.name})

    def grant_invoke(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` call ``InvokeEndpoint`` on this endpoint only."""
        return grant(
            f"{self.name}-invoke-{grantee}",
            role,
            [statement(["sagemaker:InvokeEndpoint"], [self.endpoint.arn])],
            self,
        )
