"""Monitoring on Azure: metric alerts on every link, an action group, and
diagnostic settings that send every resource's logs and metrics to the
chain's Log Analytics workspace.

Alerts (thresholds from the spec's ``alerts``):

- ingest: events arrive but Capture writes none (the lake stops receiving),
  and Capture's backlog;
- processing: any failed Data Factory pipeline run (the Spark job failed or
  stopped, after its retries); dead letters per five minutes and spilled
  batches, from the counts the job sends to its Application Insights;
- model: 5xx answers per minute above ``error_rate`` of the traffic floor,
  and the endpoint's p99 latency;
- archive: failed writes to the lake's blob service (Capture's writes
  among them: a lost grant shows here first);
- fast path: the function's failed invocations (its Application Insights),
  the lag it logs per batch (a log query: Event Hubs publishes no lag per
  consumer group), and throttled requests on the user-state table service.

The action group emails ``alerts.email`` when set.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import monitor

from components.azure.archive import Archive
from components.azure.fastpath import LAG_QUERY, FastPath, UserState
from components.azure.ingest import Ingest
from components.azure.model import Model
from components.azure.processing import Processing
from components.azure.serve import Serve
from components.azure.training import Training
from components.azure.warehouse import Warehouse
from components.spec import AlertSpec

TYPE = "data-flow:azure:Monitoring"


def criterion(
    name: str, metric: str, namespace: str, operator: str, threshold: float, aggregation: str, dimensions=None
) -> monitor.MetricCriteriaArgs:
    # Typed args: the criteria input is a union, which plain dicts would reach
    # the engine untranslated (snake_case keys).
    return monitor.MetricCriteriaArgs(
        criterion_type="StaticThresholdCriterion",
        name=name,
        metric_name=metric,
        metric_namespace=namespace,
        operator=operator,
        threshold=threshold,
        time_aggregation=aggregation,
        dimensions=[monitor.MetricDimensionArgs(**d) for d in dimensions or []] or None,
    )


class Monitoring(pulumi.ComponentResource):
    """Metric alerts on every link, an action group, and diagnostics to Log Analytics.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        resource_group: Resource group (name) the resources live in.
        alerts: ``data-flow:alerts``: the email alerts go to (none: alerts still fire, nobody is
            emailed) and thresholds.
        log_workspace_id: Log Analytics workspace that diagnostics go to.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        warehouse: The warehouse link the job writes to (through its grant verbs).
        processing: The processing link (watched through ``alert_targets``).
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        serve: The serve link (its app's logs are collected).
        fast_path: The fast path's function (watched through ``alert_targets``).
        user_state: The fast path's store (watched through ``alert_targets``).
        archive: The raw archive (watched through ``alert_targets``).
        training: The slow path (its factory's runs and Azure ML's run events are watched).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    action_group: monitor.ActionGroup
    alerts: dict[str, monitor.MetricAlert]

    def __init__(
        self,
        name: str,
        *,
        resource_group: pulumi.Input[str],
        alerts: AlertSpec,
        log_workspace_id: pulumi.Input[str],
        ingest: Ingest,
        warehouse: Warehouse,
        processing: Processing,
        model: Model,
        serve: Serve,
        fast_path: FastPath,
        user_state: UserState,
        archive: Archive,
        training: Training,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        eventhub_namespace_id = ingest.alert_targets["namespace"]
        factory_id = processing.alert_targets["factory"]
        job_insights_id = processing.alert_targets["job_insights"]
        endpoint_id = model.alert_targets["endpoint"]
        # Every link's platform logs go to the workspace.
        diagnosed = {
            "eventhub": ingest.alert_targets["namespace"],
            "synapse": warehouse.alert_targets["workspace"],
            "factory": processing.alert_targets["factory"],
            "ml": model.alert_targets["workspace"],
            "training-export": training.alert_targets["factory"],
            "api": serve.alert_targets["app"],
            "fast-path": fast_path.alert_targets["app"],
        }
        fresh_insights = fast_path.alert_targets["insights"]
        tables = pulumi.Output.concat(user_state.alert_targets["account"], "/tableServices/default")
        receivers = [{"name": "oncall", "email_address": alerts.email, "use_common_alert_schema": True}]
        self.action_group = monitor.ActionGroup(
            f"{name}-oncall",
            resource_group_name=resource_group,
            location="global",
            group_short_name="dataflow",
            enabled=True,
            email_receivers=receivers if alerts.email else [],
            tags=tags,
            opts=child,
        )

        def alert(
            key: str,
            description: str,
            scope,
            criteria: list[monitor.MetricCriteriaArgs],
            window: str = "PT5M",
            severity: int = 2,
        ):
            return monitor.MetricAlert(
                f"{name}-{key}",
                resource_group_name=resource_group,
                location="global",
                description=description,
                severity=severity,
                enabled=True,
                scopes=[scope],
                evaluation_frequency="PT1M",
                window_size=window,
                auto_mitigate=True,
                criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                    odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    all_of=criteria,
                ),
                actions=[{"action_group_id": self.action_group.id}],
                tags=tags,
                opts=child,
            )

        eh = "Microsoft.EventHub/namespaces"
        endpoint_ns = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
        self.alerts = {
            "capture-stalled": alert(
                "capture-stalled",
                "Events arrive but Event Hubs Capture writes none to the lake",
                eventhub_namespace_id,
                [
                    criterion("incoming", "IncomingMessages", eh, "GreaterThan", 0, "Total"),
                    criterion("captured", "CapturedMessages", eh, "LessThan", 1, "Total"),
                ],
                window="PT15M",
            ),
            "capture-backlog": alert(
                "capture-backlog",
                "Events waiting to be captured to the lake",
                eventhub_namespace_id,
                [criterion("backlog", "CaptureBacklog", eh, "GreaterThan", 0, "Average")],
                window=f"PT{max(5, alerts.backlog_seconds // 60)}M",
            ),
            "pipeline-failures": alert(
                "pipeline-failures",
                "The processing pipeline failed (the Spark job stopped after its retries)",
                factory_id,
                [
                    criterion(
                        "failed",
                        "PipelineFailedRuns",
                        "Microsoft.DataFactory/factories",
                        "GreaterThan",
                        0,
                        "Total",
                    )
                ],
                severity=1,
            ),
            "dead-letters": alert(
                "dead-letters",
                f"More than {alerts.dead_letters_per_5min} events dead-lettered in 5 minutes",
                job_insights_id,
                [
                    criterion(
                        "dead",
                        "DeadLettered",
                        "azure.applicationinsights",
                        "GreaterThan",
                        alerts.dead_letters_per_5min,
                        "Total",
                    )
                ],
            ),
            "spilled-batches": alert(
                "spilled-batches",
                "A micro-batch could not be committed; its raw records are in the dead-letter container",
                job_insights_id,
                [
                    criterion(
                        "spilled",
                        "SpilledBatches",
                        "azure.applicationinsights",
                        "GreaterThanOrEqual",
                        1,
                        "Total",
                    )
                ],
                severity=1,
            ),
            "model-errors": alert(
                "model-errors",
                f"Model endpoint 5xx answers above {alerts.error_rate:.0%} of a 100 requests/min floor",
                endpoint_id,
                [
                    criterion(
                        "errors5xx",
                        "RequestsPerMinute",
                        endpoint_ns,
                        "GreaterThan",
                        round(alerts.error_rate * 100, 2),
                        "Average",
                        [{"name": "statusCodeClass", "operator": "Include", "values": ["5xx"]}],
                    )
                ],
            ),
            "model-latency": alert(
                "model-latency",
                f"Model p99 latency above {alerts.latency_p99_ms} ms",
                endpoint_id,
                [
                    criterion(
                        "p99",
                        "RequestLatency_P99",
                        endpoint_ns,
                        "GreaterThan",
                        alerts.latency_p99_ms,
                        "Average",
                    )
                ],
            ),
            "fast-path-errors": alert(
                "fast-path-errors",
                f"The fast path failed more than {alerts.fast_path_errors_per_5min} times in 5 minutes",
                fresh_insights,
                [
                    criterion(
                        "failed",
                        "requests/failed",
                        "microsoft.insights/components",
                        "GreaterThan",
                        alerts.fast_path_errors_per_5min,
                        "Count",
                    )
                ],
            ),
            "archive-write-failures": alert(
                "archive-write-failures",
                "Writes to the lake (Capture's archive among them) fail",
                pulumi.Output.concat(archive.alert_targets["account"], "/blobServices/default"),
                [
                    criterion(
                        "failed",
                        "Transactions",
                        "Microsoft.Storage/storageAccounts/blobServices",
                        "GreaterThan",
                        0,
                        "Total",
                        [
                            {
                                "name": "ResponseType",
                                "operator": "Include",
                                "values": ["AuthorizationError", "ServerOtherError", "ServerBusyError"],
                            }
                        ],
                    )
                ],
            ),
            "user-state-throttled": alert(
                "user-state-throttled",
                "Requests to the user-state table were throttled",
                tables,
                [
                    criterion(
                        "throttled",
                        "Transactions",
                        "Microsoft.Storage/storageAccounts/tableServices",
                        "GreaterThanOrEqual",
                        1,
                        "Total",
                        [
                            {
                                "name": "ResponseType",
                                "operator": "Include",
                                "values": ["ServerBusyError", "ClientThrottlingError"],
                            }
                        ],
                    )
                ],
            ),
        }
        self.lag_alert = monitor.ScheduledQueryRule(
            f"{name}-fast-path-lag",
            resource_group_name=resource_group,
            location=fast_path.location,
            description=f"The fast path is more than {alerts.fast_path_lag_seconds}s behind the hub",
            severity=2,
            enabled=True,
            kind="LogAlert",
            scopes=[fresh_insights],
            evaluation_frequency="PT5M",
            window_size="PT5M",
            criteria={
                "all_of": [
                    {
                        "query": LAG_QUERY,
                        "time_aggregation": "Maximum",
                        "metric_measure_column": "lag_s",
                        "operator": "GreaterThan",
                        "threshold": alerts.fast_path_lag_seconds,
                        "failing_periods": {
                            "number_of_evaluation_periods": 1,
                            "min_failing_periods_to_alert": 1,
                        },
                    }
                ]
            },
            actions={"action_groups": [self.action_group.id]},
            auto_mitigate=True,
            tags=tags,
            opts=child,
        )
        # The slow path: Azure ML's run events in Log Analytics (the workspace's diagnostics).
        runs = f'AmlRunStatusChangedEvent | where ExperimentName == "{training.alert_targets["experiment"]}"'
        queries = {
            "training-failed": (
                "A training run failed",
                f'{runs} | where Status == "Failed"',
                "PT1H",
                "PT1H",
            ),
        }
        if training.alert_targets.get("scheduled"):
            queries["training-missing"] = (
                "No training run completed in the last 26 hours",
                f'{runs} | where Status == "Completed" | summarize n = count() | where n == 0',
                "PT1H",
                "P1D",
            )
        health = (
            f'customMetrics | where tostring(customDimensions.Job) == "{training.alert_targets["registry"]}"'
        )
        insights_queries = {
            "model-refused": (
                f"The gate refused {alerts.model_refusals_in_a_row} candidates in a row",
                f'{health} | where name == "RefusalsInARow" and value >= {alerts.model_refusals_in_a_row}',
            ),
            "model-age": (
                f"The model served was promoted more than {alerts.model_max_age_days} days ago",
                f'{health} | where name == "ServedModelAgeDays" and value > {alerts.model_max_age_days}',
            ),
        }

        def log_alert(key: str, description: str, query: str, scope, every: str, window: str):
            """An alert when ``query`` finds any row in ``window``."""
            return monitor.ScheduledQueryRule(
                f"{name}-{key}",
                resource_group_name=resource_group,
                location=fast_path.location,
                description=description,
                severity=2,
                enabled=True,
                kind="LogAlert",
                scopes=[scope],
                evaluation_frequency=every,
                window_size=window,
                criteria={
                    "all_of": [
                        {
                            "query": query,
                            "time_aggregation": "Count",
                            "operator": "GreaterThan",
                            "threshold": 0,
                            "failing_periods": {
                                "number_of_evaluation_periods": 1,
                                "min_failing_periods_to_alert": 1,
                            },
                        }
                    ]
                },
                actions={"action_groups": [self.action_group.id]},
                auto_mitigate=False,
                tags=tags,
                opts=child,
            )

        self.training_alerts = [
            *(
                log_alert(key, description, query, log_workspace_id, every, window)
                for key, (description, query, every, window) in queries.items()
            ),
            *(
                log_alert(key, description, query, training.alert_targets["insights"], "PT1H", "P1D")
                for key, (description, query) in insights_queries.items()
            ),
        ]
        self.diagnostics = [
            monitor.DiagnosticSetting(
                f"{name}-diag-{key}",
                name="to-log-analytics",
                resource_uri=resource_id,
                workspace_id=log_workspace_id,
                logs=[{"category_group": "allLogs", "enabled": True}],
                metrics=[{"category": "AllMetrics", "enabled": True}],
                opts=child,
            )
            for key, resource_id in sorted(diagnosed.items())
        ]
        self.register_outputs({"action_group": self.action_group.id})
