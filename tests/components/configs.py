"""Stack configs the component tests build chains from: one per cloud, the
same neutral sections everywhere, each cloud's own section filled in.

    load_spec(aws_config(processing={"shards": 8}))
"""

from __future__ import annotations

GCP = {
    "project": "shop-analytics-dev",
    "region": "europe-west1",
    "pipeline_image": "europe-west1-docker.pkg.dev/shop-analytics-dev/data-flow/pipeline:1.0.0",
    "model_server_image": "europe-west1-docker.pkg.dev/shop-analytics-dev/data-flow/model-server:1.0.0",
    "api_image": "europe-west1-docker.pkg.dev/shop-analytics-dev/data-flow/model-server:1.0.0",
    "training_image": "europe-west1-docker.pkg.dev/shop-analytics-dev/data-flow/trainer:1.0.0",
    "model_artifact_uri": "gs://shop-models/recommender/20261124",
}


AWS = {
    "region": "eu-west-1",
    "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "subnet_ids": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60722", "subnet-0a1b2c3d4e5f60733"],
    "model_server_image": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/data-flow/model-server:1.0.0",
    "api_image": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/data-flow/model-server:1.0.0",
    "training_image": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/data-flow/trainer:1.0.0",
    "model_artifact_uri": "s3://shop-models/recommender/20261124/model.tar.gz",
}


SUBNET = (
    "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/net"
    "/providers/Microsoft.Network/virtualNetworks/hub/subnets/"
)
AZURE = {
    "location": "westeurope",
    "model_server_image": "dataflowacr.azurecr.io/data-flow/model-server:1.0.0",
    "api_image": "dataflowacr.azurecr.io/data-flow/api-functions:1.0.0",
    "training_image": "dataflowacr.azurecr.io/data-flow/trainer:1.0.0",
    "model_artifact_uri": "https://shopmodels.blob.core.windows.net/models/recommender/20261124",
    "private_endpoint_subnet_id": SUBNET + "private-endpoints",
    "function_subnet_id": SUBNET + "functions",
    "sql_admin_object_id": "0f0e0d0c-0b0a-0908-0706-050403020100",
    "api_client_id": "11112222-3333-4444-5555-666677778888",
}


def azure_config(**sections) -> dict:
    return {"cloud": "azure", "azure": dict(AZURE), **sections}


def gcp_config(**sections) -> dict:
    return {"cloud": "gcp", "gcp": dict(GCP), **sections}


def aws_config(**sections) -> dict:
    return {"cloud": "aws", "aws": dict(AWS), **sections}
