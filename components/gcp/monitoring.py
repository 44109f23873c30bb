"""Monitoring on GCP: alert policies on every link, and one dashboard.

Alerts (thresholds from the spec's ``alerts``):

- backlog: the oldest unacknowledged event on the pipeline's subscription;
- dead letters: inputs the job dead-lettered (its ``dead_lettered`` counter)
  and messages Pub/Sub set aside on the dead-letter topic;
- processing: the job's system lag and its data freshness (watermark age);
- model: the endpoint's error share and 99th-percentile latency;
- archive: the oldest event its Cloud Storage subscription has not written;
- fast path: the service's 5xx answers (each one a push Pub/Sub retries),
  the oldest unacknowledged push, and Firestore refusing requests for quota
  (``RESOURCE_EXHAUSTED``) on the user-state database.

They notify an email channel when ``alerts.email`` is set; otherwise they
show in the console only.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp

from components.gcp.archive import Archive
from components.gcp.fastpath import FastPath, UserState
from components.gcp.ingest import Ingest
from components.gcp.model import Model
from components.gcp.processing import Processing
from components.gcp.training import Training
from components.spec import AlertSpec

TYPE = "data-flow:gcp:Monitoring"
WINDOW = "300s"


def _condition(
    display_name: str,
    filter_: pulumi.Input[str],
    threshold: float,
    aligner: str,
    denominator: pulumi.Input[str] | None = None,
) -> gcp.monitoring.AlertPolicyConditionArgs:
    aggregation = [
        gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
            alignment_period="60s" if aligner != "ALIGN_SUM" else WINDOW, per_series_aligner=aligner
        )
    ]
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=display_name,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=filter_,
            comparison="COMPARISON_GT",
            threshold_value=threshold,
            duration="60s" if aligner != "ALIGN_SUM" else "0s",
            aggregations=aggregation,
            denominator_filter=denominator,
            denominator_aggregations=aggregation if denominator is not None else None,
        ),
    )


class Monitoring(pulumi.ComponentResource):
    """Alert policies and a dashboard for one GCP chain.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        alerts: ``data-flow:alerts``: the email alerts go to (none: alerts still fire, nobody is
            emailed) and thresholds.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        processing: The processing link (watched through ``alert_targets``).
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        fast_path: The fast path's service and subscription (watched through ``alert_targets``).
        user_state: The fast path's store (watched through ``alert_targets``).
        training: The slow path (its custom job's log lines are matched).
        archive: The raw archive (watched through ``alert_targets``).
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    policies: dict[str, gcp.monitoring.AlertPolicy]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        alerts: AlertSpec,
        ingest: Ingest,
        processing: Processing,
        model: Model,
        fast_path: FastPath,
        user_state: UserState,
        archive: Archive,
        training: Training,
        labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subscription_name = ingest.alert_targets["subscription"]
        dead_letter_topic_name = ingest.alert_targets["dead_letter_topic"]
        job_name = processing.alert_targets["job"]
        endpoint_id = model.alert_targets["endpoint"]
        self.channel = None
        channels: list[pulumi.Output[str]] = []
        if alerts.email:
            self.channel = gcp.monitoring.NotificationChannel(
                f"{name}-email",
                project=project,
                display_name=f"{name} alerts",
                type="email",
                labels={"email_address": alerts.email},
                user_labels=labels,
                opts=child,
            )
            channels = [self.channel.id]

        sub = pulumi.Output.concat(
            'resource.type="pubsub_subscription" AND resource.label.subscription_id="', subscription_name, '"'
        )
        dlq = pulumi.Output.concat(
            'resource.type="pubsub_topic" AND resource.label.topic_id="', dead_letter_topic_name, '"'
        )
        job = pulumi.Output.concat(
            'resource.type="dataflow_job" AND resource.label.job_name="', job_name, '"'
        )
        endpoint = pulumi.Output.concat(
            'resource.type="aiplatform.googleapis.com/Endpoint" AND resource.label.endpoint_id="',
            endpoint_id,
            '"',
        )

        fresh_service = pulumi.Output.concat(
            'resource.type="cloud_run_revision" AND resource.label.service_name="',
            fast_path.alert_targets["service"],
            '"',
        )
        fresh_sub = pulumi.Output.concat(
            'resource.type="pubsub_subscription" AND resource.label.subscription_id="',
            fast_path.alert_targets["subscription"],
            '"',
        )
        archive_sub = pulumi.Output.concat(
            'resource.type="pubsub_subscription" AND resource.label.subscription_id="',
            archive.alert_targets["subscription"],
            '"',
        )
        state_db = pulumi.Output.concat(
            'resource.type="firestore.googleapis.com/Database" AND resource.label.database_id="',
            user_state.alert_targets["database"],
            '"',
        )

        def metric(kind: str, where: pulumi.Output[str], extra: str = "") -> pulumi.Output[str]:
            return pulumi.Output.concat(f'metric.type="{kind}" AND ', where, extra)

        specs = {
            "backlog": [
                _condition(
                    "Oldest unprocessed event",
                    metric("pubsub.googleapis.com/subscription/oldest_unacked_message_age", sub),
                    alerts.backlog_seconds,
                    "ALIGN_MAX",
                )
            ],
            "dead-letters": [
                _condition(
                    "Events dead-lettered by the job",
                    metric(
                        "dataflow.googleapis.com/job/user_counter",
                        job,
                        ' AND metric.label.metric_name="dead_lettered"',
                    ),
                    alerts.dead_letters_per_5min,
                    "ALIGN_DELTA",
                ),
                _condition(
                    "Messages set aside by Pub/Sub",
                    metric("pubsub.googleapis.com/topic/send_message_operation_count", dlq),
                    alerts.dead_letters_per_5min,
                    "ALIGN_SUM",
                ),
            ],
            "processing-lag": [
                _condition(
                    "System lag",
                    metric("dataflow.googleapis.com/job/system_lag", job),
                    alerts.processing_lag_seconds,
                    "ALIGN_MAX",
                ),
                _condition(
                    "Data freshness",
                    metric("dataflow.googleapis.com/job/data_watermark_age", job),
                    alerts.freshness_seconds,
                    "ALIGN_MAX",
                ),
            ],
            "model-errors": [
                _condition(
                    "Share of failed predictions",
                    metric("aiplatform.googleapis.com/prediction/online/error_count", endpoint),
                    alerts.error_rate,
                    "ALIGN_RATE",
                    denominator=metric(
                        "aiplatform.googleapis.com/prediction/online/prediction_count", endpoint
                    ),
                )
            ],
            "model-latency": [
                _condition(
                    "p99 prediction latency (ms)",
                    metric("aiplatform.googleapis.com/prediction/online/prediction_latencies", endpoint),
                    alerts.latency_p99_ms,
                    "ALIGN_PERCENTILE_99",
                )
            ],
            "fast-path-errors": [
                _condition(
                    "Fast path 5xx answers",
                    metric(
                        "run.googleapis.com/request_count",
                        fresh_service,
                        ' AND metric.label.response_code_class="5xx"',
                    ),
                    alerts.fast_path_errors_per_5min,
                    "ALIGN_SUM",
                )
            ],
            "fast-path-lag": [
                _condition(
                    "Oldest event not yet applied to user state",
                    metric("pubsub.googleapis.com/subscription/oldest_unacked_message_age", fresh_sub),
                    alerts.fast_path_lag_seconds,
                    "ALIGN_MAX",
                )
            ],
            "archive-delivery": [
                _condition(
                    "Oldest event not yet in the archive",
                    metric("pubsub.googleapis.com/subscription/oldest_unacked_message_age", archive_sub),
                    alerts.archive_delay_seconds,
                    "ALIGN_MAX",
                )
            ],
            "user-state-throttled": [
                _condition(
                    "User-state requests refused for quota",
                    metric(
                        "firestore.googleapis.com/api/request_count",
                        state_db,
                        ' AND metric.label.response_code="RESOURCE_EXHAUSTED"',
                    ),
                    0,
                    "ALIGN_SUM",
                )
            ],
        }
        self.policies = {
            key: gcp.monitoring.AlertPolicy(
                f"{name}-{key}",
                project=project,
                display_name=f"{name}: {key.replace('-', ' ')}",
                combiner="OR",
                conditions=conditions,
                notification_channels=channels,
                user_labels=labels,
                opts=child,
            )
            for key, conditions in specs.items()
        }
        # The slow path: the custom job's own lines, matched in Cloud Logging.
        # Custom jobs log as resource type ml_job; the job's lines carry their own marker.
        marker = training.alert_targets["marker"]
        job_logs = 'resource.type="ml_job"'
        refusals, age = alerts.model_refusals_in_a_row, alerts.model_max_age_days
        matched = {
            "model-refused": (
                f"The gate refused {refusals} candidates in a row",
                f"{job_logs} AND jsonPayload.{marker}.RefusalsInARow>={refusals}",
            ),
            "model-age": (
                f"The model served was promoted more than {age} days ago",
                f"{job_logs} AND jsonPayload.{marker}.ServedModelAgeDays>{age}",
            ),
            "training-failed": (
                "A training run failed",
                f'{job_logs} AND textPayload:"training failed:"',
            ),
        }
        for key, (title, log_filter) in matched.items():
            self.policies[key] = gcp.monitoring.AlertPolicy(
                f"{name}-{key}",
                project=project,
                display_name=f"{name}: {key.replace('-', ' ')}",
                combiner="OR",
                conditions=[
                    gcp.monitoring.AlertPolicyConditionArgs(
                        display_name=title,
                        condition_matched_log=gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(
                            filter=log_filter
                        ),
                    )
                ],
                alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(
                    notification_rate_limit=gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                        period="3600s"
                    )
                ),
                notification_channels=channels,
                user_labels=labels,
                opts=child,
            )
        tiles = [
            (c.display_name, c.condition_threshold.filter)  # type: ignore[union-attr]
            for conditions in specs.values()
            for c in conditions
        ]
        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=project,
            dashboard_json=pulumi.Output.all(*[f for _, f in tiles]).apply(
                lambda filters: dashboard_json(name, [t for t, _ in tiles], filters)
            ),
            opts=child,
        )
        self.register_outputs({"policies": [p.name for p in self.policies.values()]})


def dashboard_json(name: str, titles: list[str], filters: list[str]) -> str:
    """A two-column grid of line charts, one per alerted metric."""
    tiles = [
        {
            "xPos": (i % 2) * 6,
            "yPos": (i // 2) * 4,
            "width": 6,
            "height": 4,
            "widget": {
                "title": title,
                "xyChart": {
                    "dataSets": [
                        {
                            "timeSeriesQuery": {
                                "timeSeriesFilter": {
                                    "filter": f,
                                    "aggregation": {
                                        "alignmentPeriod": "60s",
                                        "perSeriesAligner": "ALIGN_MEAN",
                                    },
                                }
                            },
                            "plotType": "LINE",
                        }
                    ]
                },
            },
        }
        for i, (title, f) in enumerate(zip(titles, filters, strict=True))
    ]
    return json.dumps({"displayName": f"Data-Flow {name}", "mosaicLayout": {"columns": 12, "tiles": tiles}})
