"""Processing on Azure: Data Factory runs the shared code as a Synapse Spark job.

- a Spark pool sized from the spec (node size from ``azure.spark_node_size``,
  autoscale between the spec's workers, at least the 3 nodes Synapse needs),
  auto-paused after 15 idle minutes, with ``pipeline_code/spark/requirements-synapse.txt``
  as its library requirements;
- the Spark job definition (``components/azure/synapse_job.py``) running
  ``pipeline_code/spark/synapse_job.py`` with the package as ``spark.submit.pyFiles``,
  both uploaded by Pulumi to the lake's ``work`` container;
- a Data Factory with a managed identity, a linked service to the workspace
  (managed identity auth), a pipeline whose one ``SparkJob`` activity runs
  the definition with the retry policy below, at most one run at a time, and
  a schedule trigger that starts it every ``processing.restart_minutes``: the job is a long-running
  stream, so a start while it runs is queued behind it, and a job that stopped
  comes back within that time.

The replay job definition (``dataflow-replay``: ``pipeline_code/spark/synapse_replay_job.py``
over the capture container's root) has its own pipeline, ``dataflow-replay``,
with no trigger: a run names what to replay in its parameters, no retries,
stopped after 12 hours::

    az datafactory pipeline create-run -g RG --factory-name FACTORY --name dataflow-replay \
        --parameters '{"replay": "archive", "from": "2026-11-01", "to": "2026-11-02"}'

Spark in Synapse runs as the workspace's managed identity, so the replay job
has the streaming job's grants: capture read, the lake's work containers,
the SQL pool's writer role; it reads the archive instead of a stream.

The pipelines' JSON (``pipeline_definition``) is what the Pipeline resources are
built from and what the tests validate with the ``azure-mgmt-datafactory`` models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
from pulumi_azure_native import applicationinsights, datafactory, synapse

from components.azure.security import Lake
from components.azure.synapse_job import (
    SPARK_VERSION,
    SparkJobDefinition,
    SynapseRoleAssignment,
    job_definition,
)
from components.azure.warehouse import Warehouse
from components.spec import ProcessingSpec
from pipeline_code.host import REPLAY_FLAGS, job_arguments

TYPE = "data-flow:azure:Processing"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "pipeline_code" / "spark" / "requirements-synapse.txt"
JOB = "dataflow-stream"
REPLAY_JOB = "dataflow-replay"
ACTIVITY = "RunSparkAdapter"
STREAM_TIMEOUT = "7.00:00:00"
"""A stream runs until stopped; Data Factory's ceiling is 7 days."""
REPLAY_TIMEOUT = "0.12:00:00"
"""A replay run is stopped after 12 hours."""

MIN_NODES = 3  # Synapse's floor for a Spark pool


