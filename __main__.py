"""The Pulumi program: read the stack's config, build the chain on its cloud.

    pulumi up -s gcp-dev      # or aws-dev, azure-dev

Config keys are described in ``components/spec.py`` and the README; invalid
config stops here, before any resource, with the key and the value.
"""

import pulumi

from components.spec import spec_from_pulumi_config

spec = spec_from_pulumi_config()
if spec.cloud == "gcp":
    from components.gcp import GcpChain

    chain = GcpChain("dataflow", spec)
elif spec.cloud == "aws":
    from components.aws import AwsChain

    chain = AwsChain("dataflow", spec)
else:
    from components.azure import AzureChain

    chain = AzureChain("dataflow", spec)

for key, value in chain.outputs().items():
    pulumi.export(key, value)
