"""The chain as a multi-language component: ``DataFlowChain``.

``components/__main__.py`` serves it with Pulumi's component provider host,
so TypeScript, Go, C#, Java and YAML programs can use it after
``pulumi package add <path to this repository>/components``::

    # Pulumi.yaml of a YAML program
    resources:
      chain:
        type: data-flow:index:DataFlowChain
        properties:
          cloud: aws
          config:
            aws: {region: eu-west-1, vpc_id: vpc-..., subnet_ids: [...], ...}
            processing: {max_workers: 4}

``config`` takes the same sections, with the same keys, as a stack's
``data-flow:*`` config; it is validated the same way (an error names the key
and the value). The outputs are the same seven every chain exports.
Python programs can import the per-cloud components directly instead.

No ``from __future__ import annotations`` here: Pulumi's schema inference
reads the annotations as types.
"""

from typing import Any, TypedDict

import pulumi

from components.chain import build_chain
from components.spec import load_spec


class DataFlowChainArgs(TypedDict):
    cloud: str
    """Where the chain runs: gcp, aws or azure."""
    config: dict[str, Any]
    """The chain's settings: the sections of a stack's data-flow config (stream, processing, warehouse,
    model, serve, alerts, labels, environment, and the cloud's own section)."""


class DataFlowChain(pulumi.ComponentResource):
    """The real-time e-commerce chain on one cloud: ingest, processing, warehouse, model, API, alerts."""

    ingest_endpoint: pulumi.Output[str]
    """Where producers send events."""
    dead_letter_location: pulumi.Output[str]
    """Where rejected input is kept."""
    warehouse_location: pulumi.Output[str]
    """The warehouse (dataset, workgroup/database or server/pool)."""
    processing_job: pulumi.Output[str]
    """The streaming job."""
    model_endpoint: pulumi.Output[str]
    """The model endpoint."""
    api_url: pulumi.Output[str]
    """The recommendation API's base URL."""
    collector_url: pulumi.Output[str]
    """Where trackers send events (Segment's API); empty when the collector is off."""

    def __init__(
        self, name: str, args: DataFlowChainArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("data-flow:index:DataFlowChain", name, {}, opts)
        spec = load_spec({**dict(args.get("config") or {}), "cloud": args["cloud"]})
        chain = build_chain(spec, name, pulumi.ResourceOptions(parent=self))
        outputs = chain.outputs()
        for key, value in outputs.items():
            setattr(self, key, value)
        self.register_outputs(dict(outputs))