def pipeline_definition(
    *,
    linked_service: str,
    job: str,
    pool: str,
    retries: int,
    retry_interval_s: int,
    description: str = "Runs the Data-Flow Spark adapter on Synapse (a long-running stream)",
    timeout: str = STREAM_TIMEOUT,
    args: list[str] | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pipeline as the Data Factory REST API takes it; ``args`` (when
    given) replace the job definition's, and may use ``parameters``."""
    spark_job: dict[str, Any] = {
        "sparkJob": {"referenceName": job, "type": "SparkJobDefinitionReference"},
        "targetBigDataPool": {"referenceName": pool, "type": "BigDataPoolReference"},
    }
    if args is not None:
        spark_job["args"] = args
    properties: dict[str, Any] = {
        "description": description,
        "concurrency": 1,
        "activities": [
            {
                "name": ACTIVITY,
                "type": "SparkJob",
                "linkedServiceName": {"referenceName": linked_service, "type": "LinkedServiceReference"},
                "policy": {
                    "retry": retries,
                    "retryIntervalInSeconds": retry_interval_s,
                    "timeout": timeout,
                    "secureInput": False,
                    "secureOutput": False,
                },
                "typeProperties": spark_job,
            }
        ],
    }
    if parameters:
        properties["parameters"] = parameters
    return {"properties": properties}


def parameter_name(flag: str) -> str:
    """A replay flag's pipeline parameter: ``replay_from`` -> ``from``, ``replay`` stays."""
    return flag.removeprefix("replay_")


def replay_parameters() -> dict[str, dict[str, Any]]:
    """The replay pipeline's parameters, one per replay flag (``replay``,
    ``from``, ``to``, ``stage``, ``since``), empty when unused."""
    return {
        parameter_name(flag): {"type": "String", **({} if flag == "replay" else {"defaultValue": ""})}
        for flag in REPLAY_FLAGS
    }


def replay_args(base: list[str]) -> list[str]:
    """The replay job's arguments: its own, then each replay flag from the
    pipeline run's parameters (``--flag=value``, so an empty one stays an
    argument rather than vanishing)."""
    return [*base, *(f"--{flag}=@{{pipeline().parameters.{parameter_name(flag)}}}" for flag in REPLAY_FLAGS)]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_keys(value: Any) -> Any:
    """REST JSON -> Pulumi inputs: every key snake_case, recursively."""
    if isinstance(value, dict):
        return {_snake(k): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


PULUMI_NAMES = {"args": "arguments"}
"""REST properties azure-native names otherwise."""


def activity_args(activity: dict[str, Any]) -> dict[str, Any]:
    """A REST activity -> the Pulumi input: ``typeProperties`` flattened, keys snake_case."""
    flat = {k: v for k, v in activity.items() if k != "typeProperties"} | activity.get("typeProperties", {})
    return snake_keys({PULUMI_NAMES.get(k, k): v for k, v in flat.items()})


def spark_activity(activity: dict[str, Any]) -> datafactory.SynapseSparkJobDefinitionActivityArgs:
    """A REST ``SparkJob`` activity as azure-native's typed input: the activity
    list is a union, and only typed args get their keys translated when a value
    is an Output (the replay's arguments)."""
    return datafactory.SynapseSparkJobDefinitionActivityArgs(**activity_args(activity))


class Processing(pulumi.ComponentResource):
    """The Synapse Spark pool and job definition, started and restarted by Data Factory.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        processing: ``data-flow:processing``: micro-batch, windows, shards, workers, retries
            (``ProcessingSpec.settings()`` becomes the job's arguments).
        warehouse: The warehouse link the job writes to (through its grant verbs).
        lake: The chain's lake (``Lake``): its containers are the scopes of this link's grants.
        capture_path: Path in the lake's capture container where Capture writes
            (``<namespace>/<hub>/``).
        log_workspace_id: Log Analytics workspace that diagnostics go to.
        node_size: Spark pool node size (``azure.spark_node_size``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    pool: synapse.BigDataPool
    factory: datafactory.Factory
    pipeline: datafactory.Pipeline
    replay_pipeline: datafactory.Pipeline

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        processing: ProcessingSpec,
        warehouse: Warehouse,
        lake: Lake,
        capture_path: pulumi.Input[str],
        log_workspace_id: pulumi.Input[str],
        node_size: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lo = max(MIN_NODES, processing.min_workers)
        hi = max(lo, processing.max_workers)
        self.pool = synapse.BigDataPool(
            f"{name}-spark",
            big_data_pool_name="dataflow",
            resource_group_name=resource_group,
            workspace_name=warehouse.workspace.name,
            location=location,
            spark_version=SPARK_VERSION,
            node_size=node_size,
            node_size_family="MemoryOptimized",
            auto_scale={"enabled": True, "min_node_count": lo, "max_node_count": hi},
            auto_pause={"enabled": True, "delay_in_minutes": 15},
            dynamic_executor_allocation={"enabled": True, "min_executors": 1, "max_executors": hi - 1},
            library_requirements={"filename": "requirements.txt", "content": REQUIREMENTS.read_text()},
            session_level_packages_enabled=False,
            tags=tags,
            opts=child,
        )
        # The job's counts per micro-batch (dead letters, spilled batches) land
        # here as custom metrics; Monitoring alerts on them. Ingestion takes the
        # connection string's key, which only allows sending telemetry.
        self.insights = applicationinsights.Component(
            f"{name}-insights",
            resource_group_name=resource_group,
            location=location,
            kind="other",
            application_type="other",
            workspace_resource_id=log_workspace_id,
            tags=tags,
            opts=child,
        )
        package_uri = lake.abfss("work", "code/pipeline_code.zip")
        args = pulumi.Output.all(
            lake.abfss("capture", ""), capture_path, lake.abfss("work", ""), lake.abfss("dead-letters", ""),
            warehouse.sql_endpoint, warehouse.sql_pool.name, self.insights.connection_string,
        ).apply(
            lambda v: [
                "--capture_uri", f"{v[0]}{v[1]}",
                "--staging_uri", f"{v[2]}staging",
                "--checkpoint_uri", f"{v[2]}checkpoint",
                "--dead_letter_uri", v[3],
                "--sql_server", v[4],
                "--sql_database", v[5],
                "--job_name", JOB,
                *(part for arg in job_arguments(processing.settings()).items() for part in arg),
                "--commit_attempts", str(processing.retries + 1),
                "--insights_connection", v[6],
            ]
        )  # fmt: skip
        self.job = self._definition(
            f"{name}-job", JOB, "synapse_job.py", args, lake, package_uri, warehouse, node_size, hi
        )
        self.factory = datafactory.Factory(
            f"{name}-factory",
            resource_group_name=resource_group,
            location=location,
            identity={"type": "SystemAssigned"},
            public_network_access="Disabled",
            tags=tags,
            opts=child,
        )
        # The factory runs the job definition: Synapse's own RBAC, which ARM cannot assign.
        factory_principal = self.factory.identity.apply(lambda i: i.principal_id)
        self.synapse_roles = [
            SynapseRoleAssignment(
                f"{name}-factory-{role.split()[-2].lower()}",
                endpoint=warehouse.dev_endpoint,
                workspace=warehouse.workspace.name,
                role=role,
                principal_id=factory_principal,
                opts=pulumi.ResourceOptions(parent=self, depends_on=warehouse.private_endpoints),
            )
            for role in ("Synapse Compute Operator", "Synapse Artifact User")
        ]
        self.linked_service = datafactory.LinkedService(
            f"{name}-synapse",
            linked_service_name="synapse",
            factory_name=self.factory.name,
            resource_group_name=resource_group,
            properties={
                "type": "AzureSynapseArtifacts",
                "endpoint": warehouse.dev_endpoint,
                "authentication": "MSI",
                "workspace_resource_id": warehouse.workspace.id,
            },
            opts=child,
        )
        self.definition = pipeline_definition(
            linked_service="synapse",
            job=JOB,
            pool="dataflow",
            retries=processing.retries,
            retry_interval_s=300,
        )
        props = self.definition["properties"]
        self.pipeline = datafactory.Pipeline(
            f"{name}-pipeline",
            pipeline_name="dataflow-stream",
            factory_name=self.factory.name,
            resource_group_name=resource_group,
            description=props["description"],
            concurrency=props["concurrency"],
            activities=[spark_activity(a) for a in props["activities"]],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.linked_service, self.job, *self.synapse_roles]
            ),
        )
        self.trigger = datafactory.Trigger(
            f"{name}-keep-running",
            trigger_name="keep-running",
            factory_name=self.factory.name,
            resource_group_name=resource_group,
            properties={
                "type": "ScheduleTrigger",
                "recurrence": {
                    "frequency": "Minute",
                    "interval": processing.restart_minutes,
                    "time_zone": "UTC",
                },
                "pipelines": [
                    {"pipeline_reference": {"reference_name": "dataflow-stream", "type": "PipelineReference"}}
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.pipeline]),
        )
        self._replay(name, resource_group, processing, warehouse, lake, package_uri, node_size, hi)
        # What to watch: Monitoring takes the link and reads these (resource ids: scopes, diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "factory": self.factory.id,
            "job_insights": self.insights.id,
        }
        self.register_outputs(
            {"pipeline": self.pipeline.name, "job": JOB, "replay_pipeline": self.replay_pipeline.name}
        )

    def _definition(
        self,
        resource_name: str,
        job: str,
        script: str,
        args: pulumi.Input[list[str]],
        lake: Lake,
        package_uri: pulumi.Input[str],
        warehouse: Warehouse,
        node_size: str,
        max_nodes: int,
        description: str | None = None,
    ) -> SparkJobDefinition:
        """A Spark job definition of the link on its pool: ``script`` (in
        ``pipeline_code/spark/``) uploaded to the lake's ``work/code/``."""
        script_uri = lake.abfss("work", f"code/{script}")
        definition = pulumi.Output.all(self.pool.name, script_uri, package_uri, args).apply(
            lambda v: job_definition(
                pool=v[0],
                file=v[1],
                py_files=v[2],
                args=v[3],
                node_size=node_size,
                min_executors=1,
                max_executors=max_nodes - 1,
                **({"description": description} if description else {}),
            )
        )
        return SparkJobDefinition(
            resource_name,
            endpoint=warehouse.dev_endpoint,
            definition_name=job,
            definition=definition,
            script=script,
            script_uri=script_uri,
            package_uri=package_uri,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*warehouse.lake_grants, *warehouse.private_endpoints]
            ),
        )

    def _replay(
        self,
        name: str,
        resource_group: pulumi.Input[str],
        processing: ProcessingSpec,
        warehouse: Warehouse,
        lake: Lake,
        package_uri: pulumi.Input[str],
        node_size: str,
        max_nodes: int,
    ) -> None:
        """The replay job definition and the pipeline that runs it on demand."""
        base = pulumi.Output.all(
            lake.abfss("capture", ""), lake.abfss("work", ""), warehouse.sql_endpoint, warehouse.sql_pool.name
        ).apply(
            lambda v: [
                "--capture_uri", v[0],
                "--staging_uri", f"{v[1]}staging",
                "--sql_server", v[2],
                "--sql_database", v[3],
                "--job_name", REPLAY_JOB,
                *(part for arg in job_arguments(processing.settings()).items() for part in arg),
            ]
        )  # fmt: skip
        self.replay_job = self._definition(
            f"{name}-replay-job", REPLAY_JOB, "synapse_replay_job.py", base, lake, package_uri, warehouse,
            node_size, max_nodes,
            "Data-Flow: a replay of Capture's archive or the dead letters (on demand)",
        )  # fmt: skip
        # A plain definition with the arguments as its one Output leaf: Pulumi translates
        # the keys of plain dicts only.
        self.replay_definition = pipeline_definition(
            linked_service="synapse",
            job=REPLAY_JOB,
            pool="dataflow",
            # A failed replay committed nothing: it is started again by hand.
            retries=0,
            retry_interval_s=30,
            description="Replays an archive range or the dead letters through the Spark adapter",
            timeout=REPLAY_TIMEOUT,
            args=base.apply(replay_args),  # type: ignore[arg-type]
            parameters=replay_parameters(),
        )
        props = self.replay_definition["properties"]
        self.replay_pipeline = datafactory.Pipeline(
            f"{name}-replay-pipeline",
            pipeline_name=REPLAY_JOB,
            factory_name=self.factory.name,
            resource_group_name=resource_group,
            description=props["description"],
            concurrency=props["concurrency"],
            parameters=snake_keys(props["parameters"]),
            activities=[spark_activity(a) for a in props["activities"]],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.linked_service, self.replay_job, *self.synapse_roles]
            ),
        )
