"""The Grafana dashboards: what Grafana's own model reads back, and queries
that name only metrics the servers really expose."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from pipeline_code.collector.app import Collector
from pipeline_code.serving.api import HttpEndpoint, RecommendationApi
from pipeline_code.serving.model_server import ModelServer
from pipeline_code.streams.publish import EventLogPublisher
from pipeline_code.web import dashboards

METRIC = re.compile(r"\b(dataflow_[a-z_]+)\b")


def committed(key: str) -> dict:
    return json.loads((dashboards.OUT / f"{key}.json").read_text())


@pytest.mark.parametrize("key", sorted(dashboards.DASHBOARDS))
def test_the_committed_dashboard_is_generated(key):
    assert (dashboards.OUT / f"{key}.json").read_text() == dashboards.dashboard_text(key), (
        "regenerate: python -m pipeline_code.web.dashboards"
    )


@pytest.mark.parametrize("key", sorted(dashboards.DASHBOARDS))
def test_grafanas_dashboard_model_reads_every_panel_and_query_back(key):
    register_default_plugins()  # so Prometheus queries load as Prometheus queries
    data = committed(key)
    model = Dashboard.from_json(data)
    assert model.uid == f"dataflow-{key}" and model.title == data["title"]
    read_back = [[t.expr for t in panel.targets] for panel in model.panels]
    assert read_back == [[t["expr"] for t in p["targets"]] for p in data["panels"]]
    assert {v.name for v in model.templating.list_val} == {"datasource", "job"}


def exposition(app, path: str = "/metrics") -> str:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            await client.get("/no-such-route")  # one request, so labelled series exist
            return (await client.get(path)).text

    return asyncio.run(go())


def families(text: str) -> set[str]:
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    histograms = {n for n in names if f"# TYPE {n} histogram" in text}
    return names | {f"{n}_bucket" for n in histograms}


@pytest.fixture
def exposed(tmp_path) -> dict[str, set[str]]:
    never = asyncio.Event()
    return {
        "collector": families(exposition(Collector(EventLogPublisher(tmp_path / "log"), {"k"}))),
        "api": families(exposition(RecommendationApi(HttpEndpoint("http://127.0.0.1:9")))),
        "model-server": families(exposition(ModelServer(lambda: never))),  # not loaded: still exposed
    }


@pytest.mark.parametrize("key", sorted(dashboards.DASHBOARDS))
def test_every_query_names_a_metric_its_server_exposes(key, exposed):
    queried = {
        m for panel in committed(key)["panels"] for t in panel["targets"] for m in METRIC.findall(t["expr"])
    }
    assert queried and queried <= exposed[key], queried - exposed[key]
    # and every series of the server is on its dashboard, but the bare histogram parts
    shown = {m.removesuffix("_bucket") for m in queried}
    assert {m for m in exposed[key] if not m.endswith("_bucket")} - shown <= {
        "dataflow_served_model_info"
    } or key != "model-server"
