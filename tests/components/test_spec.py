"""The cloud-neutral spec: defaults, every validation error, stack files."""

from __future__ import annotations

import pytest

from components.spec import ChainSpec, SpecError, load_spec, spec_from_stack_file
from tests.components.configs import AWS, AZURE, GCP, aws_config, azure_config, gcp_config


def test_defaults_are_safe():
    spec = load_spec(gcp_config())
    assert spec.warehouse.deletion_protection is True
    assert spec.serve.public is False
    assert spec.stream.enforce_schema is True
    assert spec.stream.retention_hours == 168
    assert 5 <= spec.dead_letters.max_delivery_attempts <= 100
    assert spec.processing.min_workers <= spec.processing.max_workers


def test_labels_merge_over_house_labels():
    spec = load_spec(gcp_config(labels={"team": "growth", "environment": "staging"}))
    assert spec.house_labels() == {
        "app": "data-flow",
        "environment": "staging",
        "managed-by": "pulumi",
        "team": "growth",
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "data-flow:cloud"),
        ({"cloud": "gcpp"}, "data-flow:cloud: Invalid enum value 'gcpp'"),
        (gcp_config(stream={"retention_hours": 1000}), "data-flow:stream.retention_hours.*got 1000"),
        (gcp_config(stream={"retention_hours": "a week"}), "data-flow:stream.retention_hours.*'a week'"),
        (gcp_config(stream={"retension_hours": 24}), "data-flow:stream.retension_hours is not a setting"),
        (gcp_config(dead_letters={"max_delivery_attempts": 2}), "max_delivery_attempts.*got 2"),
        (
            gcp_config(processing={"min_workers": 5, "max_workers": 2}),
            r"min_workers \(5\) is above max_workers",
        ),
        (gcp_config(model={"min_replicas": 3, "max_replicas": 1}), r"min_replicas \(3\) is above"),
        (gcp_config(serve={"min_instances": 9, "max_instances": 1}), r"min_instances \(9\) is above"),
        (gcp_config(model={"size": "huge"}), "data-flow:model.size.*'huge'"),
        (gcp_config(labels={"Team": "x"}), "labels key 'Team'"),
        (gcp_config(labels={"team": "Growth!"}), "labels.team value 'Growth!'"),
        (gcp_config(environment="Prod"), "data-flow:environment.*'Prod'"),
        (gcp_config(warehouse={"dataset": "has-dash"}), "data-flow:warehouse.dataset.*'has-dash'"),
        ({"cloud": "gcp"}, "data-flow:gcp is required"),
        (gcp_config(gcp={**GCP, "project": "X"}), "gcp:project 'X'"),
        (gcp_config(gcp={**GCP, "region": "europe"}), "gcp:region 'europe'"),
        (
            gcp_config(gcp={**GCP, "pipeline_image": "docker.io/me/pipeline"}),
            "gcp.pipeline_image 'docker.io/me/pipeline'",
        ),
        (gcp_config(gcp={**GCP, "model_artifact_uri": "/srv/model"}), "gcp.model_artifact_uri '/srv/model'"),
        (gcp_config(gcp={**GCP, "kms_key_name": "my-key"}), "gcp.kms_key_name 'my-key'"),
        (gcp_config(model={"private": True}), "model.private is true but data-flow:gcp.network"),
        (gcp_config(gcp={k: v for k, v in GCP.items() if k != "api_image"}), "data-flow:gcp.*api_image"),
    ],
)
def test_invalid_config_names_the_key_and_value(config, message):
    with pytest.raises(SpecError, match=message):
        load_spec(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cloud": "aws"}, "data-flow:aws is required when data-flow:cloud is 'aws'"),
        (aws_config(aws={**AWS, "region": "ireland"}), "aws:region 'ireland'"),
        (aws_config(aws={**AWS, "vpc_id": "my-vpc"}), "aws.vpc_id 'my-vpc'"),
        (aws_config(aws={**AWS, "subnet_ids": AWS["subnet_ids"][:2]}), "at least 3 subnets"),
        (aws_config(aws={**AWS, "subnet_ids": [*AWS["subnet_ids"], "sn-1"]}), "entry 'sn-1'"),
        (aws_config(aws={**AWS, "api_image": "docker.io/me/api:1"}), "aws.api_image 'docker.io/me/api:1'"),
        (aws_config(aws={**AWS, "model_artifact_uri": "s3://b/model"}), "must be s3://BUCKET/KEY.tar.gz"),
        (aws_config(aws={**AWS, "kms_key_arn": "alias/x"}), "aws.kms_key_arn 'alias/x'"),
        (aws_config(aws={**AWS, "redshift_base_rpus": 12}), r"aws\.redshift_base_rpus.*12"),
        (aws_config(aws={**AWS, "kinesis_shards": 0}), r"aws\.kinesis_shards.*0"),
        (aws_config(aws={**AWS, "glue_worker_type": "G.8X"}), r"aws\.glue_worker_type.*G.8X"),
        (aws_config(aws={**AWS, "kinesis_connector_jar_url": "http://x/a.jar"}), "must be https://"),
    ],
)
def test_invalid_aws_config_names_the_key_and_value(config, message):
    with pytest.raises(SpecError, match=message):
        load_spec(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cloud": "azure"}, "data-flow:azure is required when data-flow:cloud is 'azure'"),
        (azure_config(azure={**AZURE, "location": "West Europe"}), "azure-native:location 'West Europe'"),
        (
            azure_config(azure={**AZURE, "api_image": "docker.io/me/api:1"}),
            "azure.api_image 'docker.io/me/api:1'",
        ),
        (
            azure_config(azure={**AZURE, "model_artifact_uri": "s3://b/m"}),
            "azure.model_artifact_uri 's3://b/m'",
        ),
        (
            azure_config(azure={**AZURE, "function_subnet_id": "functions"}),
            "azure.function_subnet_id 'functions'",
        ),
        (
            azure_config(azure={**AZURE, "sql_admin_object_id": "admins"}),
            "azure.sql_admin_object_id 'admins'",
        ),
        (
            azure_config(azure={k: v for k, v in AZURE.items() if k != "api_client_id"}),
            "api_client_id .*got None",
        ),
        (azure_config(azure={**AZURE, "cmk_key_url": "my-key"}), "azure.cmk_key_url 'my-key'"),
        (azure_config(azure={**AZURE, "sql_pool_sku": "S1"}), r"azure\.sql_pool_sku.*'S1'"),
        (azure_config(azure={**AZURE, "eventhub_partitions": 64}), r"azure\.eventhub_partitions.*64"),
    ],
)
def test_invalid_azure_config_names_the_key_and_value(config, message):
    with pytest.raises(SpecError, match=message):
        load_spec(config)


