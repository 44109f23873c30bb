"""Serve ``DataFlowChain`` to programs in any language (Pulumi's component provider host).

Pulumi runs this when a program uses the package added with
``pulumi package add ./components`` (see ``PulumiPlugin.yaml``).
"""

from pulumi.provider.experimental import component_provider_host

from components.package import DataFlowChain

if __name__ == "__main__":
    component_provider_host(name="data-flow", components=[DataFlowChain], namespace="data-flow")
