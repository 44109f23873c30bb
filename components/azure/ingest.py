"""Ingest on Azure: an Event Hubs namespace and hub, captured to the lake.

Secure by default: Standard tier or above, TLS 1.2, local (SAS key) auth off
so every client uses Entra ID, zone redundant unless the stack says not.
Partitions and retention come from the spec; Capture writes every event as
sent, in Avro, to the lake's ``capture`` container every minute, so nothing
is lost while processing is stopped (the Synapse job reads those files).
The pipeline has its own consumer group. Nothing may send or receive until
granted: ``grant_publish`` (producers, the collector), ``grant_consume``.
"""

from __future__ import annotations

import math

import pulumi
from pulumi_azure_native import eventhub

from components.azure.security import Lake, assign
from components.spec import StreamSpec

TYPE = "data-flow:azure:Ingest"
CAPTURE = "capture"
DEAD_LETTERS = "dead-letters"
"""The lake container the processing job writes batches it could not commit to, raw."""


class Ingest(pulumi.ComponentResource):
    """The Event Hubs namespace and hub, Capture to the lake, the pipeline's consumer group.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        location: Azure region of the resources.
        subscription_id: Subscription id: role definitions are resolved in it.
        stream: ``data-flow:stream``: retention, expected throughput, ack deadline, schema enforcement.
        lake: The chain's lake (``Lake``): its containers are the scopes of this link's grants.
        partitions: Event Hub partitions (``azure.eventhub_partitions``).
        zone_redundant: Zone-redundant namespace (``azure.zone_redundant``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    namespace: eventhub.Namespace
    hub: eventhub.EventHub
    consumer_group: eventhub.ConsumerGroup

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        location: str,
        subscription_id: pulumi.Input[str],
        stream: StreamSpec,
        lake: Lake,
        partitions: int,
        zone_redundant: bool,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.subscription_id = subscription_id
        self.lake = lake
        child = pulumi.ResourceOptions(parent=self)
        units = max(1, math.ceil(stream.throughput_mb_per_s))  # one throughput unit: 1 MB/s in
        self.namespace = eventhub.Namespace(
            f"{name}-namespace",
            resource_group_name=resource_group,
            location=location,
            sku={"name": "Standard", "tier": "Standard", "capacity": units},
            is_auto_inflate_enabled=True,
            maximum_throughput_units=min(40, units * 4),
            minimum_tls_version="1.2",
            disable_local_auth=True,
            zone_redundant=zone_redundant,
            identity={"type": "SystemAssigned"},
            tags=tags,
            opts=child,
        )
        # Capture writes as the namespace's identity: it may write that container only.
        self.capture_grant = assign(
            f"{name}-capture-writer",
            role="Storage Blob Data Contributor",
            principal_id=self.namespace.identity.apply(lambda i: i.principal_id),
            scope=lake.container_id(CAPTURE),
            subscription_id=subscription_id,
            parent=self,
        )
        self.hub = eventhub.EventHub(
            f"{name}-hub",
            event_hub_name="events",
            namespace_name=self.namespace.name,
            resource_group_name=resource_group,
            partition_count=partitions,
            retention_description={
                "cleanup_policy": "Delete",
                "retention_time_in_hours": min(stream.retention_hours, 7 * 24),
            },
            capture_description={
                "enabled": True,
                "encoding": "Avro",
                "interval_in_seconds": 60,
                "size_limit_in_bytes": 314_572_800,
                "skip_empty_archives": True,
                "destination": {
                    "name": "EventHubArchive.AzureBlockBlob",
                    # Capture writes as the namespace's identity (the lake has shared keys
                    # off). pulumi-azure-native 3 takes it here, in the destination.
                    "identity": {"type": "SystemAssigned"},
                    "storage_account_resource_id": lake.account.id,
                    "blob_container": CAPTURE,
                    "archive_name_format": (
                        "{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}"
                    ),
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.capture_grant]),
        )
        self.consumer_group = eventhub.ConsumerGroup(
            f"{name}-pipeline",
            consumer_group_name="pipeline",
            event_hub_name=self.hub.name,
            namespace_name=self.namespace.name,
            resource_group_name=resource_group,
            opts=child,
        )
        # What to watch: Monitoring takes the link and reads these (resource ids: scopes, diagnostics).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "namespace": self.namespace.id,
        }
        self.register_outputs({"hub": self.hub.id})

    def grant_publish(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` send events to this hub (Entra ID)."""
        return assign(
            f"{self.name}-send-{grantee}",
            role="Azure Event Hubs Data Sender",
            principal_id=principal_id,
            scope=self.hub.id,
            subscription_id=self.subscription_id,
            parent=self,
        )

    def grant_consume(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read this hub."""
        return assign(
            f"{self.name}-receive-{grantee}",
            role="Azure Event Hubs Data Receiver",
            principal_id=principal_id,
            scope=self.hub.id,
            subscription_id=self.subscription_id,
            parent=self,
        )

    def grant_read_dead_letters(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read what was set aside: the lake's dead-letter
        container, where the job writes micro-batches it could not commit (to
        inspect or replay them). Event Hubs itself keeps no dead letters."""
        return assign(
            f"{self.name}-read-dead-letters-{grantee}",
            role="Storage Blob Data Reader",
            principal_id=principal_id,
            scope=self.lake.container_id(DEAD_LETTERS),
            subscription_id=self.subscription_id,
            parent=self,
        )
