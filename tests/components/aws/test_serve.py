"""The serve link (the API) on AWS."""

from __future__ import annotations

from tests.components.aws.helpers import granted
from tests.components.configs import AWS
from tests.components.conftest import AWS_ACCOUNT


def test_the_api_calls_the_endpoint_the_model_created_and_only_it(default):
    rec, _ = default
    function = rec.one("lambda/function:Function", "dataflow-serve-function")
    assert function.inputs["environment"]["variables"]["MODEL_ENDPOINT"] == "sagemaker:dataflow-ml-endpoint"
    assert function.inputs["imageConfig"]["commands"] == ["pipeline_code.serving.aws_lambda.handler"]
    invoke = [s for s in granted(rec, "dataflow-serve-function") if "sagemaker:InvokeEndpoint" in s["Action"]]
    assert invoke == [
        {
            "Effect": "Allow",
            "Action": ["sagemaker:InvokeEndpoint"],
            "Resource": [f"arn:aws:sagemaker:eu-west-1:{AWS_ACCOUNT}:endpoint/dataflow-ml-endpoint"],
        }
    ]
    config = rec.one("sagemaker/endpointConfiguration:EndpointConfiguration")
    endpoint = rec.one("sagemaker/endpoint:Endpoint")
    assert endpoint.inputs["endpointConfigName"] == config.name  # the mock's name is the resource name
    variant = config.inputs["productionVariants"][0]
    assert variant["instanceType"] == "ml.m5.large" and variant["initialInstanceCount"] == 1
    model = rec.one("sagemaker/model:Model")
    assert model.inputs["primaryContainer"]["modelDataUrl"] == AWS["model_artifact_uri"]
    assert model.inputs["enableNetworkIsolation"] is True


def test_the_api_needs_signed_requests_by_default(default):
    rec, _ = default
    assert rec.one("lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "AWS_IAM"
    assert not rec.of_type("lambda/permission:Permission")
    assert (
        rec.one("lambda/function:Function", "dataflow-serve-function").inputs["reservedConcurrentExecutions"]
        == 10
    )
