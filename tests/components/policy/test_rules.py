"""Every rule fails its failing fixture, passes its passing one, and every
committed stack's offline plan passes every rule."""

from __future__ import annotations

import pytest

from components.policy.rules import RULES, STACK_RULES, Resource, stack_violations, violations
from tests.components.policy.fixtures import FIXTURES, STACK_FIXTURES


def props_and_protect(fixture) -> tuple[dict, bool]:
    return fixture if isinstance(fixture, tuple) else (fixture, False)


def test_every_rule_has_fixtures_and_a_unique_name():
    names = [r.name for r in RULES] + [r.name for r in STACK_RULES]
    assert len(names) == len(set(names))
    assert set(FIXTURES) == {r.name for r in RULES}
    assert set(STACK_FIXTURES) == {r.name for r in STACK_RULES}
    assert sum(bool(r.checkov) for r in [*RULES, *STACK_RULES]) >= 15


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_each_rule_passes_its_good_fixture_and_fails_its_bad_one(rule):
    resource_type, good, bad = FIXTURES[rule.name]
    assert rule.applies(resource_type)
    assert [v for v in violations(resource_type, *props_and_protect(good)) if v[0] == rule.name] == []
    found = [v for v in violations(resource_type, *props_and_protect(bad)) if v[0] == rule.name]
    assert len(found) == 1 and found[0][1]


@pytest.mark.parametrize("rule", STACK_RULES, ids=lambda r: r.name)
def test_each_stack_rule_passes_its_good_stack_and_fails_its_bad_one(rule):
    good, bad = STACK_FIXTURES[rule.name]
    assert rule.check([Resource(*r) for r in good]) == []
    assert rule.check([Resource(*r) for r in bad])


def test_every_committed_stack_passes_every_rule():
    pytest.importorskip("pulumi_azure_native")
    from components.plan import resources, stacks

    for stack in stacks():
        declared = resources(stack)
        found = [(r.name, v) for r in declared for v in violations(r.type, r.inputs, r.protect)]
        found += stack_violations([Resource(r.type, r.name, r.inputs, r.protect) for r in declared])
        assert found == [], stack


def test_a_public_option_is_caught_by_the_pack():
    from components.chain import build_chain
    from components.mocks import run_program
    from components.spec import load_spec
    from tests.components.configs import aws_config

    rec, _ = run_program(lambda: build_chain(load_spec(aws_config(serve={"public": True}))))
    found = [v for r in rec.resources for v in violations(r.type, r.inputs, r.protect)]
    assert [name for name, _ in found] == ["aws-lambda-url-auth"]
