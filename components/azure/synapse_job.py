"""The Synapse Spark job definition: its shape, and a dynamic provider that publishes it.

Spark job definitions live in the Synapse workspace's data plane
(``https://WORKSPACE.dev.azuresynapse.net``), not in ARM, so no Pulumi
resource creates one. ``job_definition(...)`` builds the definition
(validated in the tests with the ``azure-synapse-artifacts`` models), and
``SparkJobDefinition`` publishes it with that SDK and ``azure-identity``.
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
SCRIPT = PACKAGE / "spark" / "synapse_job.py"
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
) -> dict[str, Any]:
    """The definition as the Synapse REST API takes it."""
    memory, cores = NODE_MEMORY[node_size]
    return {
        "properties": {
            "description": "Data-Flow: the shared Spark adapter over Event Hubs Capture",
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


def _client(endpoint: str):
    from azure.identity import DefaultAzureCredential
    from azure.synapse.artifacts import ArtifactsClient

    return ArtifactsClient(credential=DefaultAzureCredential(), endpoint=endpoint)


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
        if not str(job.get("file", "")).startswith("abfss://"):
            failures.append(
                CheckFailure("definition", f"the job's file must be abfss:// (got {job.get('file')!r})")
            )
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("endpoint", "name") if olds.get(k) != news.get(k)]
        changed = replaces or any(
            olds.get(k) != news.get(k) for k in ("definition", "code_digest", "script_uri", "package_uri")
        )
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def _upload(self, props: dict[str, Any]) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.storage.filedatalake import DataLakeServiceClient

        for target, data in (
            (props["script_uri"], SCRIPT.read_bytes()),
            (props["package_uri"], package_zip()),
        ):
            u = urlparse(target)
            container, _, host = u.netloc.partition("@")
            service = DataLakeServiceClient(f"https://{host}", credential=DefaultAzureCredential())
            service.get_file_client(container, u.path.lstrip("/")).upload_data(data, overwrite=True)

    def _put(self, props: dict[str, Any]) -> None:
        from azure.synapse.artifacts.models import SparkJobDefinitionResource

        self._upload(props)
        resource = SparkJobDefinitionResource.from_dict(props["definition"])
        poller = _client(props["endpoint"]).spark_job_definition.begin_create_or_update_spark_job_definition(
            props["name"], resource
        )
        poller.result()

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._put(props)
        return CreateResult(id_=f"{props['endpoint']}/sparkJobDefinitions/{props['name']}", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._put(news)
        return UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _client(props["endpoint"]).spark_job_definition.begin_delete_spark_job_definition(
            props["name"]
        ).result()


class SparkJobDefinition(pulumi.dynamic.Resource):
    """A Spark job definition published to a Synapse workspace."""

    def __init__(
        self,
        name: str,
        *,
        endpoint: pulumi.Input[str],
        definition_name: str,
        definition: pulumi.Input[dict[str, Any]],
        script_uri: pulumi.Input[str],
        package_uri: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "endpoint": endpoint,
            "name": definition_name,
            "definition": definition,
            "script_uri": script_uri,
            "package_uri": package_uri,
            "code_digest": package_digest(),
        }
        super().__init__(SparkJobDefinitionProvider(), name, props, opts)
