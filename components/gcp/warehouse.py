"""Warehouse on GCP: a BigQuery dataset holding the chain's logical tables.

Every table comes from ``pipeline_code.tables`` through
``pipeline_code.warehouses.bigquery``: the same columns as DuckDB, partitioned by day
on the event-date column and clustered as the description says. Tables the
streaming job can only append to are written as ``<table>_changes`` (dead
letters as ``dead_letters_log``) and read through a view named after the
logical table (see ``pipeline_code/warehouses/bigquery.py``). Replays record
their keys in ``_dataflow_batches``.

Secure by default: deletion protection on the dataset's tables and views,
no access beyond the project's defaults until granted with the verbs
(``grant_write``, ``grant_read``), and a customer-managed key as the
dataset's default when one is configured.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp

from components.spec import DeadLetterSpec, WarehouseSpec
from pipeline_code.tables import TABLES, Table, written_by
from pipeline_code.warehouses import bigquery as bq

TYPE = "data-flow:gcp:Warehouse"
DAY_MS = 86_400_000


class WarehouseTable:
    """One physical table (or folding view) with grants as verbs."""

    def __init__(
        self,
        owner: pulumi.Resource,
        short: str,
        project: str,
        logical: Table | None,
        resource: gcp.bigquery.Table,
    ) -> None:
        self._owner = owner
        self.short = short
        self.project = project
        self.logical = logical
        self.resource = resource

    def _grant(self, grantee: str, verb: str, role: str, member: pulumi.Input[str]) -> gcp.bigquery.IamMember:
        return gcp.bigquery.IamMember(
            f"{self._owner.name}-{self.short}-{grantee}-{verb}",
            project=self.project,
            dataset_id=self.resource.dataset_id,
            table_id=self.resource.table_id,
            role=role,
            member=member,
            opts=pulumi.ResourceOptions(parent=self._owner),
        )

    def grant_write(self, grantee: str, member: pulumi.Input[str]) -> gcp.bigquery.IamMember:
        """Let ``member`` insert rows into this table only."""
        return self._grant(grantee, "writes", "roles/bigquery.dataEditor", member)

    def grant_read(self, grantee: str, member: pulumi.Input[str]) -> gcp.bigquery.IamMember:
        """Let ``member`` read this table or view only."""
        return self._grant(grantee, "reads", "roles/bigquery.dataViewer", member)


class Warehouse(pulumi.ComponentResource):
    """The BigQuery dataset and every logical table of the chain.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        location: BigQuery dataset location.
        warehouse: ``data-flow:warehouse``: dataset/database name, partition retention, deletion
            protection.
        dead_letters: ``data-flow:dead_letters``: delivery attempts, retention of set-aside events and
            of the dead-letter table.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    dataset: gcp.bigquery.Dataset
    tables: dict[str, WarehouseTable]
    """Physical tables by physical name (``events``, ``sessions_changes``, ...)."""
    views: dict[str, WarehouseTable]
    """Folding views by logical name (``sessions``, ``user_features``, ...)."""

    def __init__(
        self,
        name: str,
        *,
        project: str,
        location: str,
        warehouse: WarehouseSpec,
        dead_letters: DeadLetterSpec,
        labels: dict[str, str],
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.project = project
        protect = warehouse.deletion_protection
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        encryption = (
            gcp.bigquery.TableEncryptionConfigurationArgs(kms_key_name=kms_key_name) if kms_key_name else None
        )
        self.dataset = gcp.bigquery.Dataset(
            f"{name}-dataset",
            project=project,
            dataset_id=warehouse.dataset,
            location=location,
            description="Data-Flow: e-commerce events, features and dead letters.",
            default_encryption_configuration=(
                gcp.bigquery.DatasetDefaultEncryptionConfigurationArgs(kms_key_name=kms_key_name)
                if kms_key_name
                else None
            ),
            # Never drop tables with the dataset: deleting data takes a deliberate step.
            delete_contents_on_destroy=False,
            labels=labels,
            opts=child,
        )
        self.tables = {}
        self.views = {}
        for logical in TABLES.values():
            physical = bq.physical_name(logical)
            expiration = warehouse.partition_retention_days
            if logical.name == "dead_letters":
                expiration = dead_letters.table_retention_days
            partition = bq.partitioning(logical)
            table = gcp.bigquery.Table(
                f"{name}-{physical.replace('_', '-')}",
                project=project,
                dataset_id=self.dataset.dataset_id,
                table_id=physical,
                description=logical.description,
                schema=bq.schema_json(logical),
                time_partitioning=(
                    gcp.bigquery.TableTimePartitioningArgs(
                        type=partition[0],
                        field=partition[1],
                        expiration_ms=expiration * DAY_MS if expiration else None,
                    )
                    if partition
                    else None
                ),
                clusterings=bq.clustering(logical) or None,
                encryption_configuration=encryption,
                deletion_protection=protect,
                labels=labels,
                opts=child,
            )
            self.tables[physical] = WarehouseTable(self, physical.replace("_", "-"), project, logical, table)
            if bq.has_view(logical):
                view = gcp.bigquery.Table(
                    f"{name}-{logical.name.replace('_', '-')}-view",
                    project=project,
                    dataset_id=self.dataset.dataset_id,
                    table_id=logical.name,
                    description=f"{logical.description} (folded from {physical})",
                    view=gcp.bigquery.TableViewArgs(
                        query=bq.view_sql(logical, project, warehouse.dataset), use_legacy_sql=False
                    ),
                    deletion_protection=protect,
                    labels=labels,
                    opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=[table]),
                )
                self.views[logical.name] = WarehouseTable(
                    self, f"{logical.name.replace('_', '-')}-view", project, logical, view
                )
        # Replays' keys: a retried commit finds its own and changes nothing.
        batches = gcp.bigquery.Table(
            f"{name}-dataflow-batches",
            project=project,
            dataset_id=self.dataset.dataset_id,
            table_id=bq.BATCHES,
            description="The replays committed, by key.",
            schema=json.dumps(bq.BATCHES_SCHEMA, separators=(",", ":")),
            encryption_configuration=encryption,
            deletion_protection=protect,
            labels=labels,
            opts=child,
        )
        self.batches = WarehouseTable(self, "dataflow-batches", project, None, batches)
        self.register_outputs(
            {"dataset": self.dataset.id, "tables": sorted(self.tables), "views": sorted(self.views)}
        )

    def grant_write(self, grantee: str, member: pulumi.Input[str]) -> list[gcp.bigquery.IamMember]:
        """Let ``member`` insert into the pipeline's physical tables (what the job writes)."""
        return self._grant_tables(grantee, member, "processing")

    def grant_record_models(self, grantee: str, member: pulumi.Input[str]) -> list[gcp.bigquery.IamMember]:
        """Let ``member`` append to ``model_versions`` (the training job's decisions), nothing else."""
        return self._grant_tables(grantee, member, "training")

    def _grant_tables(
        self, grantee: str, member: pulumi.Input[str], writer: str
    ) -> list[gcp.bigquery.IamMember]:
        mine = {bq.physical_name(TABLES[n]) for n in written_by(writer)}
        grants = [t.grant_write(grantee, member) for name, t in self.tables.items() if name in mine]
        if writer == "processing":
            # A replay's commit records its key (as Redshift's and Synapse's batches do).
            grants.append(self.batches.grant_write(grantee, member))
        return grants

    def grant_read(self, grantee: str, member: pulumi.Input[str]) -> list[gcp.bigquery.IamMember]:
        """Let ``member`` read every table and view."""
        return [t.grant_read(grantee, member) for t in [*self.tables.values(), *self.views.values()]]
