"""Runs in the pack's own virtualenv (pulumi-policy), from components/policy:
feeds each fixture to the real policy objects and prints what they report."""

import json
import sys

from pack import policies
from pulumi_policy.policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)


def options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


cases = json.load(sys.stdin)
by_name = {p.name: p for p in policies()}
out = {
    "policies": sorted(by_name),
    "descriptions": {n: p.description for n, p in by_name.items()},
    "results": {},
}
for case in cases:
    policy = by_name[case["rule"]]
    reported: list[str] = []

    def report(message, urn=None, reported=reported):
        reported.append(message)

    if isinstance(policy, ResourceValidationPolicy):
        args = ResourceValidationArgs(
            case["type"], case["props"], "urn:x", "r", options(case["protect"]), None
        )
        policy.validate(args, report)
    else:
        resources = [
            PolicyResource(t, props, f"urn:{name}", name, options(False), None, None, [], {})
            for t, name, props in case["resources"]
        ]
        policy.validate(StackValidationArgs(resources), report)
    out["results"][case["id"]] = reported
print(json.dumps(out))
