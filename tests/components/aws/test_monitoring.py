"""The monitoring link on AWS."""

from __future__ import annotations

import json

from tests.components.conftest import AWS_ACCOUNT


def test_every_alarm_notifies_the_topic(default):
    rec, _ = default
    # The rollback alarms are SageMaker's to watch during a rollout, not people's.
    alarms = [a for a in rec.of_type("cloudwatch/metricAlarm:MetricAlarm") if "-rollback-" not in a.name]
    assert all(
        a.inputs["alarmActions"] == [f"arn:aws:sns:eu-west-1:{AWS_ACCOUNT}:topic/dataflow-monitoring-alerts"]
        for a in alarms
    )
    by_name = {a.name.removeprefix("dataflow-monitoring-"): a.inputs for a in alarms}
    assert by_name["backlog"]["dimensions"] == {"StreamName": "dataflow-ingest-events"}
    assert by_name["backlog"]["threshold"] == 300_000
    assert by_name["job-failures"]["dimensions"]["JobName"] == "dataflow-process-stream"
    assert by_name["dead-letters"]["namespace"] == "DataFlow" and by_name["dead-letters"]["threshold"] == 10
    assert by_name["model-latency"]["threshold"] == 500_000
    share = [q for q in by_name["model-errors"]["metricQueries"] if q.get("expression")]
    assert share[0]["expression"] == "IF(calls > 0, errors / calls, 0)"
    json.loads(rec.one("cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
