"""The whole chain on Azure, from one ``ChainSpec``.

    trackers -> Function App (Collector) -> Event Hubs (Ingest, captured to the lake)
        -> Data Factory + Synapse Spark (Processing)
        -> Synapse dedicated SQL (Warehouse) -> Azure ML (Model) -> Functions (Serve),
    watched by Monitoring, in one resource group
    Event Hubs -> Function (FastPath) -> Table storage (UserState) -> read by Serve
    Event Hubs Capture -> the lake's capture container (Archive)

Each link is its own component and can be used alone; this one wires them:
Capture writes the lake container the Spark job reads, the job merges into
the pool the Warehouse created, the API scores the endpoint the Model
created, and each identity gets role assignments on exactly those
resources. ``outputs()`` is the stack's contract for other stacks (the same
names on every cloud).
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization, operationalinsights, resources

from components.azure.archive import Archive
from components.azure.collector import Collector
from components.azure.fastpath import FastPath, UserState
from components.azure.ingest import CAPTURE, DEAD_LETTERS, Ingest
from components.azure.model import Model
from components.azure.monitoring import Monitoring
from components.azure.processing import Processing
from components.azure.security import Lake
from components.azure.serve import Serve
from components.azure.training import Training
from components.azure.warehouse import FILESYSTEM, Warehouse
from components.outputs import ChainOutputs
from components.spec import ChainSpec, SpecError

TYPE = "data-flow:azure:Chain"
LAKE_CONTAINERS = [CAPTURE, FILESYSTEM, "work", DEAD_LETTERS]


class AzureChain(pulumi.ComponentResource):
    """Every link of the chain on Azure.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        spec: The validated chain spec (``components.spec.load_spec``); its ``azure`` section is
            required.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    def __init__(self, name: str, spec: ChainSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        if spec.cloud != "azure" or spec.azure is None:
            raise SpecError(
                f"AzureChain needs data-flow:cloud 'azure' and a data-flow:azure section (got {spec.cloud!r})"
            )
        super().__init__(TYPE, name, None, opts)
        az = spec.azure
        tags = spec.house_labels()
        child = pulumi.ResourceOptions(parent=self)
        client = authorization.get_client_config_output()
        subscription, tenant = client.subscription_id, client.tenant_id
        where = {"location": az.location, "tags": tags}

        self.group = resources.ResourceGroup(f"{name}-rg", **where, opts=child)
        rg = self.group.name
        self.logs = operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=rg,
            sku={"name": "PerGB2018"},
            retention_in_days=30,
            **where,
            opts=child,
        )
        self.lake = Lake(
            f"{name}-lake",
            resource_group=rg,
            location=az.location,
            containers=LAKE_CONTAINERS,
            tags=tags,
            cmk_key_url=az.cmk_key_url,
            opts=child,
        )
        self.ingest = Ingest(
            f"{name}-ingest",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            stream=spec.stream,
            lake=self.lake,
            partitions=az.eventhub_partitions,
            zone_redundant=az.zone_redundant,
            tags=tags,
            opts=child,
        )
        self.archive = Archive(
            f"{name}-archive",
            resource_group=rg,
            subscription_id=subscription,
            lake=self.lake,
            archive=spec.archive,
            opts=child,
        )
        self.warehouse = Warehouse(
            f"{name}-warehouse",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            warehouse=spec.warehouse,
            lake=self.lake,
            admin_object_id=az.sql_admin_object_id,
            admin_login=az.sql_admin_login,
            tenant_id=tenant,
            private_endpoint_subnet_id=az.private_endpoint_subnet_id,
            sql_pool_sku=az.sql_pool_sku,
            tags=tags,
            cmk_key_url=az.cmk_key_url,
            opts=child,
        )
        self.processing = Processing(
            f"{name}-process",
            resource_group=rg,
            location=az.location,
            processing=spec.processing,
            warehouse=self.warehouse,
            lake=self.lake,
            capture_path=pulumi.Output.concat(self.ingest.namespace.name, "/", self.ingest.hub.name, "/"),
            log_workspace_id=self.logs.id,
            node_size=az.spark_node_size,
            tags=tags,
            opts=child,
        )
        self.model = Model(
            f"{name}-ml",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            tenant_id=tenant,
            model=spec.model,
            image=az.model_server_image,
            artifact_uri=az.model_artifact_uri,
            log_workspace_id=self.logs.id,
            private_endpoint_subnet_id=az.private_endpoint_subnet_id,
            tags=tags,
            opts=child,
        )
        self.training = Training(
            f"{name}-train",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            model_spec=spec.model,
            alerts=spec.alerts,
            warehouse=self.warehouse,
            model=self.model,
            image=az.training_image,
            tags=tags,
            opts=child,
        )
        self.user_state = UserState(
            f"{name}-state",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            private_endpoint_subnet_id=az.private_endpoint_subnet_id,
            tags=tags,
            cmk_key_url=az.cmk_key_url,
            opts=child,
        )
        self.serve = Serve(
            f"{name}-serve",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            tenant_id=tenant,
            model=self.model,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            serve=spec.serve,
            image=az.api_image,
            subnet_id=az.function_subnet_id,
            insights_connection=self.model.insights.connection_string,
            client_id=az.api_client_id,
            tags=tags,
            opts=child,
        )
        self.fast_path = FastPath(
            f"{name}-fast",
            resource_group=rg,
            location=az.location,
            subscription_id=subscription,
            ingest=self.ingest,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            image=az.api_image,
            function_host=self.serve.function_host,
            subnet_id=az.function_subnet_id,
            log_workspace_id=self.logs.id,
            tags=tags,
            opts=child,
        )
        self.collector = None
        if spec.collector.enabled:
            self.collector = Collector(
                f"{name}-collector",
                resource_group=rg,
                location=az.location,
                subscription_id=subscription,
                tenant_id=tenant,
                ingest=self.ingest,
                collector=spec.collector,
                image=az.api_image,
                tags=tags,
                function_host=self.serve.function_host,
                opts=child,
            )
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            resource_group=rg,
            alerts=spec.alerts,
            log_workspace_id=self.logs.id,
            ingest=self.ingest,
            warehouse=self.warehouse,
            processing=self.processing,
            model=self.model,
            serve=self.serve,
            fast_path=self.fast_path,
            user_state=self.user_state,
            archive=self.archive,
            training=self.training,
            tags=tags,
            opts=child,
        )
        self.register_outputs(dict(self.outputs()))

    def outputs(self) -> ChainOutputs:
        """What other stacks read (``pulumi.StackReference``); same keys on every cloud."""
        return ChainOutputs(
            ingest_endpoint=self.ingest.hub.id,
            dead_letter_location=self.lake.abfss(DEAD_LETTERS, ""),
            warehouse_location=pulumi.Output.concat(
                self.warehouse.sql_endpoint, "/", self.warehouse.sql_pool.name
            ),
            processing_job=self.processing.pipeline.id,
            model_endpoint=self.model.endpoint.id,
            api_url=self.serve.url,
            collector_url=self.collector.url if self.collector else pulumi.Output.from_input(""),
            user_state_location=self.user_state.location,
            archive_location=self.archive.location,
            model_registry_location=self.training.location,
        )
