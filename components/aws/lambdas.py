"""One helper for every container-image Lambda of the chain (the API, the
collector, and the stream functions to come), shared by sibling components
the way awsx's ``containers.ts`` serves both ECS services.

``image_function`` declares, under the calling component: an encrypted log
group with bounded retention, a role Lambda alone may assume, the runtime
grant (its log group, pulling the image, decrypting its environment, plus
what the caller adds), the function (image run through ``awslambdaric``,
X-Ray tracing, environment encrypted with the chain's key, concurrency
capped) and, unless ``url`` is False (a stream function has no callers), its
function URL: SigV4 (``AWS_IAM``) unless ``public``, in which case a resource
policy lets anyone call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.model import image_pull_statements
from components.aws.security import encrypted_log_group, grant, kms_statements, log_write, service_role


@dataclass
class ImageFunction:
    """What ``image_function`` declared."""

    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    function_url: aws.lambda_.FunctionUrl | None
    url: pulumi.Output[str] | None


def image_function(
    owner: pulumi.ComponentResource,
    name: str,
    *,
    function_name: str,
    handler: str,
    image: str,
    memory_mb: int,
    timeout_s: int,
    max_concurrency: int,
    environment: Mapping[str, pulumi.Input[str]],
    kms_key_arn: pulumi.Input[str],
    tags: dict[str, str],
    public: bool,
    runtime_policy: str,
    statements: Sequence[Any] = (),
    role_grants: Sequence[Any] = (),
    log_retention_days: int = 30,
    url: bool = True,
) -> ImageFunction:
    """An image Lambda with a URL, children of ``owner`` named ``{name}-...``.

    ``role_grants`` are callables given the role (other links' grant verbs,
    e.g. ``lambda role: ingest.grant_publish("collector", role)``); the
    function waits for them and for the runtime grant, named ``runtime_policy``,
    which holds the standard statements plus ``statements``.
    """
    child = pulumi.ResourceOptions(parent=owner)
    log_group = encrypted_log_group(
        f"{name}-logs",
        f"/aws/lambda/{function_name}",
        kms_key_arn=kms_key_arn,
        tags=tags,
        retention_days=log_retention_days,
        parent=owner,
    )
    role = service_role(f"{name}-function", "lambda.amazonaws.com", tags, owner)
    grants = [
        *(make(role) for make in role_grants),
        grant(
            runtime_policy,
            role,
            [
                *statements,
                log_write(log_group),
                *image_pull_statements(image),
                kms_statements(kms_key_arn, write=False),
            ],
            owner,
        ),
    ]
    function = aws.lambda_.Function(
        f"{name}-function",
        name=function_name,
        role=role.arn,
        package_type="Image",
        image_uri=image,
        image_config={"entry_points": ["python", "-m", "awslambdaric"], "commands": [handler]},
        memory_size=memory_mb,
        timeout=timeout_s,
        reserved_concurrent_executions=max_concurrency,
        environment={"variables": dict(environment)},
        kms_key_arn=kms_key_arn,
        tracing_config={"mode": "Active"},
        logging_config={"log_format": "Text", "log_group": log_group.name},
        tags=tags,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=grants),
    )
    if not url:
        return ImageFunction(function, role, log_group, None, None)
    function_url = aws.lambda_.FunctionUrl(
        f"{name}-url",
        function_name=function.name,
        authorization_type="NONE" if public else "AWS_IAM",
        opts=child,
    )
    if public:
        # A URL without auth still needs a resource policy that lets anyone call it.
        aws.lambda_.Permission(
            f"{name}-public",
            action="lambda:InvokeFunctionUrl",
            function=function.name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
    return ImageFunction(function, role, log_group, function_url, function_url.function_url)
