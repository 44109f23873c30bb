"""Rolling a promoted version out with each platform's own safe deployment, and back.

Only a version the gate promoted (``decision.json``) is rolled out; a
rollback is the same rollout of the version that served before. Each
platform's plan is a list of ``Step(operation, body)``, the API call and its
request body, built here as pure functions (tested against each platform's
own SDK models) and sent by a thin executor:

- **SageMaker**: a new model (the model-server image, the version's
  ``model.tar.gz``, network isolation kept: SageMaker copies the files into
  ``/opt/ml/model``, the container fetches nothing) and endpoint
  configuration, then ``UpdateEndpoint`` with a blue/green deployment: a
  canary share of capacity first, the rest after ``bake_s``, and automatic
  rollback when any of the endpoint's alarms fires meanwhile;
- **Vertex AI**: the version uploaded as a new version of the registered
  model, deployed to the endpoint beside the live one with a canary share of
  traffic; ``vertex_finish`` moves all traffic to it and undeploys the old one;
- **Azure ML**: a new deployment beside the live one (blue/green), the
  endpoint's traffic split canary/rest, then ``azure_ml_finish`` moves all
  traffic to the new deployment and deletes the old.

The registry in the model bucket (``models/LATEST``, ``promotions.jsonl``,
``models/production/``: the served version's files, which the next training
job compares against) is updated only after the platform accepted the
rollout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_CANARY_PERCENT = 10
DEFAULT_BAKE_S = 600


@dataclass(frozen=True)
class Step:
    """One API call of a rollout: the operation's name and its request body."""

    operation: str
    body: dict[str, Any]


def resource_name(prefix: str, version: str, limit: int = 63) -> str:
    """A platform-safe name for ``version``'s model or config: letters,
    digits and hyphens, at most ``limit`` long (SageMaker's is 63)."""
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", f"{prefix}-{version}").strip("-")
    return cleaned[:limit].rstrip("-")


# -- SageMaker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SageMakerTarget:
    """The endpoint a rollout changes, and what every new model shares with the deployed one."""

    endpoint: str
    image: str
    execution_role_arn: str
    instance_type: str
    instance_count: int
    kms_key_arn: str
    capture_uri: str
    alarms: tuple[str, ...]
    variant: str = "primary"
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


def sagemaker_plan(
    target: SageMakerTarget,
    version: str,
    model_data_url: str,
    canary_percent: int = DEFAULT_CANARY_PERCENT,
    bake_s: int = DEFAULT_BAKE_S,
) -> list[Step]:
    """CreateModel, CreateEndpointConfig, then a blue/green UpdateEndpoint."""
    if not 1 <= canary_percent <= 99:
        raise ValueError(f"canary_percent must be in 1..99, got {canary_percent}")
    if not target.alarms:
        raise ValueError("a blue/green rollout needs at least one alarm to roll back on, got none")
    name = resource_name("dataflow", version)
    model: dict[str, Any] = {
        "ModelName": name,
        "PrimaryContainer": {"Image": target.image, "ModelDataUrl": model_data_url, "Mode": "SingleModel"},
        "ExecutionRoleArn": target.execution_role_arn,
        "EnableNetworkIsolation": True,
        "Tags": [{"Key": "model_version", "Value": version[:256]}],
    }
    if target.subnet_ids:
        model["VpcConfig"] = {
            "Subnets": list(target.subnet_ids),
            "SecurityGroupIds": list(target.security_group_ids),
        }
    config = {
        "EndpointConfigName": name,
        "KmsKeyId": target.kms_key_arn,
        "ProductionVariants": [
            {
                "VariantName": target.variant,
                "ModelName": name,
                "InitialInstanceCount": target.instance_count,
                "InstanceType": target.instance_type,
            }
        ],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 10,
            "DestinationS3Uri": target.capture_uri,
            "KmsKeyId": target.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        },
    }
    update = {
        "EndpointName": target.endpoint,
        "EndpointConfigName": name,
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": canary_percent},
                    "WaitIntervalInSeconds": bake_s,
                },
                # The old fleet stays up this long after the shift, so a late alarm can still roll back.
                "TerminationWaitInSeconds": bake_s,
                "MaximumExecutionTimeoutInSeconds": max(600, 3 * bake_s + 1800),
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in target.alarms]},
        },
    }
    return [Step("CreateModel", model), Step("CreateEndpointConfig", config), Step("UpdateEndpoint", update)]


def run_sagemaker(client, steps: list[Step]) -> list[dict[str, Any]]:
    """Send the steps with a boto3 SageMaker client (``CreateModel`` -> ``create_model``)."""
    answers = []
    for step in steps:
        method = re.sub(r"(?<!^)(?=[A-Z])", "_", step.operation).lower()
        answers.append(getattr(client, method)(**step.body))
    return answers


