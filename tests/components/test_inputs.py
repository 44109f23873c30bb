"""Every input every stack records is one the provider SDK declares.

The offline engine accepts any key; the provider does not (it drops or
refuses what its schema lacks), so a misplaced key passes every mock test
and fails, or silently does nothing, in ``pulumi up``. This walks each
recorded input of each committed stack against the SDK's own input types
(``<Resource>Args`` and the nested ``...Args`` classes, by their Pulumi
names), through lists, maps and the unions the SDKs declare.
"""

from __future__ import annotations

import importlib
import keyword
import re
import typing
from collections import abc
from typing import Any

import pytest
from pulumi import _types

from components import plan

# Types the offline plan records that no provider SDK declares.
NOT_PROVIDER = ("data-flow:", "pulumi-python:dynamic:", "pulumi:")
SDK = {
    "gcp": "pulumi_gcp",
    "aws": "pulumi_aws",
    "azure-native": "pulumi_azure_native",
    "azuread": "pulumi_azuread",
}


def args_class(token: str) -> type:
    """``aws:glue/job:Job`` -> ``pulumi_aws.glue.JobArgs``; ``azure-native:web:WebApp`` ->
    ``pulumi_azure_native.web.WebAppArgs``; ``azuread:index/x:X`` -> ``pulumi_azuread.XArgs``."""
    provider, module, name = token.split(":")
    module = module.split("/")[0]
    if keyword.iskeyword(module):
        module += "_"  # pulumi_aws.lambda_
    package = importlib.import_module(SDK[provider] if module == "index" else f"{SDK[provider]}.{module}")
    # When a nested type has the name, the resource's own is ``<Name>InitArgs`` (azure-native).
    return getattr(package, f"{name}InitArgs", None) or getattr(package, f"{name}Args")


def _alternatives(typ: Any) -> list[Any]:
    typ = _types.unwrap_type(typ)
    if typing.get_origin(typ) is typing.Union or type(typ).__name__ == "UnionType":
        return [t for arg in typing.get_args(typ) for t in _alternatives(arg) if t is not type(None)]
    return [typ]


def problems(value: Any, typ: Any, path: str) -> list[str]:
    """What in ``value`` the declared ``typ`` has no place for."""
    found: list[list[str]] = []
    for alt in _alternatives(typ):
        origin = typing.get_origin(alt)
        if _types.is_input_type(alt):
            if not isinstance(value, dict):
                continue
            by_pulumi = _types.input_type_types(alt)  # Pulumi (wire) names -> declared types
            out = [f"{path}.{k}" for k in value if k not in by_pulumi]
            for k, v in value.items():
                if k in by_pulumi:
                    out += problems(v, by_pulumi[k], f"{path}.{k}")
            found.append(out)
        elif origin in (list, abc.Sequence, typing.Sequence) and isinstance(value, list):
            (item,) = typing.get_args(alt) or (Any,)
            found.append([p for i, v in enumerate(value) for p in problems(v, item, f"{path}[{i}]")])
        elif origin in (dict, abc.Mapping, typing.Mapping) and isinstance(value, dict):
            args = typing.get_args(alt)
            item = args[1] if len(args) == 2 else Any
            found.append([p for k, v in value.items() for p in problems(v, item, f"{path}.{k}")])
        else:
            return []  # a scalar, Any, or a type this walk does not open: nothing to hold against it
    # A union fits when any of its alternatives fits.
    return min(found, key=len) if found else []


def resource_problems(token: str, inputs: dict[str, Any]) -> list[str]:
    return problems(inputs, args_class(token), token.rsplit(":", 1)[1])


@pytest.mark.parametrize("stack", plan.stacks())
def test_every_recorded_input_is_declared_by_the_providers_sdk(stack):
    pytest.importorskip("pulumi_azure_native")
    pytest.importorskip("pulumi_aws")
    pytest.importorskip("pulumi_gcp")
    found = {}
    for r in plan.resources(stack):
        if r.type.startswith(NOT_PROVIDER):
            continue
        wrong = resource_problems(r.type, r.inputs)
        if wrong:
            found[f"{r.type} {r.name}"] = wrong
    assert not found, found


def test_the_walk_finds_a_misplaced_key():
    """Capture's identity belongs in ``destination`` (pulumi-azure-native 3): one level up is caught."""
    pytest.importorskip("pulumi_azure_native")
    hub = {
        "namespaceName": "ns",
        "resourceGroupName": "rg",
        "captureDescription": {
            "enabled": True,
            "identity": {"type": "SystemAssigned"},
            "destination": {"name": "EventHubArchive.AzureBlockBlob", "blobContainer": "capture"},
        },
    }
    misplaced = ["EventHub.captureDescription.identity"]
    assert resource_problems("azure-native:eventhub:EventHub", hub) == misplaced
    hub["captureDescription"]["destination"]["identity"] = hub["captureDescription"].pop("identity")
    assert resource_problems("azure-native:eventhub:EventHub", hub) == []


def test_the_walk_finds_a_snake_case_key_and_a_typo():
    pytest.importorskip("pulumi_aws")
    job = {"name": "j", "roleArn": "r", "command": {"scriptLocation": "s3://b/k", "python_version": "3"}}
    assert resource_problems("aws:glue/job:Job", job) == ["Job.command.python_version"]
    assert re.fullmatch(r"Job\.comand", resource_problems("aws:glue/job:Job", {"comand": {}})[0])
