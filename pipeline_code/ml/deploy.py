"""Sending a rollout (``ml.rollout``'s plans) to the platform the training job runs on.

    ROLLOUT='{"platform": "sagemaker", "endpoint": ..., ...}' python -m pipeline_code.ml.job ...

The training job's component sets ``ROLLOUT`` to the target as JSON (the
fields of ``SageMakerTarget``, ``VertexTarget`` or ``AzureMLTarget``, plus
``platform``, ``canary_percent`` and ``bake_seconds``). After the gate
promoted a version and it was published, ``deploy`` rolls it out as the
job's own identity, which may deploy to that one endpoint and nothing else:

- SageMaker: the three calls of ``sagemaker_plan``; SageMaker runs the
  canary, the bake and the automatic rollback itself;
- Vertex AI: upload, deploy beside the live model with the canary split,
  wait the bake, then all traffic to the new one and undeploy the old;
- Azure ML: register the model version, create the deployment, split the
  traffic, wait the bake, then all traffic to it and delete the old one.

Each waits for the platform's long-running operation and raises
``DeployError`` naming the call that failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from pipeline_code.ml import rollout


class DeployError(Exception):
    """The platform refused or failed a rollout call."""


def target_from_env(env: Mapping[str, str]) -> tuple[str, Any, int, int] | None:
    """``ROLLOUT`` -> ``(platform, target, canary percent, bake seconds)``; None when unset."""
    raw = env.get("ROLLOUT")
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise DeployError(f"ROLLOUT is not JSON: {exc}") from exc
    kinds = {
        "sagemaker": rollout.SageMakerTarget,
        "vertex": rollout.VertexTarget,
        "azureml": rollout.AzureMLTarget,
    }
    platform = spec.pop("platform", None)
    if platform not in kinds:
        raise DeployError(f"ROLLOUT platform must be one of {sorted(kinds)}, got {platform!r}")
    canary = int(spec.pop("canary_percent", rollout.DEFAULT_CANARY_PERCENT))
    bake = int(spec.pop("bake_seconds", rollout.DEFAULT_BAKE_S))
    kind = kinds[platform]
    known = {f.name for f in fields(kind)}
    unknown = set(spec) - known
    if unknown:
        raise DeployError(f"ROLLOUT for {platform} has unknown fields {sorted(unknown)}")
    for name in ("alarms", "subnet_ids", "security_group_ids"):
        if name in spec:
            spec[name] = tuple(spec[name])
    try:
        return platform, kind(**spec), canary, bake
    except TypeError as exc:
        raise DeployError(f"ROLLOUT for {platform}: {exc}") from exc


def deploy(platform: str, target: Any, version: str, artifact: str, canary: int, bake_s: int) -> None:
    """Roll ``version`` (its files at ``artifact``) out to ``target``."""
    if platform == "sagemaker":
        import boto3

        client = boto3.client("sagemaker")
        try:
            rollout.run_sagemaker(client, rollout.sagemaker_plan(target, version, artifact, canary, bake_s))
        except client.exceptions.ClientError as exc:
            raise DeployError(f"SageMaker refused the rollout of {version}: {exc}") from exc
    elif platform == "vertex":
        _vertex(target, version, artifact, canary, bake_s)
    else:
        _azure_ml(target, version, artifact, canary, bake_s)


def _wait(call, operation: dict, what: str, poll_s: float = 10.0) -> dict:
    """Poll a long-running operation (Vertex's ``name``/``done``) to its end."""
    while not operation.get("done"):
        time.sleep(poll_s)
        operation = call("GET", operation["name"])
    if "error" in operation:
        raise DeployError(f"{what} failed: {operation['error']}")
    return operation.get("response", {})


def _vertex(target: rollout.VertexTarget, version: str, artifact: str, canary: int, bake_s: int) -> None:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    session = AuthorizedSession(credentials)
    base = f"https://{target.location}-aiplatform.googleapis.com/v1/"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        response = session.request(method, base + path, json=body)
        if response.status_code >= 400:
            raise DeployError(f"Vertex AI {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    live = call("GET", target.endpoint).get("trafficSplit") or {}
    live_id = max(live, key=live.get) if live else None
    upload = rollout.vertex_upload(target, version, artifact)
    uploaded = _wait(call, call("POST", f"{upload.body['parent']}/models:upload", upload.body), "upload")
    model = f"{uploaded['model']}@{uploaded.get('modelVersionId', '1')}"
    deploy_step = rollout.vertex_deploy(target, version, model, live_id, canary)
    deployed = _wait(call, call("POST", f"{target.endpoint}:deployModel", deploy_step.body), "deployModel")
    if live_id is None:
        return
    time.sleep(bake_s)
    new_id = deployed["deployedModel"]["id"]
    update, undeploy = rollout.vertex_finish(target, new_id, live_id)
    call("PATCH", f"{target.endpoint}?updateMask=trafficSplit", update.body["endpoint"])
    _wait(call, call("POST", f"{target.endpoint}:undeployModel", undeploy.body), "undeployModel")


def _azure_ml(target: rollout.AzureMLTarget, version: str, artifact: str, canary: int, bake_s: int) -> None:
    import httpx
    from azure.identity import DefaultAzureCredential

    token = DefaultAzureCredential().get_token("https://management.azure.com/.default").token
    client = httpx.Client(
        base_url="https://management.azure.com",
        headers={"Authorization": f"Bearer {token}"},
        params={"api-version": "2024-04-01"},
        timeout=60,
    )
    endpoint = f"{target.workspace_id}/onlineEndpoints/{target.endpoint}"

    def call(method: str, path: str, body: dict | None = None) -> dict:
        response = client.request(method, path, json=body)
        if response.status_code >= 400:
            raise DeployError(f"Azure ML {method} {path}: {response.status_code} {response.text[:500]}")
        status = response.headers.get("azure-asyncoperation")
        while status:
            time.sleep(10)
            state = client.get(status).json()
            if state.get("status") in ("Succeeded", "Failed", "Canceled"):
                if state["status"] != "Succeeded":
                    raise DeployError(f"Azure ML {method} {path}: {state}")
                break
        return response.json() if response.content else {}

    live = call("GET", endpoint).get("properties", {}).get("traffic") or {}
    live_name = max(live, key=live.get) if live else None
    model_version = rollout.resource_name("v", version, 128)
    model = f"{target.workspace_id}/models/{target.model_name}/versions/{model_version}"
    call("PUT", model, {"properties": {"modelUri": artifact, "modelType": "custom_model"}})
    name, steps = rollout.azure_ml_plan(target, version, live_name, canary)
    call("PUT", f"{endpoint}/deployments/{name}", steps[0].body["body"])
    call("PUT", endpoint, steps[1].body["body"])
    if live_name is None:
        return
    time.sleep(bake_s)
    put, delete = rollout.azure_ml_finish(target, name, live_name)
    call("PUT", endpoint, put.body["body"])
    call("DELETE", f"{endpoint}/deployments/{delete.body['deployment']}")
