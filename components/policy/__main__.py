"""The policy pack Pulumi runs: ``pulumi preview --policy-pack components/policy``.

Kept to the one call: constructing a ``PolicyPack`` starts the policy server.
"""

from pulumi_policy import PolicyPack

try:
    from pack import policies
except ImportError:
    from components.policy.pack import policies

PolicyPack(
    name="data-flow", description="Secure defaults of the Data-Flow chain on every cloud", policies=policies()
)
