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

The pipeline's JSON (``pipeline_definition``) is what the Pipeline resource is
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
from pipeline_code.host import job_arguments

TYPE = "data-flow:azure:Processing"
REQUIREMENTS = Path(__file__).resolve().parents[2] / "pipeline_code" / "spark" / "requirements-synapse.txt"
JOB = "dataflow-stream"
ACTIVITY = "RunSparkAdapter"
MIN_NODES = 3  # Synapse's floor for a Spark pool


def pipeline_definition(
    *, linked_service: str, job: str, pool: str, retries: int, retry_interval_s: int
) -> dict[str, Any]:
    """The pipeline as the Data Factory REST API takes it."""
    return {
        "properties": {
            "description": "Runs the Data-Flow Spark adapter on Synapse (a long-running stream)",
            "concurrency": 1,
            "activities": [
                {
                    "name": ACTIVITY,
                    "type": "SparkJob",
                    "linkedServiceName": {"referenceName": linked_service, "type": "LinkedServiceReference"},
                    "policy": {
                        "retry": retries,
                        "retryIntervalInSeconds": retry_interval_s,
                        # A stream runs until stopped; Data Factory's ceiling is 7 days.
                        "timeout": "7.00:00:00",
                        "secureInput": False,
                        "secureOutput": False,
                    },
                    "typeProperties": {
                        "sparkJob": {"referenceName": job, "type": "SparkJobDefinitionReference"},
                        "targetBigDataPool": {"referenceName": pool, "type": "BigDataPoolReference"},
                    },
                }
            ],
        }
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def activity_args(activity: dict[str, Any]) -> dict[str, Any]:
    """A REST activity -> the Pulumi input: ``typeProperties`` flattened, keys snake_case."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {_snake(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    flat = {k: v for k, v in activity.items() if k != "typeProperties"} | activity.get("typeProperties", {})
    return convert(flat)


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
        script_uri = lake.abfss("work", "code/synapse_job.py")
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
        definition = pulumi.Output.all(self.pool.name, script_uri, package_uri, args).apply(
            lambda v: job_definition(
                pool=v[0],
                file=v[1],
                py_files=v[2],
                args=v[3],
                node_size=node_size,
                min_executors=1,
                max_executors=hi - 1,
            )
        )
        self.job = SparkJobDefinition(
            f"{name}-job",
            endpoint=warehouse.dev_endpoint,
            definition_name=JOB,
            definition=definition,
            script_uri=script_uri,
            package_uri=package_uri,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*warehouse.lake_grants, *warehouse.private_endpoints]
            ),
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
            activities=[activity_args(a) for a in props["activities"]],
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
        # What to watch: Monitoring takes the link and reads these (resource ids: scopes, diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "factory": self.factory.id,
            "job_insights": self.insights.id,
        }
        self.register_outputs({"pipeline": self.pipeline.name, "job": JOB})
