"""Grafana dashboards for the metrics the collector, API and model server
expose on ``GET /metrics``: one dashboard per server, committed as JSON in
``pipeline_code/web/grafana/`` for users who run Prometheus and Grafana.

They are built with Grafana's own SDK (``grafana-foundation-sdk``, a dev
dependency), so every field is one Grafana's dashboard model knows; the tests
load them back with it and check that every query names a metric the server
really exposes. Regenerate after changing the metrics or the panels::

    python -m pipeline_code.web.dashboards

Each dashboard has a ``datasource`` variable (your Prometheus) and a ``job``
variable (the scrape job that reaches the server).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("grafana")
RATE = "[$__rate_interval]"


def _server(prefix: str) -> list[tuple[str, str, str, str]]:
    """(title, unit, legend, PromQL) for what every server exposes (``ServerMetrics``)."""
    sel = '{job=~"$job"}'
    return [
        ("Requests per second, by route and code", "reqps", "{{route}} {{code}}",
         f"sum by (route, code) (rate({prefix}_requests_total{sel}{RATE}))"),
        ("Latency p50 / p99", "s", "p{{quantile}}",
         "histogram_quantile(0.99, sum by (le) "
         f"(rate({prefix}_request_duration_seconds_bucket{sel}{RATE})))"),
        ("Errors per second, by kind", "reqps", "{{route}} {{kind}}",
         f"sum by (route, kind) (rate({prefix}_errors_total{sel}{RATE}))"),
    ]  # fmt: skip


DASHBOARDS: dict[str, tuple[str, str, list[tuple[str, str, str, str]]]] = {
    "collector": (
        "Data-Flow collector",
        "dataflow_collector",
        [
            ("Events accepted per second, by kind", "ops", "{{kind}}",
             'sum by (kind) (rate(dataflow_collector_events_total{job=~"$job"}' + RATE + "))"),
            ("Requests refused per second, by reason", "reqps", "{{reason}}",
             'sum by (reason) (rate(dataflow_collector_rejected_requests_total{job=~"$job"}' + RATE + "))"),
        ],
    ),
    "api": ("Data-Flow recommendation API", "dataflow_api", []),
    "model-server": (
        "Data-Flow model server",
        "dataflow_model",
        [
            ("Recommendations per second, by strategy", "ops", "{{strategy}}",
             'sum by (strategy) (rate(dataflow_model_predictions_total{job=~"$job"}' + RATE + "))"),
            ("Model loaded", "none", "{{instance}}", 'dataflow_served_model_loaded{job=~"$job"}'),
            ("Model version served", "none", "{{version}}", 'dataflow_served_model_info{job=~"$job"} == 1'),
        ],
    ),
}  # fmt: skip


def dashboard(key: str) -> dict:
    """One dashboard as Grafana's JSON model."""
    from grafana_foundation_sdk.builders import common, prometheus, timeseries
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    title, prefix, own = DASHBOARDS[key]
    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        db.Dashboard(title)
        .uid(f"dataflow-{key}")
        .tags(["data-flow"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            db.QueryVariable("job")
            .label("Job")
            .datasource(source)
            .query(f"label_values({prefix}_requests_total, job)")
            .include_all(True)
            .multi(True)
        )
    )
    for title_, unit, legend, expr in [*_server(prefix), *own]:
        queries = [prometheus.Dataquery().expr(expr).legend_format(legend).ref_id("A")]
        if title_ == "Latency p50 / p99":
            queries = [
                prometheus.Dataquery()
                .expr(expr.replace("0.99", q))
                .legend_format(f"p{int(float(q) * 100)}")
                .ref_id(ref)
                for q, ref in (("0.5", "A"), ("0.99", "B"))
            ]
        panel = (
            timeseries.Panel()
            .title(title_)
            .unit(unit)
            .datasource(source)
            .height(8)
            .span(12)
            # Explicit options: Grafana's own model cannot read a timeseries panel's null ones back.
            .legend(common.VizLegendOptions().display_mode("list").placement("bottom").show_legend(True))
            .tooltip(common.VizTooltipOptions().mode("multi").sort("desc"))
        )
        for query in queries:
            panel = panel.with_target(query)
        board = board.with_panel(panel)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder, sort_keys=True))


def dashboard_text(key: str) -> str:
    return json.dumps(dashboard(key), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for key in DASHBOARDS:
        (OUT / f"{key}.json").write_text(dashboard_text(key))
        print(f"wrote grafana/{key}.json")


if __name__ == "__main__":
    main()
