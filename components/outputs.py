"""The outputs contract: what every cloud's chain exports for other stacks.

Every chain's ``outputs()`` returns a ``ChainOutputs``: typed attributes
for code (``chain.outputs().api_url``) and a read-only mapping for the
stack's exports and ``pulumi.StackReference`` readers (the same ten keys
on every cloud; ``OUTPUTS`` says what each means per cloud).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import pulumi

OUTPUTS = {
    "ingest_endpoint": "Where producers send events: Pub/Sub topic, Kinesis stream ARN or Event Hub id.",
    "dead_letter_location": "Rejected input: Pub/Sub dead-letter topic, s3:// or abfss:// folder.",
    "warehouse_location": "BigQuery dataset id, Redshift workgroup/database or Synapse server/pool.",
    "processing_job": "The streaming job: Dataflow job id, Glue job name or Data Factory pipeline id.",
    "model_endpoint": "Vertex AI endpoint, SageMaker endpoint ARN or Azure ML endpoint id.",
    "api_url": "The recommendation API's base URL.",
    "collector_url": "Where trackers send (Segment's API); empty when collector.enabled is false.",
    "user_state_location": "The online user state, as USER_STATE: firestore:..., dynamodb:... or tables:...",
    "archive_location": "The raw archive, by arrival hour: gs://, s3:// or abfss:// folder.",
    "model_registry_location": "Every trained version, LATEST and the promotion log: gs://, s3:// or abfss://.",
}


@dataclass(frozen=True)
class ChainOutputs(Mapping[str, pulumi.Output]):
    """The ten outputs of a chain, on any cloud (see ``OUTPUTS``)."""

    ingest_endpoint: pulumi.Output[str]
    dead_letter_location: pulumi.Output[str]
    warehouse_location: pulumi.Output[str]
    processing_job: pulumi.Output[str]
    model_endpoint: pulumi.Output[str]
    api_url: pulumi.Output[str]
    collector_url: pulumi.Output[str]
    user_state_location: pulumi.Output[str]
    archive_location: pulumi.Output[str]
    model_registry_location: pulumi.Output[str]

    def __getitem__(self, key: str) -> pulumi.Output:
        if key not in OUTPUTS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(OUTPUTS)
