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
from components.aws.ml import image_pull_statements
from components.aws.security import (
    encrypted_log_group,
    grant,
    kms_statements,
    log_write,
    service_role,
    statement,
)
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:aws:Collector"
HANDLER = "pipeline_code.collector.aws_lambda.handler"


class Collector(pulumi.ComponentResource):
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
        log_group = encrypted_log_group(
            f"{name}-logs",
            f"/aws/lambda/{name}",
            kms_key_arn=kms_key_arn,
            tags=tags,
            retention_days=log_retention_days,
            parent=self,
        )
        role = service_role(f"{name}-function", "lambda.amazonaws.com", tags, self)
        grants = [
            ingest.grant_publish("collector", role),
            grant(
                f"{name}-runtime",
                role,
                [
                    statement(["secretsmanager:GetSecretValue"], [self.write_keys.arn]),
                    log_write(log_group),
                    *image_pull_statements(image),
                    kms_statements(kms_key_arn, write=False),
                ],
                self,
            ),
        ]
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=name,
            role=role.arn,
            package_type="Image",
            image_uri=image,
            image_config={"entry_points": ["python", "-m", "awslambdaric"], "commands": [HANDLER]},
            memory_size=collector.memory_mb,
            timeout=15,
            reserved_concurrent_executions=collector.max_instances,
            environment={
                "variables": {
                    host.ENV_COLLECTOR_SINK: ingest.stream.name.apply(lambda s: host.sink("kinesis", s)),
                    host.ENV_SPILL_MB: "0",
                    host.ENV_WRITE_KEYS_SECRET: self.write_keys.arn,
                }
            },
            kms_key_arn=kms_key_arn,
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "Text", "log_group": log_group.name},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        # Public by design: the collector checks write keys itself.
        self.function_url = aws.lambda_.FunctionUrl(
            f"{name}-url", function_name=self.function.name, authorization_type="NONE", opts=child
        )
        aws.lambda_.Permission(
            f"{name}-public",
            action="lambda:InvokeFunctionUrl",
            function=self.function.name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        self.url = self.function_url.function_url
        self.register_outputs({"url": self.url})
