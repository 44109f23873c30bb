"""The Synapse Spark job definition: its shape, and a dynamic provider that publishes it.

Spark job definitions live in the Synapse workspace's data plane
(``https://WORKSPACE.dev.azuresynapse.net``), not in ARM, so no Pulumi
resource creates one. ``job_definition(...)`` builds the definition
(validated in the tests with the ``azure-synapse-artifacts`` models), and
``SparkJobDefinition`` publishes it through the workspace's REST API with an
Entra ID token (``azure-identity``).
It first uploads the code the definition runs (the script and the package,
zipped) to the lake with Entra ID: Pulumi's own blob resource cannot upload
to an account with shared keys off (pulumi-azure-native#2015). Create and
update upload and put; delete removes the definition; ``diff`` compares the
definition and the package's digest (so a code change shows in a preview)
and is pure, like ``check``.
Publishing needs a route to the development endpoint (the warehouse's
``Dev`` private endpoint) and the Synapse Artifact Publisher role.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline_code"
SPARK = PACKAGE / "spark"
"""Where the scripts a definition runs live (``script``: a file name there)."""
SPARK_VERSION = "3.4"
_SHIPPED = (".py", ".txt", ".json", ".proto")


def package_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in _SHIPPED and "__pycache__" not in p.parts
    )


def package_digest() -> str:
    """A digest of what the job ships: changes when any shipped file does."""
    h = hashlib.sha256()
    for p in package_files():
        h.update(str(p.relative_to(PACKAGE.parent)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def package_zip() -> bytes:
    """The package as ``--py-files`` takes it: ``pipeline_code/...`` at the top."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in package_files():
            z.write(p, str(p.relative_to(PACKAGE.parent)))
    return buf.getvalue()


NODE_MEMORY = {"Small": ("28g", 4), "Medium": ("56g", 8), "Large": ("112g", 16)}


def job_definition(
    *,
    pool: str,
    file: str,
    py_files: str,
    args: list[str],
    node_size: str,
    min_executors: int,
    max_executors: int,
    description: str = "Data-Flow: the shared Spark adapter over Event Hubs Capture",
) -> dict[str, Any]:
    """The definition as the Synapse REST API takes it."""
    memory, cores = NODE_MEMORY[node_size]
    return {
        "properties": {
            "description": description,
            "targetBigDataPool": {"referenceName": pool, "type": "BigDataPoolReference"},
            "requiredSparkVersion": SPARK_VERSION,
            "language": "python",
            "jobProperties": {
                "name": "dataflow",
                "file": file,
                "args": args,
                "conf": {
                    "spark.submit.pyFiles": py_files,
                    "spark.dynamicAllocation.enabled": "true",
                    "spark.dynamicAllocation.minExecutors": str(min_executors),
                    "spark.dynamicAllocation.maxExecutors": str(max_executors),
                },
                "driverMemory": memory,
                "driverCores": cores,
                "executorMemory": memory,
                "executorCores": cores,
                "numExecutors": min_executors,
            },
        }
    }


SYNAPSE_API = "2020-12-01"
STORAGE_API = "2023-11-03"


class _Azure:
    """The two data-plane REST calls the provider makes, with Entra ID tokens
    from ``azure-identity`` and ``httpx`` (the SDKs would add ~23 MB to the
    ``azure`` extra for two calls)."""

    def __init__(self, poll_s: float = 2.0) -> None:
        import httpx
        from azure.identity import DefaultAzureCredential

        self.credential = DefaultAzureCredential()
        self.http = httpx.Client(timeout=60)
        self.poll_s = poll_s

    def _headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential.get_token(scope).token}"}

    def _check(self, response, what: str):
        if response.status_code >= 400:
            raise RuntimeError(f"{what}: {response.status_code} {response.text[:500]}")
        return response

    def upload(self, target: str, data: bytes) -> None:
        """Create, append and flush one file in ADLS Gen2 (``abfss://container@account...``)."""
        u = urlparse(target)
        container, _, host = u.netloc.partition("@")
        url = f"https://{host}/{container}{u.path}"
        headers = {**self._headers("https://storage.azure.com/.default"), "x-ms-version": STORAGE_API}
        self._check(self.http.put(url, params={"resource": "file"}, headers=headers), f"create {target}")
        self._check(
            self.http.patch(url, params={"action": "append", "position": 0}, headers=headers, content=data),
            f"append {target}",
        )
        self._check(
            self.http.patch(url, params={"action": "flush", "position": len(data)}, headers=headers),
            f"flush {target}",
        )

    def _wait(self, response, what: str) -> None:
        import time

        location = response.headers.get("Location") or response.headers.get("Azure-AsyncOperation")
        headers = self._headers("https://dev.azuresynapse.net/.default")
        while response.status_code == 202 and location:
            time.sleep(self.poll_s)
            response = self._check(self.http.get(location, headers=headers), what)
        body = response.json() if response.content else {}
        if str(body.get("status", "")).lower() == "failed":
            raise RuntimeError(f"{what} failed: {body.get('error')}")

    def put_definition(self, endpoint: str, name: str, definition: dict[str, Any]) -> None:
        url = f"{endpoint.rstrip('/')}/sparkJobDefinitions/{name}"
        headers = self._headers("https://dev.azuresynapse.net/.default")
        what = f"publish Spark job definition {name}"
        response = self.http.put(url, params={"api-version": SYNAPSE_API}, headers=headers, json=definition)
        self._wait(self._check(response, what), what)

    def delete_definition(self, endpoint: str, name: str) -> None:
        url = f"{endpoint.rstrip('/')}/sparkJobDefinitions/{name}"
        headers = self._headers("https://dev.azuresynapse.net/.default")
        what = f"delete Spark job definition {name}"
        response = self.http.delete(url, params={"api-version": SYNAPSE_API}, headers=headers)
        if response.status_code != 404:
            self._wait(self._check(response, what), what)

    def role_id(self, endpoint: str, role_name: str) -> str:
        """A Synapse RBAC role's id by its name (ids differ by cloud; names do not)."""
        headers = self._headers("https://dev.azuresynapse.net/.default")
        response = self._check(
            self.http.get(f"{endpoint.rstrip('/')}/roleDefinitions", params={"api-version": SYNAPSE_API},
                          headers=headers),
            "list Synapse roles",
        )  # fmt: skip
        for role in response.json().get("value", []):
            if role.get("name") == role_name:
                return role["id"]
        raise RuntimeError(f"Synapse has no role named {role_name!r}")

    def put_role_assignment(self, endpoint: str, assignment_id: str, body: dict[str, Any]) -> None:
        headers = self._headers("https://dev.azuresynapse.net/.default")
        url = f"{endpoint.rstrip('/')}/roleAssignments/{assignment_id}"
        self._check(self.http.put(url, params={"api-version": SYNAPSE_API}, headers=headers, json=body),
                    f"assign Synapse role {assignment_id}")  # fmt: skip

    def delete_role_assignment(self, endpoint: str, assignment_id: str) -> None:
        headers = self._headers("https://dev.azuresynapse.net/.default")
        url = f"{endpoint.rstrip('/')}/roleAssignments/{assignment_id}"
        response = self.http.delete(url, params={"api-version": SYNAPSE_API}, headers=headers)
        if response.status_code not in (200, 204, 404):
            self._check(response, f"remove Synapse role {assignment_id}")


