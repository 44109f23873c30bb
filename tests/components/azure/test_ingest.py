"""The ingest link on Azure: Event Hubs, Capture to the lake."""

from __future__ import annotations

from components.azure.security import ROLES


def test_capture_writes_as_the_namespaces_identity_to_its_container_only(default):
    rec, _ = default
    namespace = rec.one("eventhub:Namespace").inputs
    capture = rec.one("eventhub:EventHub").inputs["captureDescription"]
    # pulumi-azure-native 3 reads the identity from the destination; beside it, it was dropped.
    assert capture["destination"]["identity"] == {"type": "SystemAssigned"} and "identity" not in capture
    assert namespace["identity"] == {"type": "SystemAssigned"}
    grant = rec.one("authorization:RoleAssignment", "dataflow-ingest-capture-writer").inputs
    container = rec.one("storage:BlobContainer", "dataflow-lake-capture")
    assert grant["scope"] == container.id
    assert grant["roleDefinitionId"].endswith(ROLES["Storage Blob Data Contributor"])
    assert grant["principalId"] == "principal-dataflow-ingest-namespace"
