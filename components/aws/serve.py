"""Serving on AWS: the recommendation API as a Lambda function with a URL.

The function runs the API image (the serving Dockerfile, started through the
Lambda runtime client with ``pipeline_code.serving.aws_lambda.handler``) and
calls the SageMaker endpoint (``MODEL_ENDPOINT=sagemaker:<name>``).
Secure by default: the function URL requires SigV4 (``AWS_IAM``) unless the
spec says ``serve.public``; its role may invoke that one endpoint and write
its own log group; concurrency is capped at ``serve.max_instances``; its
environment is encrypted with the chain's key. Callers are granted with
``grant_invoke``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.ml import Model, image_pull_statements
from components.aws.security import (
    encrypted_log_group,
    grant,
    kms_statements,
    log_write,
    service_role,
    statement,
)
from components.spec import ServeSpec
from pipeline_code import host

TYPE = "data-flow:aws:Serve"
HANDLER = "pipeline_code.serving.aws_lambda.handler"


class Serve(pulumi.ComponentResource):
    """The API function and its URL."""

    function: aws.lambda_.Function
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        model: Model,
        serve: ServeSpec,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        function_name = f"{name}-api"
        self.log_group = encrypted_log_group(
            f"{name}-logs",
            f"/aws/lambda/{function_name}",
            kms_key_arn=kms_key_arn,
            tags=tags,
            retention_days=log_retention_days,
            parent=self,
        )
        self.role = service_role(f"{name}-function", "lambda.amazonaws.com", tags, self)
        grants = [
            model.grant_invoke("api", self.role),
            grant(
                f"{name}-function-runtime",
                self.role,
                [
                    log_write(self.log_group),
                    *image_pull_statements(image),
                    kms_statements(kms_key_arn, write=False),
                ],
                self,
            ),
        ]
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            role=self.role.arn,
            package_type="Image",
            image_uri=image,
            image_config={"entry_points": ["python", "-m", "awslambdaric"], "commands": [HANDLER]},
            memory_size=serve.memory_mb,
            timeout=10,
            reserved_concurrent_executions=serve.max_instances,
            environment={
                "variables": {host.ENV_MODEL_ENDPOINT: model.endpoint.name.apply(host.sagemaker_endpoint)}
            },
            kms_key_arn=kms_key_arn,
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "Text", "log_group": self.log_group.name},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        auth = "NONE" if serve.public else "AWS_IAM"
        self.function_url = aws.lambda_.FunctionUrl(
            f"{name}-url", function_name=self.function.name, authorization_type=auth, opts=child
        )
        if serve.public:
            # A URL without auth still needs a resource policy that lets anyone call it.
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

    def grant_invoke(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` call the API's URL (SigV4-signed requests)."""
        return grant(
            f"{self.name}-invoke-{grantee}",
            role,
            [statement(["lambda:InvokeFunctionUrl"], [self.function.arn])],
            self,
        )