def role_assignment_body(role_id: str, principal_id: str, workspace: str) -> dict[str, Any]:
    """A workspace-scoped Synapse RBAC assignment, as the REST API takes it."""
    return {"roleId": role_id, "principalId": principal_id, "scope": f"workspaces/{workspace}"}


class SynapseRoleProvider(ResourceProvider):
    """Synapse RBAC (workspace data plane; ARM cannot assign it) for one principal."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(k, f"{k} is required (got {news.get(k)!r})")
            for k in ("endpoint", "workspace", "role", "principal_id", "assignment_id")
            if not news.get(k)
        ]
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [
            k for k in ("endpoint", "workspace", "role", "principal_id") if olds.get(k) != news.get(k)
        ]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        azure = _Azure()
        role_id = azure.role_id(props["endpoint"], props["role"])
        body = role_assignment_body(role_id, props["principal_id"], props["workspace"])
        azure.put_role_assignment(props["endpoint"], props["assignment_id"], body)
        return CreateResult(id_=props["assignment_id"], outs=props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _Azure().delete_role_assignment(props["endpoint"], props["assignment_id"])


class SynapseRoleAssignment(pulumi.dynamic.Resource):
    """A Synapse RBAC role (e.g. "Synapse Compute Operator") for a principal on the workspace."""

    def __init__(
        self,
        name: str,
        *,
        endpoint: pulumi.Input[str],
        workspace: pulumi.Input[str],
        role: str,
        principal_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        import uuid

        props = {
            "endpoint": endpoint,
            "workspace": workspace,
            "role": role,
            "principal_id": principal_id,
            # Stable per stack and resource: re-running never duplicates it.
            "assignment_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"data-flow/{pulumi.get_stack()}/{name}")),
        }
        super().__init__(SynapseRoleProvider(), name, props, opts)


class SparkJobDefinitionProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not str(news.get("endpoint", "")).startswith("https://"):
            failures.append(
                CheckFailure("endpoint", f"endpoint must be https:// (got {news.get('endpoint')!r})")
            )
        if not news.get("name"):
            failures.append(CheckFailure("name", f"name is required (got {news.get('name')!r})"))
        job = (news.get("definition") or {}).get("properties", {}).get("jobProperties", {})
        if not (SPARK / str(news.get("script", ""))).is_file() or not news.get("script"):
            failures.append(
                CheckFailure("script", f"script must name a file in {SPARK} (got {news.get('script')!r})")
            )
        if not str(job.get("file", "")).startswith("abfss://"):
            failures.append(
                CheckFailure("definition", f"the job's file must be abfss:// (got {job.get('file')!r})")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("endpoint", "name") if olds.get(k) != news.get(k)]
        changed = replaces or any(
            olds.get(k) != news.get(k)
            for k in ("definition", "code_digest", "script", "script_uri", "package_uri")
        )
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def _put(self, props: dict[str, Any]) -> None:
        azure = _Azure()
        azure.upload(props["script_uri"], (SPARK / props["script"]).read_bytes())
        azure.upload(props["package_uri"], package_zip())
        azure.put_definition(props["endpoint"], props["name"], props["definition"])

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._put(props)
        return CreateResult(id_=f"{props['endpoint']}/sparkJobDefinitions/{props['name']}", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._put(news)
        return UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _Azure().delete_definition(props["endpoint"], props["name"])


class SparkJobDefinition(pulumi.dynamic.Resource):
    """A Spark job definition published to a Synapse workspace."""

    def __init__(
        self,
        name: str,
        *,
        endpoint: pulumi.Input[str],
        definition_name: str,
        definition: pulumi.Input[dict[str, Any]],
        script: str,
        script_uri: pulumi.Input[str],
        package_uri: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "endpoint": endpoint,
            "name": definition_name,
            "definition": definition,
            "script": script,
            "script_uri": script_uri,
            "package_uri": package_uri,
            "code_digest": package_digest(),
        }
        super().__init__(SparkJobDefinitionProvider(), name, props, opts)
