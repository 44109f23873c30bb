"""The rules as ``pulumi_policy`` policies (imported by ``__main__.py``).

Run with a preview: ``pulumi preview -s aws-dev --policy-pack components/policy``.
Every rule is mandatory: a violation stops the update. Each policy's
description names its checkov equivalent where one exists.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

try:  # run by Pulumi from this directory
    from rules import RULES, STACK_RULES, Resource, Rule, StackRule
except ImportError:  # imported as part of the package
    from components.policy.rules import RULES, STACK_RULES, Resource, Rule, StackRule


def _describe(rule: Rule | StackRule) -> str:
    return f"{rule.description} (checkov: {rule.checkov})" if rule.checkov else rule.description


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if rule.applies(args.resource_type):
            message = rule.check(dict(args.props), bool(args.opts.protect))
            if message:
                report_violation(f"{args.name}: {message}", None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=_describe(rule),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation) -> None:
        resources = [
            Resource(r.resource_type, r.name, dict(r.props), bool(r.opts.protect)) for r in args.resources
        ]
        for message in rule.check(resources):
            report_violation(message, None)

    return StackValidationPolicy(
        name=rule.name,
        description=_describe(rule),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list:
    return [*(_resource_policy(r) for r in RULES), *(_stack_policy(r) for r in STACK_RULES)]
