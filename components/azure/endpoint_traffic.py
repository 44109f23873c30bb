"""A dynamic provider that gives a new Azure ML online endpoint its first traffic.

An online endpoint must exist before its deployment, and its traffic may
name only deployments that exist, so the endpoint Pulumi creates has no
traffic. ``EndpointTraffic`` sends all of it to the first deployment once,
when it is created, through ARM (a GET of the endpoint, then a PUT with
``traffic`` set). After that the training job's rollouts own the split
(a new deployment beside the live one, a shift, the old one deleted), so
the resource never changes it again: ``diff`` reports a change only when the
endpoint or the deployment it started with is another one, ``update`` and
``delete`` call nothing. The API calls the endpoint without naming a
deployment, so it follows the split.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider

API_VERSION = "2024-04-01"
ARM = "https://management.azure.com"
# What a PUT of an online endpoint takes back from its GET (the rest is read-only).
_PUT_PROPERTIES = ("authMode", "description", "publicNetworkAccess", "traffic", "mirrorTraffic")


def first_traffic_body(endpoint: dict[str, Any], deployment: str) -> dict[str, Any] | None:
    """The PUT body that sends all traffic to ``deployment``, from the endpoint's
    GET; None when the endpoint already routes traffic (a rollout did)."""
    props = endpoint.get("properties", {})
    if any(int(v) > 0 for v in (props.get("traffic") or {}).values()):
        return None
    body: dict[str, Any] = {
        "location": endpoint["location"],
        "properties": {k: props[k] for k in _PUT_PROPERTIES if k in props} | {"traffic": {deployment: 100}},
    }
    if endpoint.get("identity", {}).get("type"):
        body["identity"] = {"type": endpoint["identity"]["type"]}
    if endpoint.get("tags"):
        body["tags"] = endpoint["tags"]
    return body


class EndpointTrafficProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not str(news.get("endpoint_id", "")).startswith("/subscriptions/"):
            failures.append(
                CheckFailure(
                    "endpoint_id", f"endpoint_id must be an ARM id (got {news.get('endpoint_id')!r})"
                )
            )
        if not news.get("deployment"):
            failures.append(
                CheckFailure("deployment", f"deployment is required (got {news.get('deployment')!r})")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("endpoint_id", "deployment") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        import httpx
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token(f"{ARM}/.default").token
        url = f"{ARM}{props['endpoint_id']}?api-version={API_VERSION}"
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
            current = client.get(url)
            if current.status_code >= 400:
                raise RuntimeError(f"GET {props['endpoint_id']}: {current.status_code} {current.text[:500]}")
            body = first_traffic_body(current.json(), props["deployment"])
            if body is not None:
                answer = client.put(url, json=body)
                if answer.status_code >= 400:
                    raise RuntimeError(
                        f"PUT {props['endpoint_id']}: {answer.status_code} {answer.text[:500]}"
                    )
        return CreateResult(id_=f"{props['endpoint_id']}/traffic", outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the traffic goes with the endpoint; the loop owns it meanwhile


class EndpointTraffic(pulumi.dynamic.Resource):
    """All of a new endpoint's traffic to its first deployment, once."""

    def __init__(
        self,
        name: str,
        *,
        endpoint_id: pulumi.Input[str],
        deployment: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            EndpointTrafficProvider(), name, {"endpoint_id": endpoint_id, "deployment": deployment}, opts
        )
