"""The Pulumi program: read the stack's config, build the chain on its cloud.

    pulumi up -s gcp-dev      # or aws-dev, azure-dev

Config keys are described in ``components/spec.py`` and the README; invalid
config stops here, before any resource, with the key and the value. The
outputs are the same seven on every cloud (``components.outputs.OUTPUTS``).
"""

import pulumi

from components.chain import build_chain
from components.spec import spec_from_pulumi_config

chain = build_chain(spec_from_pulumi_config())
for key, value in chain.outputs().items():
    pulumi.export(key, value)
