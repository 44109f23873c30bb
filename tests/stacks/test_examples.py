"""The example programs in ``stacks/``: a consumer reading the chain's
outputs with a StackReference, and a program importing one component."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pulumi
import pytest

pytest.importorskip("pulumi_aws")

from components.chain import OUTPUTS, build_chain
from components.mocks import resolved, run_program
from components.package import DataFlowChain
from components.spec import load_spec
from tests.components.configs import AWS, aws_config

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def example(folder: str):
    spec = importlib.util.spec_from_file_location(
        f"example_{folder.replace('-', '_')}", STACKS / folder / "__main__.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def chain_outputs() -> dict:
    _, chain = run_program(lambda: build_chain(load_spec(aws_config())))
    return resolved(pulumi.Output.all(**chain.outputs()))


def test_the_consumer_reads_every_output_of_a_chain():
    consumer = example("consumer")
    assert set(consumer.OUTPUTS) == set(OUTPUTS)
    outputs = chain_outputs()
    _, values = run_program(
        lambda: consumer.consume("my-org/data-flow/aws-dev"),
        stack_outputs={"my-org/data-flow/aws-dev": outputs},
    )
    assert resolved(pulumi.Output.all(**values)) == outputs


def test_the_consumer_fails_on_a_chain_missing_an_output():
    consumer = example("consumer")
    outputs = {k: v for k, v in chain_outputs().items() if k != "api_url"}
    with pytest.raises(Exception, match="api_url"):
        _, values = run_program(
            lambda: consumer.consume("my-org/data-flow/aws-dev"),
            stack_outputs={"my-org/data-flow/aws-dev": outputs},
        )
        resolved(values["api_url"])


def test_a_program_can_import_one_component_and_grant_its_own_role():
    library = example("library-example")
    rec, _ = run_program(lambda: library.build("checkout-producer"))
    assert rec.one("kinesis/stream:Stream").inputs["retentionPeriod"] == 48
    grant = rec.one("iam/rolePolicy:RolePolicy", "events-publish-checkout")
    assert grant.inputs["role"] == "checkout-producer"
    assert not rec.of_type("glue/job:Job")  # only the link it asked for


SCHEMA_PROBE = """
import json
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema
from components.package import DataFlowChain

found = Analyzer("data-flow").analyze([DataFlowChain])
definition = found["component_definitions"]["DataFlowChain"]
schema = generate_schema("data-flow", "0.1.0", "data-flow", found["component_definitions"], {}, [])
print(json.dumps({
    "inputs": {k: [v.type.value, v.plain, v.optional] for k, v in definition.inputs.items()},
    "outputs": sorted(definition.outputs),
    "schema": str(schema.to_json() if hasattr(schema, "to_json") else schema),
}))
"""


def test_the_multi_language_component_schema_is_inferred():
    """In a fresh interpreter, as the provider host runs: pulumi.provider's own
    google.rpc protos clash with googleapis' once both are loaded in one process
    (the test session loads the latter through the Vertex API types)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SCHEMA_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["inputs"] == {"cloud": ["string", True, False], "config": ["object", True, False]}
    assert found["outputs"] == sorted(
        [
            "ingestEndpoint",
            "deadLetterLocation",
            "warehouseLocation",
            "processingJob",
            "modelEndpoint",
            "apiUrl",
            "collectorUrl",
        ]
    )
    assert "data-flow:index:DataFlowChain" in found["schema"]


def test_the_multi_language_component_builds_the_chain_from_plain_config():
    rec, component = run_program(
        lambda: DataFlowChain(
            "shop", {"cloud": "aws", "config": {"aws": dict(AWS), "processing": {"max_workers": 5}}}
        )
    )
    assert rec.one("glue/job:Job", "shop-process-job").inputs["numberOfWorkers"] == 5
    assert resolved(component.warehouse_location) == "shop-warehouse-wg/dataflow"
    with pytest.raises(Exception, match=r"data-flow:processing\.max_workers"):
        run_program(
            lambda: DataFlowChain(
                "bad", {"cloud": "aws", "config": {"aws": dict(AWS), "processing": {"max_workers": 0}}}
            )
        )
