"""The monitoring link on GCP."""

from __future__ import annotations

import json

from tests.components.gcp.helpers import build


def test_alerts_cover_every_link_without_email(default):
    rec, _ = default
    filters = " ".join(
        c["conditionThreshold"]["filter"]
        for p in rec.of_type("AlertPolicy")
        for c in p.inputs["conditions"]
        if "conditionThreshold" in c
    )
    for metric in (
        "subscription/oldest_unacked_message_age",
        "job/user_counter",
        "topic/send_message_operation_count",
        "job/system_lag",
        "job/data_watermark_age",
        "prediction/online/error_count",
        "prediction/online/prediction_latencies",
        "run.googleapis.com/request_count",
        "firestore.googleapis.com/api/request_count",
    ):
        assert metric in filters
    assert not rec.of_type("NotificationChannel")
    dashboard = json.loads(rec.one("Dashboard").inputs["dashboardJson"])
    assert len(dashboard["mosaicLayout"]["tiles"]) == 11


def test_alert_email_becomes_the_notification_channel():
    rec, _ = build(alerts={"email": "oncall@example.com"})
    channel = rec.one("NotificationChannel")
    assert channel.inputs["labels"] == {"email_address": "oncall@example.com"}
    assert all(p.inputs["notificationChannels"] == [channel.id] for p in rec.of_type("AlertPolicy"))
