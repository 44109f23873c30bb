"""A Pulumi dynamic provider that uploads the model and deploys it to a
Vertex AI endpoint.

No Pulumi (or Terraform) resource uploads a Vertex model or deploys one to
an endpoint, so this provider does it with the Vertex SDK
(``google-cloud-aiplatform``, in the ``gcp`` extra):

- create: upload a model version (the one model-server image, the model
  files at ``artifact_uri``, the health and predict routes the image serves)
  and deploy it with all traffic and the replica bounds;
- diff: a new image or new model files replace the deployment (the new one
  is deployed before the old one is undeployed, so serving never stops);
  new replica bounds or machine type are updated in place;
- update: mutate the deployed model's replica bounds;
- delete: undeploy, then delete the uploaded model.

``diff`` and ``check`` are pure and unit-tested; create, update and delete
call Vertex AI and run only under ``pulumi up``.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

REPLACE_ON = ("project", "location", "endpoint_id", "image_uri", "artifact_uri", "service_account")
UPDATE_ON = ("min_replicas", "max_replicas", "machine_type", "display_name", "labels")
HEALTH_ROUTE = "/ping"
PREDICT_ROUTE = "/invocations"


def _aiplatform(props: dict[str, Any]):
    from google.cloud import aiplatform

    aiplatform.init(project=props["project"], location=props["location"])
    return aiplatform


class VertexDeploymentProvider(ResourceProvider):
    """Create, diff, update and delete a model deployment on an endpoint."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        for key in ("project", "location", "endpoint_id", "image_uri", "artifact_uri", "machine_type"):
            if not news.get(key):
                failures.append(CheckFailure(key, f"{key} is required (got {news.get(key)!r})"))
        if not str(news.get("artifact_uri", "")).startswith("gs://"):
            failures.append(
                CheckFailure(
                    "artifact_uri", f"artifact_uri must be a gs:// folder (got {news.get('artifact_uri')!r})"
                )
            )
        lo, hi = news.get("min_replicas", 1), news.get("max_replicas", 1)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            failures.append(
                CheckFailure("min_replicas", f"need 1 <= min_replicas <= max_replicas (got {lo}, {hi})")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_ON if olds.get(k) != news.get(k)]
        updates = [k for k in UPDATE_ON if olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            stables=[k for k in REPLACE_ON if k not in replaces],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        aiplatform = _aiplatform(props)
        model = aiplatform.Model.upload(
            display_name=props["display_name"],
            artifact_uri=props["artifact_uri"],
            serving_container_image_uri=props["image_uri"],
            serving_container_health_route=HEALTH_ROUTE,
            serving_container_predict_route=PREDICT_ROUTE,
            serving_container_ports=[8080],
            labels=props.get("labels") or None,
            encryption_spec_key_name=props.get("kms_key_name") or None,
        )
        endpoint = aiplatform.Endpoint(props["endpoint_id"])
        endpoint.deploy(
            model=model,
            deployed_model_display_name=props["display_name"],
            traffic_percentage=100,
            machine_type=props["machine_type"],
            min_replica_count=props["min_replicas"],
            max_replica_count=props["max_replicas"],
            service_account=props.get("service_account") or None,
        )
        deployed = next(d for d in endpoint.list_models() if d.model == model.resource_name)
        outs = {**props, "model_name": model.resource_name, "deployed_model_id": deployed.id}
        return CreateResult(id_=f"{props['endpoint_id']}/{deployed.id}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from google.cloud import aiplatform_v1

        client = aiplatform_v1.EndpointServiceClient(
            client_options={"api_endpoint": f"{news['location']}-aiplatform.googleapis.com"}
        )
        deployed = aiplatform_v1.DeployedModel(
            id=olds["deployed_model_id"],
            dedicated_resources=aiplatform_v1.DedicatedResources(
                machine_spec=aiplatform_v1.MachineSpec(machine_type=news["machine_type"]),
                min_replica_count=news["min_replicas"],
                max_replica_count=news["max_replicas"],
            ),
        )
        client.mutate_deployed_model(
            endpoint=news["endpoint_id"],
            deployed_model=deployed,
            update_mask={
                "paths": ["dedicated_resources.min_replica_count", "dedicated_resources.max_replica_count"]
            },
        ).result()
        return UpdateResult(outs={**olds, **news})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        aiplatform = _aiplatform(props)
        endpoint = aiplatform.Endpoint(props["endpoint_id"])
        if any(d.id == props["deployed_model_id"] for d in endpoint.list_models()):
            endpoint.undeploy(props["deployed_model_id"])
        aiplatform.Model(props["model_name"]).delete()


class VertexDeployment(pulumi.dynamic.Resource):
    """The model-server image serving one model version on an endpoint."""

    deployed_model_id: pulumi.Output[str]
    model_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: pulumi.Input[str],
        location: pulumi.Input[str],
        endpoint_id: pulumi.Input[str],
        image_uri: pulumi.Input[str],
        artifact_uri: pulumi.Input[str],
        machine_type: pulumi.Input[str],
        min_replicas: int,
        max_replicas: int,
        display_name: str,
        labels: dict[str, str],
        service_account: pulumi.Input[str] | None = None,
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "project": project,
            "location": location,
            "endpoint_id": endpoint_id,
            "image_uri": image_uri,
            "artifact_uri": artifact_uri,
            "machine_type": machine_type,
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "display_name": display_name,
            "labels": labels,
            "service_account": service_account,
            "kms_key_name": kms_key_name,
            "deployed_model_id": None,
            "model_name": None,
        }
        super().__init__(VertexDeploymentProvider(), name, props, opts)
