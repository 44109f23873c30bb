"""The collector on AWS: the ingest front door as a Lambda function URL.

Trackers send to the URL; the function checks their write key and puts the
events on the Ingest stream. The URL is public on purpose (browsers and apps
call it; they cannot sign SigV4) and the collector authenticates callers by
write key. The keys live in a Secrets Manager secret encrypted with the
chain's key (``<name>-write-keys``; set its value with
``aws secretsmanager put-secret-value``), read at cold start. The function's
role may put records on that stream, read that secret, write its log group
and pull its image, nothing else.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.ingest import Ingest
from components.aws.lambdas import image_function
from components.aws.security import statement
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:aws:Collector"
HANDLER = "pipeline_code.collector.aws_lambda.handler"


class Collector(pulumi.ComponentResource):
    """The collector as a Lambda function URL: Segment's tracking API in front of the stream.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        collector: ``data-flow:collector``: instance bound and memory of the collector.
        image: The image with the collector in ECR (run through ``awslambdaric``).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        log_retention_days: Days the function's log group keeps entries. Default: 30.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    function: aws.lambda_.Function
    write_keys: aws.secretsmanager.Secret
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        ingest: Ingest,
        collector: CollectorSpec,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.write_keys = aws.secretsmanager.Secret(
            f"{name}-write-keys", name=f"{name}-write-keys", kms_key_id=kms_key_arn, tags=tags, opts=child
        )
        # Public by design: trackers in browsers call it; it checks write keys itself.
        deployed = image_function(
            self,
            name,
            function_name=name,
            handler=HANDLER,
            image=image,
            memory_mb=collector.memory_mb,
            timeout_s=15,
            max_concurrency=collector.max_instances,
            environment={
                host.ENV_COLLECTOR_SINK: ingest.stream.name.apply(lambda s: host.sink("kinesis", s)),
                host.ENV_SPILL_MB: "0",
                host.ENV_WRITE_KEYS_SECRET: self.write_keys.arn,
                **(
                    {host.ENV_ALLOWED_ORIGINS: ",".join(collector.allowed_origins)}
                    if collector.allowed_origins
                    else {}
                ),
            },
            kms_key_arn=kms_key_arn,
            tags=tags,
            public=True,
            runtime_policy=f"{name}-runtime",
            statements=[statement(["secretsmanager:GetSecretValue"], [self.write_keys.arn])],
            role_grants=[lambda role: ingest.grant_publish("collector", role)],
            log_retention_days=log_retention_days,
        )
        self.function, self.role, self.function_url = deployed.function, deployed.role, deployed.function_url
        self.url = deployed.url
        self.register_outputs({"url": self.url})
