"""The raw archive on Azure: Capture's container in the lake, with the spec's lifecycle."""

from __future__ import annotations

from tests.components.azure.helpers import assignments, build, role


def test_capture_files_cool_after_a_month_and_go_after_the_spec(default):
    rec, _ = default
    policy = rec.one("storage:ManagementPolicy").inputs["policy"]["rules"][0]
    assert policy["definition"]["filters"]["prefixMatch"] == ["capture/"]
    actions = policy["definition"]["actions"]["baseBlob"]
    assert actions["delete"] == {"daysAfterModificationGreaterThan": 400}
    assert actions["tierToCool"] == {"daysAfterModificationGreaterThan": 30}
    forever, _ = build(archive={"retention_days": None})
    kept = forever.one("storage:ManagementPolicy").inputs["policy"]["rules"][0]["definition"]["actions"][
        "baseBlob"
    ]
    assert "delete" not in kept


def test_grant_read_is_the_capture_container_only():
    from components.azure import AzureChain
    from components.spec import load_spec
    from tests.components.configs import azure_config
    from tests.components.conftest import run_program

    def program():
        chain = AzureChain("dataflow", load_spec(azure_config(collector={"enabled": False})))
        chain.archive.grant_read("analyst", "analyst-principal")

    rec, _ = run_program(program)
    (grant,) = [a for a in assignments(rec) if a["principalId"] == "analyst-principal"]
    assert grant["roleDefinitionId"] == role("Storage Blob Data Reader")
    assert grant["scope"].endswith("/BlobContainer/capture")
