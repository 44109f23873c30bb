"""Rollout request bodies against each platform's own SDK models, and SageMaker's on moto."""

from __future__ import annotations

import re

import pytest

from pipeline_code.ml import rollout

VERSION = "20261130T151703Z-eec8c381"

SAGEMAKER = rollout.SageMakerTarget(
    endpoint="dataflow-model-endpoint",
    image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/dataflow/model-server:1.4.0",
    execution_role_arn="arn:aws:iam::123456789012:role/dataflow-model-execution",
    instance_type="ml.m5.large",
    instance_count=1,
    kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    capture_uri="s3://dataflow-model-capture/capture/",
    alarms=("dataflow-model-errors", "dataflow-model-latency"),
)


def test_sagemaker_bodies_match_botocores_service_model():
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    model = get_session().get_service_model("sagemaker")
    steps = rollout.sagemaker_plan(SAGEMAKER, VERSION, f"s3://models/models/{VERSION}.tar.gz")
    assert [s.operation for s in steps] == ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
    for step in steps:
        report = ParamValidator().validate(step.body, model.operation_model(step.operation).input_shape)
        assert not report.has_errors(), report.generate_report()
    create, _, update = (s.body for s in steps)
    # The container keeps its network isolation: SageMaker copies the files in.
    assert create["EnableNetworkIsolation"] is True
    assert create["PrimaryContainer"]["ModelDataUrl"].endswith(f"{VERSION}.tar.gz")
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert policy == {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                      "WaitIntervalInSeconds": 600}  # fmt: skip
    alarms = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert [a["AlarmName"] for a in alarms] == list(SAGEMAKER.alarms)
    assert re.fullmatch(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}", create["ModelName"])


def test_a_broken_body_is_caught_by_the_same_check():
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    shape = get_session().get_service_model("sagemaker").operation_model("UpdateEndpoint").input_shape
    body = rollout.sagemaker_plan(SAGEMAKER, VERSION, "s3://m/x.tar.gz")[2].body
    body["DeploymentConfig"]["BlueGreenUpdatePolicy"]["Canary"] = 10  # misplaced key
    assert ParamValidator().validate(body, shape).has_errors()


def test_a_rollout_without_alarms_or_with_a_bad_canary_is_refused():
    with pytest.raises(ValueError, match="at least one alarm"):
        rollout.sagemaker_plan(
            rollout.SageMakerTarget(**{**SAGEMAKER.__dict__, "alarms": ()}), VERSION, "s3://m"
        )
    with pytest.raises(ValueError, match=r"canary_percent must be in 1\.\.99, got 100"):
        rollout.sagemaker_plan(SAGEMAKER, VERSION, "s3://m", canary_percent=100)


@pytest.mark.standin
def test_sagemaker_model_and_config_are_created_on_motos_server():
    import boto3

    from tests.pipeline_code.userstate import standins

    server = standins.moto_server()
    url = next(server)
    try:
        client = boto3.client("sagemaker", endpoint_url=url, region_name="eu-west-1")
        steps = rollout.sagemaker_plan(SAGEMAKER, VERSION, f"s3://models/models/{VERSION}.tar.gz")
        rollout.run_sagemaker(client, steps[:2])  # moto has no UpdateEndpoint
        name = steps[0].body["ModelName"]
        described = client.describe_model(ModelName=name)
        assert described["PrimaryContainer"]["ModelDataUrl"] == f"s3://models/models/{VERSION}.tar.gz"
        config = client.describe_endpoint_config(EndpointConfigName=name)
        assert config["ProductionVariants"][0]["ModelName"] == name
    finally:
        server.close()


