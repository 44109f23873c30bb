"""Monitoring on AWS: CloudWatch alarms on every link, an SNS topic, a dashboard.

Alarms (thresholds from the spec's ``alerts``):

- ingest backlog: the stream's ``GetRecords.IteratorAgeMilliseconds`` (max);
- dead letters: the job's ``DataFlow/DeadLettered`` per five minutes, and any
  ``SpilledBatches`` (a micro-batch that could not be committed);
- processing: Glue's failed tasks, and the job's events read dropping to
  nothing while the stream still receives records (the job stopped);
- model: the share of 5xx answers (metric math over invocations) and the
  p99 ``ModelLatency``;
- archive: Firehose's ``DeliveryToS3.DataFreshness`` (the oldest record
  not yet in S3);
- fast path: the function's errors per five minutes and its ``IteratorAge``
  (how old the newest record it finished was), and any throttled read or
  write on the user-state table.

Every alarm notifies the SNS topic (encrypted with the chain's key); an
email subscription is added when ``alerts.email`` is set (the address must
confirm it). Missing data is "not breaching", so a quiet stream is not an
incident; the job-stopped alarm is the one that watches for silence.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components.aws.archive import Archive
from components.aws.fastpath import FastPath, UserState
from components.aws.ingest import Ingest
from components.aws.model import Model
from components.aws.processing import Processing
from components.aws.training import Training
from components.spec import AlertSpec
from pipeline_code.host import CLOUDWATCH_NAMESPACE

TYPE = "data-flow:aws:Monitoring"


class Monitoring(pulumi.ComponentResource):
    """CloudWatch alarms on every link, an encrypted SNS topic, and a dashboard.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        region: Region the dashboard's widgets read.
        alerts: ``data-flow:alerts``: the email alerts go to (none: alerts still fire, nobody is
            emailed) and thresholds.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        processing: The processing link (watched through ``alert_targets``).
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        fast_path: The fast path's function (watched through ``alert_targets``).
        user_state: The fast path's store (watched through ``alert_targets``).
        archive: The raw archive (watched through ``alert_targets``).
        training: The slow path (watched through ``alert_targets``: the job's health metrics).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    topic: aws.sns.Topic
    alarms: dict[str, aws.cloudwatch.MetricAlarm]

    def __init__(
        self,
        name: str,
        *,
        region: str,
        alerts: AlertSpec,
        ingest: Ingest,
        processing: Processing,
        model: Model,
        fast_path: FastPath,
        user_state: UserState,
        archive: Archive,
        training: Training,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        function_name = fast_path.alert_targets["function"]
        table_name = user_state.alert_targets["table"]
        child = pulumi.ResourceOptions(parent=self)
        stream_name = ingest.alert_targets["stream"]
        job_name = processing.alert_targets["job"]
        endpoint_name = model.alert_targets["endpoint"]
        variant = model.alert_targets["variant"]
        self.topic = aws.sns.Topic(f"{name}-alerts", kms_master_key_id=kms_key_arn, tags=tags, opts=child)
        if alerts.email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=alerts.email, opts=child
            )
        notify = [self.topic.arn]

        def alarm(key: str, description: str, **kwargs) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}",
                alarm_description=description,
                alarm_actions=notify,
                ok_actions=notify,
                treat_missing_data=kwargs.pop("treat_missing_data", "notBreaching"),
                tags=tags,
                opts=child,
                **kwargs,
            )

        job_dims = {"Job": job_name}
        endpoint_dims = {"EndpointName": endpoint_name, "VariantName": variant}
        self.alarms = {
            "backlog": alarm(
                "backlog",
                f"The oldest unread event is older than {alerts.backlog_seconds}s",
                namespace="AWS/Kinesis",
                metric_name="GetRecords.IteratorAgeMilliseconds",
                dimensions={"StreamName": stream_name},
                statistic="Maximum",
                period=60,
                evaluation_periods=5,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.backlog_seconds * 1000,
            ),
            "dead-letters": alarm(
                "dead-letters",
                f"More than {alerts.dead_letters_per_5min} events dead-lettered in 5 minutes",
                namespace=CLOUDWATCH_NAMESPACE,
                metric_name="DeadLettered",
                dimensions=job_dims,
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.dead_letters_per_5min,
            ),
            "spilled-batches": alarm(
                "spilled-batches",
                "A micro-batch could not be committed; its raw records are in the dead-letter bucket",
                namespace=CLOUDWATCH_NAMESPACE,
                metric_name="SpilledBatches",
                dimensions=job_dims,
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
            ),
            "job-failures": alarm(
                "job-failures",
                "The Glue job has failed tasks",
                namespace="Glue",
                metric_name="glue.driver.aggregate.numFailedTasks",
                dimensions={"JobName": job_name, "JobRunId": "ALL", "Type": "count"},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=0,
            ),
            "job-stopped": alarm(
                "job-stopped",
                f"Records arrive but the job read none for {alerts.processing_lag_seconds}s or more",
                evaluation_periods=max(1, alerts.processing_lag_seconds // 60),
                comparison_operator="GreaterThanThreshold",
                threshold=0,
                treat_missing_data="missing",
                metric_queries=[
                    {
                        "id": "incoming",
                        "metric": {
                            "namespace": "AWS/Kinesis",
                            "metric_name": "IncomingRecords",
                            "dimensions": {"StreamName": stream_name},
                            "period": 60,
                            "stat": "Sum",
                        },
                    },
                    {
                        "id": "read",
                        "metric": {
                            "namespace": CLOUDWATCH_NAMESPACE,
                            "metric_name": "EventsRead",
                            "dimensions": job_dims,
                            "period": 60,
                            "stat": "Sum",
                        },
                    },
                    {
                        "id": "stalled",
                        "expression": "IF(incoming > 0 AND FILL(read, 0) == 0, 1, 0)",
                        "label": "records arriving, none processed",
                        "return_data": True,
                    },
                ],
            ),
            "model-errors": alarm(
                "model-errors",
                f"More than {alerts.error_rate:.0%} of model requests fail (5xx)",
                evaluation_periods=3,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.error_rate,
                metric_queries=[
                    {
                        "id": "errors",
                        "metric": {
                            "namespace": "AWS/SageMaker",
                            "metric_name": "Invocation5XXErrors",
                            "dimensions": endpoint_dims,
                            "period": 60,
                            "stat": "Sum",
                        },
                    },
                    {
                        "id": "calls",
                        "metric": {
                            "namespace": "AWS/SageMaker",
                            "metric_name": "Invocations",
                            "dimensions": endpoint_dims,
                            "period": 60,
                            "stat": "Sum",
                        },
                    },
                    {
                        "id": "share",
                        "expression": "IF(calls > 0, errors / calls, 0)",
                        "label": "5xx share",
                        "return_data": True,
                    },
                ],
            ),
            "model-latency": alarm(
                "model-latency",
                f"Model p99 latency above {alerts.latency_p99_ms} ms",
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                dimensions=endpoint_dims,
                extended_statistic="p99",
                period=60,
                evaluation_periods=5,
                comparison_operator="GreaterThanThreshold",
                # ModelLatency is in microseconds.
                threshold=alerts.latency_p99_ms * 1000,
            ),
            "fast-path-errors": alarm(
                "fast-path-errors",
                f"The fast path failed more than {alerts.fast_path_errors_per_5min} times in 5 minutes",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": function_name},
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.fast_path_errors_per_5min,
            ),
            "fast-path-lag": alarm(
                "fast-path-lag",
                f"The fast path is more than {alerts.fast_path_lag_seconds}s behind the stream",
                namespace="AWS/Lambda",
                metric_name="IteratorAge",
                dimensions={"FunctionName": function_name},
                statistic="Maximum",
                period=60,
                evaluation_periods=3,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.fast_path_lag_seconds * 1000,
            ),
            "archive-delivery": alarm(
                "archive-delivery",
                f"An event has waited more than {alerts.archive_delay_seconds}s to reach the raw archive",
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions={"DeliveryStreamName": archive.alert_targets["delivery"]},
                statistic="Maximum",
                period=300,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=alerts.archive_delay_seconds,
            ),
            "user-state-throttled": alarm(
                "user-state-throttled",
                "Reads or writes of the user-state table were throttled",
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                metric_queries=[
                    *(
                        {
                            "id": key,
                            "metric": {
                                "namespace": "AWS/DynamoDB",
                                "metric_name": metric,
                                "dimensions": {"TableName": table_name},
                                "period": 300,
                                "stat": "Sum",
                            },
                        }
                        for key, metric in (
                            ("reads", "ReadThrottleEvents"),
                            ("writes", "WriteThrottleEvents"),
                        )
                    ),
                    {
                        "id": "throttled",
                        "expression": "FILL(reads, 0) + FILL(writes, 0)",
                        "label": "throttled requests",
                        "return_data": True,
                    },
                ],
            ),
        }
        registry = {"Registry": training.alert_targets["registry"]}

        def health(key: str, description: str, metric: str, threshold: float, **kwargs):
            return alarm(
                key,
                description,
                namespace=CLOUDWATCH_NAMESPACE,
                metric_name=metric,
                dimensions=registry,
                statistic="Maximum",
                period=86_400,
                evaluation_periods=1,
                threshold=threshold,
                **kwargs,
            )

        self.alarms["model-refused"] = health(
            "model-refused",
            f"The gate refused {alerts.model_refusals_in_a_row} candidates in a row",
            "RefusalsInARow",
            alerts.model_refusals_in_a_row,
            comparison_operator="GreaterThanOrEqualToThreshold",
        )
        self.alarms["model-age"] = health(
            "model-age",
            f"The model served was promoted more than {alerts.model_max_age_days} days ago",
            "ServedModelAgeDays",
            alerts.model_max_age_days,
            comparison_operator="GreaterThanThreshold",
        )
        if training.alert_targets.get("scheduled"):
            # A failed or missed run publishes nothing: missing data is the alarm.
            self.alarms["training-failed"] = health(
                "training-failed",
                "No training run finished in the last day (failed, or never started)",
                "ModelsTrained",
                1,
                comparison_operator="LessThanThreshold",
                treat_missing_data="breaching",
            )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{name}-chain",
            dashboard_body=pulumi.Output.all(stream_name, job_name, endpoint_name, function_name).apply(
                lambda v: dashboard(region, v[0], v[1], v[2], variant, v[3])
            ),
            opts=child,
        )
        self.register_outputs({"topic": self.topic.arn})


