"""A consumer of the chain: another team's stack that reads its outputs.

    cd stacks/consumer && pulumi config set chain_stack my-org/data-flow/aws-dev && pulumi up

Every chain, on every cloud, exports the same nine outputs
(``components.outputs.OUTPUTS``); this stack requires all of them, so a chain
that stopped exporting one fails here, at preview, with the name. It then
re-exports what a producer team needs to send events and read
recommendations, whichever cloud the chain runs on.
"""

import pulumi

OUTPUTS = (
    "ingest_endpoint",
    "dead_letter_location",
    "warehouse_location",
    "processing_job",
    "model_endpoint",
    "api_url",
    "collector_url",
    "user_state_location",
    "archive_location",
    "model_registry_location",
)


def consume(chain_stack: str) -> dict[str, pulumi.Output]:
    """Read the chain's outputs; raise if it does not export one of them."""
    chain = pulumi.StackReference(chain_stack)
    values = {key: chain.require_output(key) for key in OUTPUTS}
    pulumi.export("send_events_to", values["ingest_endpoint"])
    pulumi.export("recommendations_url", values["api_url"])
    pulumi.export("trackers_send_to", values["collector_url"])
    pulumi.export("chain", pulumi.Output.all(**values))
    return values


if __name__ == "__main__":
    consume(pulumi.Config().require("chain_stack"))