def test_a_public_api_on_azure_needs_no_client_id():
    spec = load_spec(
        azure_config(azure={k: v for k, v in AZURE.items() if k != "api_client_id"}, serve={"public": True})
    )
    assert spec.azure is not None and spec.azure.api_client_id is None


def test_every_committed_stack_file_is_valid():
    spec = spec_from_stack_file("stacks/Pulumi.gcp-dev.yaml")
    assert isinstance(spec, ChainSpec) and spec.cloud == "gcp" and spec.gcp is not None
    assert spec.gcp.project and spec.gcp.region
    aws = spec_from_stack_file("stacks/Pulumi.aws-dev.yaml")
    assert aws.cloud == "aws" and aws.aws is not None and aws.aws.region == "eu-west-1"
    azure = spec_from_stack_file("stacks/Pulumi.azure-dev.yaml")
    assert azure.cloud == "azure" and azure.azure is not None and azure.azure.location == "westeurope"


def test_a_stack_file_error_names_the_key(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  data-flow:cloud: gcp\n  data-flow:processing:\n    max_workers: many\n")
    with pytest.raises(SpecError, match=r"data-flow:processing\.max_workers.*'many'"):
        spec_from_stack_file(str(bad))


def test_collector_origins_are_checked_and_reach_every_clouds_collector():
    spec = load_spec(gcp_config(collector={"allowed_origins": ["https://shop.example"]}))
    assert spec.collector.allowed_origins == ["https://shop.example"]
    with pytest.raises(SpecError, match="allowed_origins"):
        load_spec(gcp_config(collector={"allowed_origins": ["shop.example/path"]}))
