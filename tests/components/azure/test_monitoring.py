"""The monitoring link on Azure."""

from __future__ import annotations

from tests.components.conftest import AZURE_SUBSCRIPTION


def test_alerts_watch_every_link_and_every_resource_logs(default):
    rec, _ = default
    alerts = {
        a.name.removeprefix("dataflow-monitoring-"): a.inputs for a in rec.of_type("monitor:MetricAlert")
    }
    assert set(alerts) == {
        "capture-stalled",
        "capture-backlog",
        "pipeline-failures",
        "dead-letters",
        "spilled-batches",
        "model-errors",
        "model-latency",
        "fast-path-errors",
        "user-state-throttled",
        "archive-write-failures",
    }
    group = rec.one("monitor:ActionGroup")
    assert all(
        a["actions"] == [{"actionGroupId": alerts and a["actions"][0]["actionGroupId"]}]
        for a in alerts.values()
    )
    assert {a["actions"][0]["actionGroupId"] for a in alerts.values()} == {
        f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{group.inputs['resourceGroupName']}/providers/monitor/ActionGroup/dataflow-monitoring-oncall"
    }
    assert alerts["model-latency"]["criteria"]["allOf"][0]["threshold"] == 500
    dead = alerts["dead-letters"]
    assert dead["scopes"][0].endswith("/Component/dataflow-process-insights")
    assert dead["criteria"]["allOf"][0]["metricName"] == "DeadLettered"
    assert dead["criteria"]["allOf"][0]["threshold"] == 10
    job = rec.one("dynamic:Resource", "dataflow-process-job").inputs["definition"]["properties"][
        "jobProperties"
    ]["args"]
    assert job[job.index("--insights_connection") + 1].startswith("InstrumentationKey=")
    stalled = alerts["capture-stalled"]["criteria"]["allOf"]
    assert [c["metricName"] for c in stalled] == ["IncomingMessages", "CapturedMessages"]
    logged = {d.inputs["resourceUri"].rsplit("/", 2)[-2] for d in rec.of_type("monitor:DiagnosticSetting")}
    assert logged == {"Namespace", "Workspace", "Factory", "WebApp"}
    assert len(rec.of_type("monitor:DiagnosticSetting")) == 7  # with the training export's factory
