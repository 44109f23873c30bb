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
- update: mutate the replica bounds of the deployed model that serves now
  (``serving_model``): the training job's rollouts replace the one this
  resource deployed, so its id may be gone;
- delete: undeploy, then delete the uploaded model.

``diff``, ``check`` and the request bodies are pure and unit-tested (the
bodies against the API's own protobuf types); create, update and delete call
Vertex AI and run only under ``pulumi up``.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

REPLACE_ON = ("project", "location", "endpoint_id", "image_uri", "artifact_uri", "service_account")
UPDATE_ON = ("min_replicas", "max_replicas", "machine_type", "display_name", "labels")
HEALTH_ROUTE = "/ping"
PREDICT_ROUTE = "/invocations"


def upload_request(props: dict[str, Any]) -> dict[str, Any]:
    """``models:upload``: the model-server image with its routes, and the model files."""
    model: dict[str, Any] = {
        "displayName": props["display_name"],
        "artifactUri": props["artifact_uri"],
        "containerSpec": {
            "imageUri": props["image_uri"],
            "healthRoute": HEALTH_ROUTE,
            "predictRoute": PREDICT_ROUTE,
            "ports": [{"containerPort": 8080}],
        },
        "labels": props.get("labels") or {},
    }
    if props.get("kms_key_name"):
        model["encryptionSpec"] = {"kmsKeyName": props["kms_key_name"]}
    return {"model": model}


def _resources(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "machineSpec": {"machineType": props["machine_type"]},
        "minReplicaCount": props["min_replicas"],
        "maxReplicaCount": props["max_replicas"],
    }


def deploy_request(props: dict[str, Any], model_name: str) -> dict[str, Any]:
    """``endpoints:deployModel``: all traffic to the new deployment."""
    deployed: dict[str, Any] = {
        "model": model_name,
        "displayName": props["display_name"],
        "dedicatedResources": _resources(props),
    }
    if props.get("service_account"):
        deployed["serviceAccount"] = props["service_account"]
    return {"deployedModel": deployed, "trafficSplit": {"0": 100}}


def serving_model(endpoint: dict[str, Any], fallback: str) -> str:
    """The deployed model with the largest share of the endpoint's traffic
    (``fallback`` when the endpoint reports none)."""
    split = {k: int(v) for k, v in (endpoint.get("trafficSplit") or {}).items()}
    deployed = {d.get("id") for d in endpoint.get("deployedModels", [])}
    live = [k for k in sorted(split, key=lambda k: (-split[k], k)) if split[k] > 0 and k in deployed]
    return live[0] if live else fallback


def mutate_request(deployed_model_id: str, props: dict[str, Any]) -> dict[str, Any]:
    """``endpoints:mutateDeployedModel``: new replica bounds, in place."""
    return {
        "deployedModel": {"id": deployed_model_id, "dedicatedResources": _resources(props)},
        "updateMask": "dedicatedResources.minReplicaCount,dedicatedResources.maxReplicaCount",
    }


class _Vertex:
    """The Vertex AI REST API with Application Default Credentials
    (google-auth only: the SDK would add ~200 MB to the gcp extra)."""

    def __init__(self, location: str, poll_s: float = 5.0) -> None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        self.session = AuthorizedSession(credentials)
        self.base = f"https://{location}-aiplatform.googleapis.com/v1/"
        self.poll_s = poll_s

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self.session.request(method, self.base + path, json=body, timeout=60)
        if response.status_code >= 400:
            raise RuntimeError(f"Vertex AI {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else {}

    def wait(self, operation: dict) -> dict:
        """Poll a long-running operation to its end; its ``response``."""
        import time

        while not operation.get("done"):
            time.sleep(self.poll_s)
            operation = self.call("GET", operation["name"])
        if "error" in operation:
            raise RuntimeError(f"Vertex AI operation {operation['name']} failed: {operation['error']}")
        return operation.get("response", {})


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
        vertex = _Vertex(props["location"])
        parent = f"projects/{props['project']}/locations/{props['location']}"
        uploaded = vertex.wait(vertex.call("POST", f"{parent}/models:upload", upload_request(props)))
        model_name = uploaded["model"]
        done = vertex.wait(
            vertex.call("POST", f"{props['endpoint_id']}:deployModel", deploy_request(props, model_name))
        )
        deployed_id = done["deployedModel"]["id"]
        outs = {**props, "model_name": model_name, "deployed_model_id": deployed_id}
        return CreateResult(id_=f"{props['endpoint_id']}/{deployed_id}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        vertex = _Vertex(news["location"])
        live = serving_model(vertex.call("GET", news["endpoint_id"]), olds["deployed_model_id"])
        body = mutate_request(live, news)
        vertex.wait(vertex.call("POST", f"{news['endpoint_id']}:mutateDeployedModel", body))
        return UpdateResult(outs={**olds, **news, "deployed_model_id": live})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        vertex = _Vertex(props["location"])
        endpoint = vertex.call("GET", props["endpoint_id"])
        if any(d.get("id") == props["deployed_model_id"] for d in endpoint.get("deployedModels", [])):
            body = {"deployedModelId": props["deployed_model_id"]}
            vertex.wait(vertex.call("POST", f"{props['endpoint_id']}:undeployModel", body))
        vertex.wait(vertex.call("DELETE", props["model_name"]))


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