# -- Vertex AI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VertexTarget:
    project: str
    location: str
    endpoint_id: str
    model_id: str  # the registered model whose versions these are
    image: str
    machine_type: str
    min_replicas: int
    max_replicas: int
    service_account: str
    kms_key_name: str | None = None

    @property
    def endpoint(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/endpoints/{self.endpoint_id}"

    @property
    def model(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"


def vertex_upload(target: VertexTarget, version: str, artifact_uri: str) -> Step:
    """``models:upload`` of the version as a new version of the registered
    model (REST JSON, as ``aiplatform.googleapis.com`` takes it); its answer
    names the model version to deploy (``projects/.../models/ID@N``)."""
    model: dict[str, Any] = {
        "displayName": "dataflow-recommender",
        "artifactUri": artifact_uri,
        "versionAliases": [resource_name("v", version, 128).lower()],
        "versionDescription": f"Data-Flow model {version}",
        "containerSpec": {
            "imageUri": target.image,
            "healthRoute": "/ping",
            "predictRoute": "/invocations",
            "ports": [{"containerPort": 8080}],
        },
        "labels": {"model_version": resource_name("v", version, 63).lower()},
    }
    if target.kms_key_name:
        model["encryptionSpec"] = {"kmsKeyName": target.kms_key_name}
    return Step(
        "UploadModel",
        {"parent": target.model.rsplit("/models/", 1)[0], "parentModel": target.model, "model": model},
    )


def vertex_deploy(
    target: VertexTarget,
    version: str,
    uploaded_model: str,
    live_deployed_model_id: str | None,
    canary_percent: int = DEFAULT_CANARY_PERCENT,
) -> Step:
    """``deployModel`` of the uploaded version beside the live deployed model,
    with a canary share of traffic (all of it when nothing is live)."""
    if not 1 <= canary_percent <= 99:
        raise ValueError(f"canary_percent must be in 1..99, got {canary_percent}")
    # "0" is how deployModel names the model being deployed in its own split.
    split = {"0": 100} if live_deployed_model_id is None else {
        "0": canary_percent,
        live_deployed_model_id: 100 - canary_percent,
    }  # fmt: skip
    return Step(
        "DeployModel",
        {
            "endpoint": target.endpoint,
            "deployedModel": {
                "model": uploaded_model,
                "displayName": resource_name("dataflow", version, 128),
                "serviceAccount": target.service_account,
                "dedicatedResources": {
                    "machineSpec": {"machineType": target.machine_type},
                    "minReplicaCount": target.min_replicas,
                    "maxReplicaCount": target.max_replicas,
                },
            },
            "trafficSplit": split,
        },
    )


def vertex_finish(target: VertexTarget, new_deployed_model_id: str, old_deployed_model_id: str) -> list[Step]:
    """After the bake: all traffic to the new deployed model, then undeploy the old."""
    return [
        Step(
            "UpdateEndpoint",
            {
                "endpoint": {"name": target.endpoint, "trafficSplit": {new_deployed_model_id: 100}},
                "updateMask": "trafficSplit",
            },
        ),
        Step(
            "UndeployModel",
            {
                "endpoint": target.endpoint,
                "deployedModelId": old_deployed_model_id,
                "trafficSplit": {new_deployed_model_id: 100},
            },
        ),
    ]


# -- Azure ML -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AzureMLTarget:
    endpoint: str
    location: str
    environment_id: str  # the model-server image as an Azure ML environment version
    model_name: str  # the registered model whose versions these are
    workspace_id: str  # /subscriptions/.../workspaces/NAME
    instance_type: str
    instance_count: int
    public: bool = False

    def endpoint_body(self, traffic: dict[str, int]) -> dict[str, Any]:
        """The endpoint as PUT takes it (ARM's PATCH changes tags and identity only)."""
        return {
            "location": self.location,
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "authMode": "AADToken",
                "publicNetworkAccess": "Enabled" if self.public else "Disabled",
                "traffic": traffic,
            },
        }


def azure_ml_plan(
    target: AzureMLTarget,
    version: str,
    live_deployment: str | None,
    canary_percent: int = DEFAULT_CANARY_PERCENT,
) -> tuple[str, list[Step]]:
    """A new deployment named for the version next to the live one, and the
    endpoint's traffic split canary/rest (all of it when none is live).
    Returns the new deployment's name and the steps (ARM REST bodies)."""
    if not 1 <= canary_percent <= 99:
        raise ValueError(f"canary_percent must be in 1..99, got {canary_percent}")
    # Deployment names: 3-32 characters, a letter first, letters, digits and hyphens.
    name = resource_name("d", version, 32).lower()
    model_version = resource_name("v", version, 128)
    probe = {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 30}
    deployment = {
        "location": target.location,
        "sku": {"name": "Default", "capacity": target.instance_count},
        "properties": {
            "endpointComputeType": "Managed",
            "model": f"{target.workspace_id}/models/{target.model_name}/versions/{model_version}",
            "environmentId": target.environment_id,
            "instanceType": target.instance_type,
            "scaleSettings": {"scaleType": "Default"},
            "livenessProbe": probe,
            "readinessProbe": probe,
            "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 8},
            "appInsightsEnabled": True,
            "egressPublicNetworkAccess": "Disabled",
        },
    }
    traffic = {name: 100} if live_deployment is None else {
        name: canary_percent,
        live_deployment: 100 - canary_percent,
    }  # fmt: skip
    return name, [
        Step("PutOnlineDeployment", {"deployment": name, "body": deployment}),
        Step("PutOnlineEndpoint", {"body": target.endpoint_body(traffic)}),
    ]


def azure_ml_finish(target: AzureMLTarget, new_deployment: str, old_deployment: str) -> list[Step]:
    """After the bake: all traffic to the new deployment, then delete the old."""
    return [
        Step("PutOnlineEndpoint", {"body": target.endpoint_body({new_deployment: 100})}),
        Step("DeleteOnlineDeployment", {"deployment": old_deployment}),
    ]
