"""The raw archive on Azure: Event Hubs Capture's Avro files in the lake.

Capture (declared with the hub, ``components/azure/ingest.py``) writes every
event as it arrived, with its sequence number, offset and enqueued time,
into the lake's ``capture`` container every minute, as the namespace's
identity; the Synapse job streams from those files, and a replay reads
them again (``pipeline_code.streams.eventhubs.to_raw``). This link gives
the archive its lifecycle: a management policy on the lake moves capture
files to the cool tier after 30 days and deletes them after
``archive.retention_days``. The lake is private (no shared keys, no public
blobs); readers are granted with ``grant_read`` on the one container.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import storage

from components.azure.ingest import CAPTURE
from components.azure.security import Lake, assign
from components.spec import ArchiveSpec

TYPE = "data-flow:azure:Archive"


class Archive(pulumi.ComponentResource):
    """Every raw event in the lake, by partition and enqueue time.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group every child is created in.
        subscription_id: Subscription id: role assignments are scoped within it.
        lake: The lake whose ``capture`` container Capture writes.
        archive: ``data-flow:archive``: retention (Capture writes each minute; the flush settings
            are GCP's and AWS's).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    policy: storage.ManagementPolicy
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        subscription_id: pulumi.Input[str],
        lake: Lake,
        archive: ArchiveSpec,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.lake = lake
        self.subscription_id = subscription_id
        actions: dict = {"tier_to_cool": {"days_after_modification_greater_than": 30}}
        if archive.retention_days is not None:
            actions["delete"] = {"days_after_modification_greater_than": archive.retention_days}
        self.policy = storage.ManagementPolicy(
            f"{name}-lifecycle",
            account_name=lake.account.name,
            resource_group_name=resource_group,
            management_policy_name="default",
            policy={
                "rules": [
                    {
                        "name": "archive",
                        "enabled": True,
                        "type": "Lifecycle",
                        "definition": {
                            "filters": {"blob_types": ["blockBlob"], "prefix_match": [f"{CAPTURE}/"]},
                            "actions": {"base_blob": actions},
                        },
                    }
                ]
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.location = lake.abfss(CAPTURE, "")
        self.alert_targets: dict[str, pulumi.Input[str]] = {"account": lake.account.id}
        self.register_outputs({"location": self.location})

    def grant_read(self, grantee: str, principal_id: pulumi.Input[str]):
        """Let ``principal_id`` read the captured files (a batch job, a replay)."""
        return assign(
            f"{self.name}-read-{grantee}",
            role="Storage Blob Data Reader",
            principal_id=principal_id,
            scope=self.lake.container_id(CAPTURE),
            subscription_id=self.subscription_id,
            parent=self,
        )
