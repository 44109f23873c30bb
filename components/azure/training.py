"""The slow path on Azure: a scheduled export, an Azure ML command job that
gates, publishes and rolls out, and the model registry it keeps.

    Data Factory trigger (model.retrain - 30 min) -> Copy: Synapse query -> Parquet in the registry
    Azure ML schedule (model.retrain) -> command job (the training image, serverless compute)
        -> gate against models/production/ -> publish to models/ -> blue/green deployments, traffic shift
        -> its model_versions rows as Parquet in the registry (decisions/<version>.parquet)
    Data Factory trigger (model.retrain + 4 h 30 min) -> Copy, upsert by model_version -> model_versions

Why an export: the job reads Parquet through its input mount, so it needs no
path or credentials to the dedicated SQL pool, and the copy is one query a
day on the pool that already runs. The registry is a private container of
the Azure ML workspace's storage (no shared keys, no public blobs), reached
by the job through a datastore with identity access; it keeps
``training/latest/`` (the export), ``models/`` (every version,
``production/``, ``LATEST``, ``promotions.jsonl``).

Identities, each with exactly its grants:

- the factory's identity reads the warehouse (``grant_read``), writes
  ``model_versions`` (``grant_record_models``) and writes the registry container;
- the job's user-assigned identity writes the registry container and holds a
  custom role on the workspace with the model-version and online-endpoint
  actions only (register the version, create the deployment, shift traffic).

Why the decisions go through the factory: the dedicated SQL pool is reached
through the private route the factory already has; the job would need a
managed network of its own. They land in ``model_versions`` once the job's
time (4 hours) is up after each scheduled run; a run by hand is recorded
by the next day's copy, or by running ``training-record`` on demand.

With ``model.retrain`` null the triggers are stopped and the schedule
disabled; ``az ml job create`` with the schedule's job runs it on demand.
``python -m pipeline_code.ml.job --rollback`` as the same job rolls back.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumi_azure_native import authorization, datafactory, machinelearningservices, managedidentity, storage

from components.azure.model import Model
from components.azure.security import assign
from components.azure.warehouse import Warehouse
from components.spec import DEFAULT_RETRAIN, AlertSpec, ModelSpec, retrain_times
from pipeline_code.ml.export import export_sql

TYPE = "data-flow:azure:Training"
CONTAINER = "registry"
DECISIONS = "decisions/"
"""Where the job writes its model_versions rows in the registry (``ml.record``'s ``registry:``)."""
EXPERIMENT = "dataflow-training"
INSTANCE_TYPES = {"small": "Standard_DS3_v2", "medium": "Standard_DS4_v2", "large": "Standard_DS5_v2"}
DEPLOYER_ACTIONS = (
    "Microsoft.MachineLearningServices/workspaces/read",
    "Microsoft.MachineLearningServices/workspaces/models/read",
    "Microsoft.MachineLearningServices/workspaces/models/versions/read",
    "Microsoft.MachineLearningServices/workspaces/models/versions/write",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/read",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/write",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/read",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/delete",
)


def export_pipeline(*, parquet_dataset: str, sql_dataset: str) -> dict[str, Any]:
    """The export as the Data Factory REST API takes it: clear the last
    export, then copy the query's rows to Parquet."""
    return {
        "properties": {
            "description": "Data-Flow: the training export (ml.data.export_sql) to Parquet",
            "concurrency": 1,
            "activities": [
                {
                    "name": "ClearLastExport",
                    "type": "Delete",
                    "typeProperties": {
                        "dataset": {"referenceName": parquet_dataset, "type": "DatasetReference"},
                        "enableLogging": False,
                        "storeSettings": {"type": "AzureBlobStorageReadSettings", "recursive": True},
                    },
                },
                {
                    "name": "ExportTrainingData",
                    "type": "Copy",
                    "dependsOn": [{"activity": "ClearLastExport", "dependencyConditions": ["Succeeded"]}],
                    "policy": {"retry": 2, "retryIntervalInSeconds": 300, "timeout": "0.02:00:00"},
                    "inputs": [{"referenceName": sql_dataset, "type": "DatasetReference"}],
                    "outputs": [{"referenceName": parquet_dataset, "type": "DatasetReference"}],
                    "typeProperties": {
                        "source": {"type": "SqlDWSource", "sqlReaderQuery": export_sql("tsql")},
                        "sink": {
                            "type": "ParquetSink",
                            "storeSettings": {"type": "AzureBlobStorageWriteSettings"},
                        },
                    },
                },
            ],
        }
    }


RECORD_DELAY_MINUTES = 4 * 60 + 30
"""After the training schedule: the job's timeout (4 hours), then half an hour."""


def record_pipeline(*, parquet_dataset: str, sql_dataset: str) -> dict[str, Any]:
    """The decisions' copy as the Data Factory REST API takes it: every
    ``decisions/*.parquet`` upserted into ``model_versions`` by its key."""
    return {
        "properties": {
            "description": "Data-Flow: the training job's decisions (ml.record) into model_versions",
            "concurrency": 1,
            "activities": [
                {
                    "name": "RecordDecisions",
                    "type": "Copy",
                    "policy": {"retry": 2, "retryIntervalInSeconds": 300, "timeout": "0.01:00:00"},
                    "inputs": [{"referenceName": parquet_dataset, "type": "DatasetReference"}],
                    "outputs": [{"referenceName": sql_dataset, "type": "DatasetReference"}],
                    "typeProperties": {
                        "source": {
                            "type": "ParquetSource",
                            "storeSettings": {
                                "type": "AzureBlobStorageReadSettings",
                                "recursive": False,
                                "wildcardFileName": "*.parquet",
                            },
                        },
                        "sink": {
                            "type": "SqlDWSink",
                            "writeBehavior": "Upsert",
                            "upsertSettings": {"keys": ["model_version"]},
                        },
                    },
                }
            ],
        }
    }


def record_activities(definition: dict[str, Any]) -> list[Any]:
    """``record_pipeline``'s activity as azure-native's typed arguments."""
    df = datafactory
    (copy,) = definition["properties"]["activities"]
    c = copy["typeProperties"]
    read = c["source"]["storeSettings"]
    return [
        df.CopyActivityArgs(
            name=copy["name"],
            type="Copy",
            policy=df.ActivityPolicyArgs(
                retry=copy["policy"]["retry"],
                retry_interval_in_seconds=copy["policy"]["retryIntervalInSeconds"],
                timeout=copy["policy"]["timeout"],
            ),
            inputs=[
                df.DatasetReferenceArgs(reference_name=x["referenceName"], type=x["type"])
                for x in copy["inputs"]
            ],
            outputs=[
                df.DatasetReferenceArgs(reference_name=x["referenceName"], type=x["type"])
                for x in copy["outputs"]
            ],
            source=df.ParquetSourceArgs(
                type="ParquetSource",
                store_settings=df.AzureBlobStorageReadSettingsArgs(
                    type=read["type"],
                    recursive=read["recursive"],
                    wildcard_file_name=read["wildcardFileName"],
                ),
            ),
            sink=df.SqlDWSinkArgs(
                type="SqlDWSink",
                write_behavior=c["sink"]["writeBehavior"],
                upsert_settings=df.SqlDWUpsertSettingsArgs(keys=c["sink"]["upsertSettings"]["keys"]),
            ),
        )
    ]


def daily(pipeline: str, minute: int, hour: int) -> dict[str, Any]:
    """A schedule trigger's properties: ``pipeline`` every day at ``hour:minute`` UTC."""
    return {
        "type": "ScheduleTrigger",
        "recurrence": {
            "frequency": "Day",
            "interval": 1,
            "time_zone": "UTC",
            "schedule": {"minutes": [minute], "hours": [hour]},
        },
        "pipelines": [{"pipeline_reference": {"reference_name": pipeline, "type": "PipelineReference"}}],
    }


def export_activities(definition: dict[str, Any]) -> list[Any]:
    """``export_pipeline``'s activities as azure-native's typed arguments
    (activities, sources, sinks and store settings are unions)."""
    df = datafactory
    delete, copy = definition["properties"]["activities"]
    d, c = delete["typeProperties"], copy["typeProperties"]

    def dataset(ref: dict) -> df.DatasetReferenceArgs:
        return df.DatasetReferenceArgs(reference_name=ref["referenceName"], type=ref["type"])

    return [
        df.DeleteActivityArgs(
            name=delete["name"],
            type="Delete",
            dataset=dataset(d["dataset"]),
            enable_logging=d["enableLogging"],
            store_settings=df.AzureBlobStorageReadSettingsArgs(
                type=d["storeSettings"]["type"], recursive=d["storeSettings"]["recursive"]
            ),
        ),
        df.CopyActivityArgs(
            name=copy["name"],
            type="Copy",
            depends_on=[
                df.ActivityDependencyArgs(
                    activity=x["activity"], dependency_conditions=x["dependencyConditions"]
                )
                for x in copy["dependsOn"]
            ],
            policy=df.ActivityPolicyArgs(
                retry=copy["policy"]["retry"],
                retry_interval_in_seconds=copy["policy"]["retryIntervalInSeconds"],
                timeout=copy["policy"]["timeout"],
            ),
            inputs=[dataset(x) for x in copy["inputs"]],
            outputs=[dataset(x) for x in copy["outputs"]],
            source=df.SqlDWSourceArgs(
                type=c["source"]["type"], sql_reader_query=c["source"]["sqlReaderQuery"]
            ),
            sink=df.ParquetSinkArgs(
                type=c["sink"]["type"],
                store_settings=df.AzureBlobStorageWriteSettingsArgs(type=c["sink"]["storeSettings"]["type"]),
            ),
        ),
    ]


def command_job(
    *,
    datastore: str,
    environment_id: str,
    identity: machinelearningservices.ManagedIdentityArgs,
    instance_type: str,
    tolerance: float,
    rollout: str,
    insights_connection: pulumi.Input[str],
    name: str,
) -> machinelearningservices.CommandJobArgs:
    """The command job the schedule creates. Typed arguments: the job
    definition, its inputs and outputs are unions, which plain dicts would
    reach the engine untranslated."""
    ml = machinelearningservices
    path = f"azureml://datastores/{datastore}/paths"
    return ml.CommandJobArgs(
        job_type="Command",
        display_name="dataflow-training",
        experiment_name=EXPERIMENT,
        command=(
            "python -m pipeline_code.ml.job --training-data ${{inputs.data}} "
            "--production ${{inputs.production}} --registry ${{outputs.registry}} "
            f"--artifact-base {path}/models/ --model-out /tmp/model --tolerance {tolerance}"
        ),
        environment_id=environment_id,
        environment_variables={
            "ROLLOUT": rollout,
            # Its decisions, as files the factory upserts into model_versions.
            "WAREHOUSE": f"registry:{DECISIONS}",
            # The job's health (refusals in a row, the served model's age) for Monitoring's alerts.
            "TRAINING_METRICS": "appinsights",
            "TRAINING_NAME": name,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": insights_connection,
        },
        inputs={
            "data": ml.UriFolderJobInputArgs(
                job_input_type="uri_folder", uri=f"{path}/training/latest/", mode="ReadOnlyMount"
            ),
            "production": ml.UriFolderJobInputArgs(
                job_input_type="uri_folder", uri=f"{path}/models/production/", mode="ReadOnlyMount"
            ),
        },
        outputs={
            "registry": ml.UriFolderJobOutputArgs(
                job_output_type="uri_folder", uri=f"{path}/models/", mode="ReadWriteMount"
            )
        },
        identity=identity,
        resources=ml.JobResourceConfigurationArgs(instance_type=instance_type, instance_count=1),
        limits=ml.CommandJobLimitsArgs(job_limits_type="Command", timeout="PT4H"),
    )


class Training(pulumi.ComponentResource):
    """The export and training schedules, the job's identity, and the model registry.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group every child is created in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role assignments are scoped within it.
        model_spec: ``data-flow:model``: the schedule, the gate's tolerance, the canary and bake.
        alerts: ``data-flow:alerts``: (read by Monitoring) refusals in a row, the served model's age.
        warehouse: The warehouse link the export reads (``grant_read``).
        model: The model link: its workspace runs the job, its endpoint gets the rollouts.
        image: The training image in ACR (``pipeline_code/ml/Dockerfile``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    container: storage.BlobContainer
    identity: managedidentity.UserAssignedIdentity
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        model_spec: ModelSpec,
        alerts: AlertSpec,
        warehouse: Warehouse,
        model: Model,
        image: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.subscription_id = subscription_id
        child = pulumi.ResourceOptions(parent=self)
        account = model.storage.account
        self.container = storage.BlobContainer(
            f"{name}-registry",
            container_name=CONTAINER,
            account_name=account.name,
            resource_group_name=resource_group,
            public_access="None",
            opts=child,
        )
        ws = {"resource_group_name": resource_group, "workspace_name": model.workspace.name}
        self.datastore = machinelearningservices.Datastore(
            f"{name}-datastore",
            name="dataflow_registry",
            properties=machinelearningservices.AzureBlobDatastoreArgs(
                datastore_type="AzureBlob",
                account_name=account.name,
                container_name=CONTAINER,
                credentials=machinelearningservices.NoneDatastoreCredentialsArgs(credentials_type="None"),
                service_data_access_auth_identity="WorkspaceSystemAssignedIdentity",
            ),
            **ws,
            opts=child,
        )
        self.environment = machinelearningservices.EnvironmentVersion(
            f"{name}-environment",
            name="dataflow-trainer",
            version=image.rsplit(":", 1)[-1].replace(".", "-") if ":" in image else "1",
            properties={"image": image, "os_type": "Linux"},
            **ws,
            opts=child,
        )
        self.identity = managedidentity.UserAssignedIdentity(
            f"{name}-job", resource_group_name=resource_group, location=location, tags=tags, opts=child
        )
        self.deployer = authorization.RoleDefinition(
            f"{name}-deployer",
            role_name=f"{name} model rollout ({pulumi.get_stack()})",
            description="Register model versions and roll them out to the Data-Flow endpoint; nothing else.",
            role_type="CustomRole",
            scope=model.workspace.id,
            assignable_scopes=[model.workspace.id],
            permissions=[
                {
                    "actions": list(DEPLOYER_ACTIONS),
                    "not_actions": [],
                    "data_actions": [],
                    "not_data_actions": [],
                }
            ],
            opts=child,
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
        factory_principal = self.factory.identity.apply(lambda i: i.principal_id)
        self.grants: list[pulumi.Resource] = [
            self._grant_write("job", self.identity.principal_id),
            assign(
                f"{name}-job-deploys",
                role=self.deployer.id,
                principal_id=self.identity.principal_id,
                scope=model.workspace.id,
                subscription_id=subscription_id,
                parent=self,
            ),
            self._grant_write("export", factory_principal),
            warehouse.grant_read("training-export", self.factory.name),
        ]
        factory = {"factory_name": self.factory.name, "resource_group_name": resource_group}
        df = datafactory
        # Typed arguments: linked services and datasets are unions, which plain
        # dicts would reach the engine untranslated.
        self.sql_service = df.LinkedService(
            f"{name}-warehouse",
            linked_service_name="warehouse",
            properties=df.AzureSqlDWLinkedServiceArgs(
                type="AzureSqlDW",
                # No credential: the factory's managed identity signs in.
                connection_string=pulumi.Output.concat(
                    "Data Source=tcp:",
                    warehouse.sql_endpoint,
                    ",1433;Initial Catalog=",
                    warehouse.sql_pool.name,
                    ";Encrypt=True;Connection Timeout=30",
                ),
            ),
            **factory,
            opts=child,
        )
        self.blob_service = df.LinkedService(
            f"{name}-registry-store",
            linked_service_name="registry",
            properties=df.AzureBlobStorageLinkedServiceArgs(
                type="AzureBlobStorage",
                service_endpoint=account.name.apply(lambda a: f"https://{a}.blob.core.windows.net/"),
                account_kind="StorageV2",
            ),
            **factory,
            opts=child,
        )
        self.sql_dataset = df.Dataset(
            f"{name}-events",
            dataset_name="events",
            properties=df.AzureSqlDWTableDatasetArgs(
                type="AzureSqlDWTable",
                linked_service_name=df.LinkedServiceReferenceArgs(
                    reference_name="warehouse", type="LinkedServiceReference"
                ),
            ),
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.sql_service]),
        )
        self.parquet_dataset = self._registry_parquet(
            f"{name}-export", "training_export", "training/latest", factory, compression_codec="snappy"
        )
        self.definition = export_pipeline(parquet_dataset="training_export", sql_dataset="events")
        self.pipeline = self._pipeline(
            f"{name}-export-pipeline",
            "training-export",
            self.definition,
            export_activities(self.definition),
            factory,
            [self.sql_dataset, self.parquet_dataset, *self.grants],
        )
        times = retrain_times(model_spec)
        export_cron, train_cron = times or retrain_times(ModelSpec(retrain=DEFAULT_RETRAIN))  # type: ignore[misc]
        minute, hour = (int(v) for v in export_cron.split()[:2])
        self.trigger = datafactory.Trigger(
            f"{name}-export-daily",
            trigger_name="training-export",
            properties=daily("training-export", minute, hour),
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.pipeline]),
        )
        self._record(name, factory, warehouse, train_cron)
        rollout = pulumi.Output.all(model.workspace.id, model.environment.id, model.endpoint.name).apply(
            lambda v: json.dumps(
                {
                    "platform": "azureml",
                    "endpoint": v[2],
                    "location": location,
                    "environment_id": v[1],
                    "model_name": "dataflow-recommender",
                    "workspace_id": v[0],
                    "instance_type": model.instance_type,
                    "instance_count": model.instance_count,
                    "public": model.public,
                    "canary_percent": model_spec.canary_percent,
                    "bake_seconds": model_spec.bake_minutes * 60,
                },
                sort_keys=True,
            )
        )
        self.job = command_job(
            datastore="dataflow_registry",
            environment_id=self.environment.id,
            identity=machinelearningservices.ManagedIdentityArgs(
                identity_type="Managed",
                client_id=self.identity.client_id,
                object_id=self.identity.principal_id,
                resource_id=self.identity.id,
            ),
            instance_type=INSTANCE_TYPES[model_spec.training_size],
            tolerance=model_spec.tolerance,
            rollout=rollout,
            insights_connection=model.insights.connection_string,
            name=name,
        )
        self.schedule = machinelearningservices.Schedule(
            f"{name}-schedule",
            name="dataflow-training",
            properties=machinelearningservices.SchedulePropertiesArgs(
                display_name="Data-Flow training",
                is_enabled=times is not None,
                trigger=machinelearningservices.CronTriggerArgs(
                    trigger_type="Cron", expression=train_cron, time_zone="UTC"
                ),
                action=machinelearningservices.JobScheduleActionArgs(
                    action_type="CreateJob", job_definition=self.job
                ),
            ),
            **ws,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.datastore, *self.grants]),
        )
        self.location = account.name.apply(lambda a: f"https://{a}.blob.core.windows.net/{CONTAINER}/models/")
        # What to watch: Monitoring takes the link and reads these (the job's lines in the workspace's logs).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "factory": self.factory.id,
            "experiment": EXPERIMENT,
            "insights": model.insights.id,
            "registry": name,
            "scheduled": "yes" if times else "",
        }
        self.register_outputs({"location": self.location, "identity": self.identity.id})

    def _registry_parquet(
        self, resource_name: str, dataset: str, folder: str, factory: dict[str, Any], **extra
    ) -> datafactory.Dataset:
        """A Parquet dataset of the factory in the registry container's ``folder``."""
        df = datafactory
        return df.Dataset(
            resource_name,
            dataset_name=dataset,
            properties=df.ParquetDatasetArgs(
                type="Parquet",
                linked_service_name=df.LinkedServiceReferenceArgs(
                    reference_name="registry", type="LinkedServiceReference"
                ),
                location=df.AzureBlobStorageLocationArgs(
                    type="AzureBlobStorageLocation", container=CONTAINER, folder_path=folder
                ),
                **extra,
            ),
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.blob_service]),
        )

    def _pipeline(
        self,
        resource_name: str,
        pipeline: str,
        definition: dict[str, Any],
        activities: list[Any],
        factory: dict[str, Any],
        depends_on: list[pulumi.Resource],
    ) -> datafactory.Pipeline:
        """A pipeline of the factory from its REST definition and its typed activities."""
        props = definition["properties"]
        return datafactory.Pipeline(
            resource_name,
            pipeline_name=pipeline,
            description=props["description"],
            concurrency=props["concurrency"],
            activities=activities,
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _record(self, name: str, factory: dict[str, Any], warehouse: Warehouse, train_cron: str) -> None:
        """The copy of the job's decisions into ``model_versions`` (see the module doc)."""
        df = datafactory
        self.record_grant = warehouse.grant_record_models("training-record", self.factory.name)
        self.decisions_dataset = self._registry_parquet(
            f"{name}-decisions", "decisions", DECISIONS.rstrip("/"), factory
        )
        self.model_versions_dataset = df.Dataset(
            f"{name}-model-versions",
            dataset_name="model_versions",
            properties=df.AzureSqlDWTableDatasetArgs(
                type="AzureSqlDWTable",
                linked_service_name=df.LinkedServiceReferenceArgs(
                    reference_name="warehouse", type="LinkedServiceReference"
                ),
                # The pool's default schema, dbo (azure-native names the SQL schema
                # property after the dataset's column schema, so it cannot be set apart).
                table="model_versions",
            ),
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.sql_service]),
        )
        self.record_definition = record_pipeline(parquet_dataset="decisions", sql_dataset="model_versions")
        self.record_pipeline = self._pipeline(
            f"{name}-record-pipeline",
            "training-record",
            self.record_definition,
            record_activities(self.record_definition),
            factory,
            [self.decisions_dataset, self.model_versions_dataset, self.record_grant],
        )
        minute, hour = (int(v) for v in train_cron.split()[:2])
        at = (hour * 60 + minute + RECORD_DELAY_MINUTES) % (24 * 60)
        self.record_trigger = datafactory.Trigger(
            f"{name}-record-daily",
            trigger_name="training-record",
            properties=daily("training-record", at % 60, at // 60),
            **factory,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.record_pipeline]),
        )

    def _assign(self, verb: str, role: str, grantee: str, principal_id: pulumi.Input[str]):
        return assign(
            f"{self.name}-{verb}-{grantee}",
            role=role,
            principal_id=principal_id,
            scope=self.container.id,
            subscription_id=self.subscription_id,
            parent=self,
        )

    def _grant_write(self, grantee: str, principal_id: pulumi.Input[str]):
        """The job and the export write the registry container, nothing else of the account."""
        return self._assign("write", "Storage Blob Data Contributor", grantee, principal_id)

    def grant_read(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read the registry's model versions (a reviewer, a deployment)."""
        return self._assign("read", "Storage Blob Data Reader", grantee, principal_id)
