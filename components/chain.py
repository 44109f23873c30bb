"""One entry for any cloud: the chain for a spec, built by its cloud's component.

``__main__.py`` (the Pulumi program), ``dataflow plan`` and the tests all
build the chain here, so the same stack config gives the same chain
everywhere. Each cloud's package is imported only when chosen: a user of
one cloud needs only that cloud's extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import pulumi

from components.outputs import OUTPUTS, ChainOutputs
from components.spec import ChainSpec

if TYPE_CHECKING:  # each cloud's package is imported only when that cloud is built
    from components.aws import AwsChain
    from components.azure import AzureChain
    from components.gcp import GcpChain

__all__ = ["OUTPUTS", "ChainComponent", "ChainOutputs", "build_chain"]

ChainComponent: TypeAlias = "GcpChain | AwsChain | AzureChain"
"""What ``build_chain`` returns: the cloud's chain component; ``outputs()`` is a ``ChainOutputs``."""


def build_chain(
    spec: ChainSpec, name: str = "dataflow", opts: pulumi.ResourceOptions | None = None
) -> ChainComponent:
    """The chain on ``spec.cloud``; its ``outputs()`` is a ``ChainOutputs`` (the keys of ``OUTPUTS``)."""
    if spec.cloud == "gcp":
        from components.gcp import GcpChain

        return GcpChain(name, spec, opts)
    if spec.cloud == "aws":
        from components.aws import AwsChain

        return AwsChain(name, spec, opts)
    from components.azure import AzureChain

    return AzureChain(name, spec, opts)