VERTEX = rollout.VertexTarget(
    project="shop-analytics-dev",
    location="europe-west4",
    endpoint_id="1234567890",
    model_id="987654321",
    image="europe-west4-docker.pkg.dev/shop-analytics-dev/data-flow/model-server:1.4.0",
    machine_type="n2-standard-2",
    min_replicas=1,
    max_replicas=2,
    service_account="dataflow-model@shop-analytics-dev.iam.gserviceaccount.com",
    kms_key_name="projects/shop-analytics-dev/locations/europe-west4/keyRings/r/cryptoKeys/k",
)


def _vertex(kind: str, body: dict):
    """Parse REST JSON into the API's own protobuf request: unknown fields raise."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    message = getattr(aiplatform_v1, kind).pb()()
    return json_format.ParseDict(body, message)


def test_vertex_bodies_parse_as_the_apis_protobuf_requests():
    upload = rollout.vertex_upload(VERTEX, VERSION, f"gs://models/models/{VERSION}/")
    parsed = _vertex("UploadModelRequest", upload.body)
    assert parsed.parent_model == VERTEX.model and parsed.model.artifact_uri.endswith(f"{VERSION}/")
    deploy = rollout.vertex_deploy(VERTEX, VERSION, VERTEX.model + "@7", "5555")
    parsed = _vertex("DeployModelRequest", deploy.body)
    assert dict(parsed.traffic_split) == {"0": 10, "5555": 90}
    assert parsed.deployed_model.model == VERTEX.model + "@7"
    first = rollout.vertex_deploy(VERTEX, VERSION, VERTEX.model + "@1", None)
    assert dict(_vertex("DeployModelRequest", first.body).traffic_split) == {"0": 100}
    update, undeploy = rollout.vertex_finish(VERTEX, "6666", "5555")
    assert list(_vertex("UpdateEndpointRequest", update.body).update_mask.paths) == ["traffic_split"]
    assert _vertex("UndeployModelRequest", undeploy.body).deployed_model_id == "5555"
    with pytest.raises(json_format_error()):
        _vertex("DeployModelRequest", {**deploy.body, "traffic": {"0": 100}})


def json_format_error():
    from google.protobuf.json_format import ParseError

    return ParseError


AZURE = rollout.AzureMLTarget(
    endpoint="dataflow-model-endpoint",
    location="westeurope",
    environment_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
    "workspaces/w/environments/dataflow-model-server/versions/1-4-0",
    model_name="dataflow-recommender",
    workspace_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
    instance_type="Standard_DS2_v2",
    instance_count=1,
)


def _snake(value):
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in value.items()}
    return value


def test_azure_ml_bodies_take_the_arm_schemas_fields():
    """azure-native's input types are generated from the same ARM REST
    schema: each body's keys, in its casing, must be their parameters."""
    from pulumi_azure_native import machinelearningservices as ml

    name, (put_deployment, put_endpoint) = rollout.azure_ml_plan(AZURE, VERSION, "blue")
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,31}", name)
    props = _snake(put_deployment.body["body"]["properties"])
    nested = {
        "liveness_probe": ml.ProbeSettingsArgs,
        "readiness_probe": ml.ProbeSettingsArgs,
        "request_settings": ml.OnlineRequestSettingsArgs,
        "scale_settings": ml.DefaultScaleSettingsArgs,
    }
    ml.ManagedOnlineDeploymentArgs(**{k: nested[k](**v) if k in nested else v for k, v in props.items()})
    ml.SkuArgs(**_snake(put_deployment.body["body"]["sku"]))
    endpoint = _snake(put_endpoint.body["body"])
    ml.OnlineEndpointPropertiesArgs(**endpoint["properties"])
    assert endpoint["properties"]["traffic"] == {name: 10, "blue": 90}
    finish = rollout.azure_ml_finish(AZURE, name, "blue")
    assert _snake(finish[0].body["body"])["properties"]["traffic"] == {name: 100}
    assert finish[1] == rollout.Step("DeleteOnlineDeployment", {"deployment": "blue"})
    with pytest.raises(TypeError):
        ml.ManagedOnlineDeploymentArgs(**{**props, "traffic": {}})  # a misplaced key is caught