def dashboard(region: str, stream: str, job: str, endpoint: str, variant: str, function: str) -> str:
    """The chain on one screen: ingest, processing, dead letters, model, fast path."""

    def widget(title: str, metrics: list, stat: str = "Sum") -> dict:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {"title": title, "region": region, "stat": stat, "period": 60, "metrics": metrics},
        }

    return json.dumps(
        {
            "widgets": [
                widget("Events in (records/min)", [["AWS/Kinesis", "IncomingRecords", "StreamName", stream]]),
                widget(
                    "Ingest backlog (ms)",
                    [["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", stream]],
                    "Maximum",
                ),
                widget(
                    "Processed per minute",
                    [
                        [CLOUDWATCH_NAMESPACE, name, "Job", job]
                        for name in ("EventsRead", "EventsStored", "DuplicatesSkipped", "DeadLettered")
                    ],
                ),
                widget(
                    "Model invocations and 5xx",
                    [
                        ["AWS/SageMaker", n, "EndpointName", endpoint, "VariantName", variant]
                        for n in ("Invocations", "Invocation5XXErrors")
                    ],
                ),
                widget(
                    "Model latency p99 (us)",
                    [["AWS/SageMaker", "ModelLatency", "EndpointName", endpoint, "VariantName", variant]],
                    "p99",
                ),
                widget(
                    "Fast path: invocations and errors",
                    [["AWS/Lambda", n, "FunctionName", function] for n in ("Invocations", "Errors")],
                ),
                widget(
                    "Fast path: iterator age (ms)",
                    [["AWS/Lambda", "IteratorAge", "FunctionName", function]],
                    "Maximum",
                ),
            ]
        },
        sort_keys=True,
    )
