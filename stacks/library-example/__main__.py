"""Your own Pulumi program, importing one link of the chain as a library.

    cd stacks/library-example && pulumi stack init dev && pulumi config set aws:region eu-west-1 && pulumi up

It creates only the ingest link on AWS (a KMS-encrypted Kinesis stream and
its dead-letter bucket) next to your own resources, and grants your
existing producer role ``grant_publish``: the same component, defaults and
grants the full chain uses (``pip install 'data-flow[aws]'``).
"""

import pulumi
import pulumi_aws as aws

from components.aws import Ingest
from components.spec import DeadLetterSpec, StreamSpec


def build(producer_role_name: str) -> Ingest:
    key = aws.kms.Key("events-key", description="events", enable_key_rotation=True)
    ingest = Ingest(
        "events",
        stream=StreamSpec(retention_hours=48),
        dead_letters=DeadLetterSpec(table_retention_days=90),
        kms_key_arn=key.arn,
        tags={"team": "checkout"},
    )
    producer = aws.iam.Role.get("producer", producer_role_name)
    ingest.grant_publish("checkout", producer)
    pulumi.export("stream_arn", ingest.stream.arn)
    return ingest


if __name__ == "__main__":
    build(pulumi.Config().get("producer_role") or "checkout-producer")
