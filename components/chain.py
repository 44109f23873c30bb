"""One entry for any cloud: the chain for a spec, built by its cloud's component.

``__main__.py`` (the Pulumi program), ``dataflow plan`` and the tests all
build the chain here, so the same stack config gives the same chain
everywhere. Each cloud's package is imported only when chosen: a user of
one cloud needs only that cloud's extra.
"""

from __future__ import annotations

import pulumi

from components.spec import ChainSpec

# The seven outputs every cloud's chain exports, and what each means.
OUTPUTS = {
    "ingest_endpoint": "Where producers send events: Pub/Sub topic, Kinesis stream ARN or Event Hub id.",
    "dead_letter_location": "Rejected input: Pub/Sub dead-letter topic, s3:// or abfss:// folder.",
    "warehouse_location": "BigQuery dataset id, Redshift workgroup/database or Synapse server/pool.",
    "processing_job": "The streaming job: Dataflow job id, Glue job name or Data Factory pipeline id.",
    "model_endpoint": "Vertex AI endpoint, SageMaker endpoint ARN or Azure ML endpoint id.",
    "api_url": "The recommendation API's base URL.",
    "collector_url": "Where trackers send (Segment's API); empty when collector.enabled is false.",
}


def build_chain(spec: ChainSpec, name: str = "dataflow", opts: pulumi.ResourceOptions | None = None):
    """The chain on ``spec.cloud``; its ``outputs()`` has the keys of ``OUTPUTS``."""
    if spec.cloud == "gcp":
        from components.gcp import GcpChain

        return GcpChain(name, spec, opts)
    if spec.cloud == "aws":
        from components.aws import AwsChain

        return AwsChain(name, spec, opts)
    from components.azure import AzureChain

    return AzureChain(name, spec, opts)
