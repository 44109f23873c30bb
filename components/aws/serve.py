"""Serving on AWS: the recommendation API as a Lambda function with a URL.

The function runs the API image (the serving Dockerfile, started through the
Lambda runtime client with ``pipeline_code.serving.aws_lambda.handler``) and
calls the SageMaker endpoint (``MODEL_ENDPOINT=sagemaker:<name>``), with
each user's fresh items read from the fast path's table (``USER_STATE``).
Secure by default: the function URL requires SigV4 (``AWS_IAM``) unless the
spec says ``serve.public``; its role may invoke that one endpoint and write
its own log group and read the user state; concurrency is capped at ``serve.max_instances``; its
environment is encrypted with the chain's key. Callers are granted with
``grant_invoke``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.fastpath import UserState
from components.aws.lambdas import image_function
from components.aws.model import Model
from components.aws.security import grant, statement
from components.spec import FastPathSpec, ServeSpec
from pipeline_code import host

TYPE = "data-flow:aws:Serve"
HANDLER = "pipeline_code.serving.aws_lambda.handler"


class Serve(pulumi.ComponentResource):
    """The API function and its URL.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        model: The model link whose endpoint is called (and granted with ``grant_invoke``).
        user_state: The fast path's store, read once per request (``grant_read``).
        fast_path: ``data-flow:fast_path``: the read's time budget.
        serve: ``data-flow:serve``: instance bounds, memory and ``public`` (off: callers must be
            granted).
        image: The API image in ECR (run through ``awslambdaric``).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        log_retention_days: Days the function's log group keeps entries. Default: 30.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    function: aws.lambda_.Function
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        model: Model,
        user_state: UserState,
        fast_path: FastPathSpec,
        serve: ServeSpec,
        image: str,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        deployed = image_function(
            self,
            name,
            function_name=f"{name}-api",
            handler=HANDLER,
            image=image,
            memory_mb=serve.memory_mb,
            timeout_s=10,
            max_concurrency=serve.max_instances,
            environment={
                host.ENV_MODEL_ENDPOINT: model.endpoint.name.apply(host.sagemaker_endpoint),
                host.ENV_USER_STATE: user_state.location,
                host.ENV_USER_STATE_TIMEOUT_MS: str(fast_path.read_timeout_ms),
            },
            kms_key_arn=kms_key_arn,
            tags=tags,
            public=serve.public,
            runtime_policy=f"{name}-function-runtime",
            role_grants=[
                lambda role: model.grant_invoke("api", role),
                lambda role: user_state.grant_read("api", role),
            ],
            log_retention_days=log_retention_days,
        )
        self.function, self.role, self.log_group = deployed.function, deployed.role, deployed.log_group
        self.function_url, self.url = deployed.function_url, deployed.url
        self.register_outputs({"url": self.url})

    def grant_invoke(self, grantee: str, role: aws.iam.Role) -> aws.iam.RolePolicy:
        """Let ``role`` call the API's URL (SigV4-signed requests)."""
        return grant(
            f"{self.name}-invoke-{grantee}",
            role,
            [statement(["lambda:InvokeFunctionUrl"], [self.function.arn])],
            self,
        )
