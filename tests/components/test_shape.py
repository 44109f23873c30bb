"""The same public shape on every cloud: names, grant verbs, alert targets, outputs.

The verb table is the README's ("Architecture"): a link added on one cloud
with a verb the others lack fails here until all three have it.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from components.outputs import OUTPUTS, ChainOutputs

CLOUDS = ("gcp", "aws", "azure")

VERBS = {
    "Ingest": {"grant_publish", "grant_consume", "grant_read_dead_letters"},
    "Warehouse": {"grant_read", "grant_write", "grant_record_models"},
    "Model": {"grant_invoke"},
    "Serve": {"grant_invoke"},
    "UserState": {"grant_read", "grant_write"},
    "FastPath": set(),
    "Archive": {"grant_read"},
    "Training": {"grant_read"},
}

# What each link offers Monitoring, per cloud.
WATCHED = {"Ingest", "Processing", "Model", "FastPath", "UserState", "Archive", "Training"}
# Where Monitoring sends what it gathers is not a watched resource.
DESTINATIONS = {"log_workspace_id"}


def package(cloud: str):
    pytest.importorskip(f"pulumi_{'azure_native' if cloud == 'azure' else cloud}")
    return importlib.import_module(f"components.{cloud}")


def test_every_cloud_exports_the_same_names():
    exported = {cloud: set(package(cloud).__all__) for cloud in CLOUDS}
    assert exported["gcp"] == exported["aws"] == exported["azure"]
    for cloud in CLOUDS:
        assert all(inspect.isclass(getattr(package(cloud), n)) for n in exported[cloud])


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("link", sorted(VERBS))
def test_every_link_has_the_verbs_of_the_table(cloud, link):
    cls = getattr(package(cloud), link)
    verbs = {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if n.startswith("grant_")}
    assert VERBS[link] <= verbs, f"{cloud} {link} lacks {sorted(VERBS[link] - verbs)}"
    assert verbs <= VERBS[link], f"{cloud} {link} has verbs outside the table: {sorted(verbs - VERBS[link])}"
    for verb in verbs:
        params = list(inspect.signature(getattr(cls, verb)).parameters)
        assert params[:2] == ["self", "grantee"] and len(params) == 3, f"{cloud} {link}.{verb}{params}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_monitoring_takes_links_not_resource_names(cloud):
    params = inspect.signature(package(cloud).Monitoring.__init__).parameters
    for link in WATCHED:
        param = re.sub(r"(?<!^)([A-Z])", r"_\1", link).lower()  # FastPath -> fast_path
        assert params[param].annotation in (link, getattr(package(cloud), link))
    for name in set(params) - DESTINATIONS:
        assert not name.endswith(("_name", "_id")), f"{cloud} Monitoring still takes {name}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_chain_returns_the_typed_outputs(cloud):
    chain = package(cloud).Chain
    assert inspect.signature(chain.outputs).return_annotation in ("ChainOutputs", ChainOutputs)
    assert [f for f in ChainOutputs.__dataclass_fields__] == list(OUTPUTS)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_link_documents_each_parameter(cloud):
    """As CDK documents props: each constructor parameter has a line under
    ``Args:`` in the class docstring, defaults said where there are any."""
    for name in package(cloud).__all__:
        cls = getattr(package(cloud), name)
        doc = inspect.getdoc(cls) or ""
        assert "Args:" in doc, f"{cloud}.{name} has no Args section"
        documented = {
            line.split(":", 1)[0].strip()
            for line in doc.split("Args:", 1)[1].splitlines()
            if line.startswith("    ") and not line.startswith("        ") and ":" in line
        }
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert {p.name for p in params} == documented, f"{cloud}.{name}"
        for p in params:
            if p.default is not inspect.Parameter.empty and p.name != "opts":
                # The parameter's entry: its line and the deeper-indented lines under it.
                entry = re.search(rf"^    {p.name}:.*(?:\n        .*)*", doc, re.M)
                assert entry and "Default" in entry.group(0), f"{cloud}.{name}({p.name}): no default said"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_collector_gets_the_allowed_origins_when_some_are_set(cloud):
    from components.chain import build_chain
    from components.mocks import run_program
    from components.spec import load_spec
    from tests.components import configs

    config = getattr(configs, f"{cloud}_config")(collector={"allowed_origins": ["https://shop.example"]})
    package(cloud)
    rec, _ = run_program(lambda: build_chain(load_spec(config)))
    text = repr([r.inputs for r in rec.resources if "collector" in r.name])
    assert "COLLECTOR_ALLOWED_ORIGINS" in text and "https://shop.example" in text
