"""Prometheus metrics for the servers, one registry per app.

Scraped from ``GET /metrics`` in the text exposition format. Names follow
Prometheus conventions (``_total`` counters, ``_seconds`` histograms), and
route labels are the route *names*, never raw paths, so a scan of random
URLs cannot blow up the label cardinality.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The `_created` series double the exposition and no dashboard here uses them.
disable_created_metrics()

# Sub-millisecond buckets: the model server answers in well under 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """Requests, latency, errors and the loaded model, for one server."""

    def __init__(self, prefix: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{prefix}_requests_total",
            "HTTP requests answered, by route and status code.",
            ("route", "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from request to response, by route.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            f"{prefix}_errors_total",
            "Requests that failed, by route and kind (client: 4xx, server: 5xx, upstream).",
            ("route", "kind"),
            registry=self.registry,
        )
        self.predictions = Counter(
            f"{prefix}_predictions_total",
            "Recommendation lists returned, by strategy (personalised or popularity).",
            ("strategy",),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "dataflow_served_model_info",
            "1 for the model version being served.",
            ("version",),
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "dataflow_served_model_loaded", "1 once the model is loaded and serving.", registry=self.registry
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, code: int, seconds: float) -> None:
        """Count one answered request (children are cached: labels() is slow)."""
        child = self._children.get((route, code))
        if child is None:
            child = self._children[(route, code)] = (
                self.requests.labels(route, str(code)),
                self.latency.labels(route),
            )
        child[0].inc()
        child[1].observe(seconds)
        if code >= 400:
            self.errors.labels(route, "client" if code < 500 else "server").inc()

    def set_model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version).set(1)
        self.model_loaded.set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
