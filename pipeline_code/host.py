"""The host contract: what the infrastructure tells the code, written once.

The Pulumi components (``components/``) set environment variables, job
arguments and metric names; the code (``pipeline_code/``) reads them. Both
import this module, so neither side spells a name the other does not know.
It imports nothing but the standard library: a component can import it
without Beam, Spark or a cloud SDK.

- environment variable names (``ENV_*``);
- the model endpoint grammar, ``MODEL_ENDPOINT``: builders per platform and
  ``parse_endpoint``;
- the collector's sink grammar, ``COLLECTOR_SINK``: ``sink`` and ``parse_sink``;
- the online user-state store's grammar, ``USER_STATE``: ``user_state`` and
  ``parse_user_state`` (also the chain's ``user_state_location`` output);
- the processing settings (``ProcessingSettings``, the one source of their
  defaults) and the job arguments every engine's job is started with
  (``job_arguments``; ``add_arguments`` / ``from_arguments`` read them back);
- what a cloud batch job replays (``ReplayRequest``: an archive range or the
  stored dead letters), as the arguments every engine's batch job takes
  (``add_replay_arguments`` / ``replay_from_arguments``);
- metric namespaces and names the jobs publish and the monitoring links watch.

    python -m pipeline_code.host   # prints the job arguments of the defaults
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass, fields
from typing import Literal

# --- environment variables -------------------------------------------------

ENV_MODEL_ENDPOINT = "MODEL_ENDPOINT"
"""Where the API finds the model: ``parse_endpoint``'s grammar."""
ENV_COLLECTOR_SINK = "COLLECTOR_SINK"
"""Where the collector publishes: ``parse_sink``'s grammar."""
ENV_WRITE_KEYS = "DATAFLOW_WRITE_KEYS"
"""The collector's write keys, comma-separated (GCP and Azure: from the platform's secret store)."""
ENV_WRITE_KEYS_SECRET = "DATAFLOW_WRITE_KEYS_SECRET"
"""AWS: the Secrets Manager secret holding the write keys (Lambda has no secret references)."""
ENV_ALLOWED_ORIGINS = "COLLECTOR_ALLOWED_ORIGINS"
"""Origins (``scheme://host[:port]``, comma-separated) browsers may send from; unset or empty: any."""
ENV_COLLECTOR_OPEN = "COLLECTOR_OPEN"
"""``1``: a private local collector that takes any write key."""
ENV_SPILL_DIR = "COLLECTOR_SPILL_DIR"
ENV_SPILL_MB = "COLLECTOR_SPILL_MB"
"""The collector's local spill for broker outages; ``0`` on serverless hosts (no disk that lasts)."""
ENV_APP = "DATAFLOW_APP"
"""Azure Functions: which app the one image serves, ``api`` (default), ``collector`` or ``fresh``."""
ENV_LOG_LEVEL = "DATAFLOW_LOG_LEVEL"
ENV_USER_STATE = "USER_STATE"
"""The online store of users' recent activity: ``parse_user_state``'s grammar."""
ENV_USER_STATE_TTL_DAYS = "USER_STATE_TTL_DAYS"
"""Days a user's state outlives their last event (the store's TTL)."""
ENV_USER_STATE_TIMEOUT_MS = "USER_STATE_TIMEOUT_MS"
"""The API's budget for its one read per request; past it, it answers without fresh items."""
EVENTHUB_CONNECTION = "EVENTHUB"
"""Azure: the fast path's Event Hubs trigger connection; the namespace is
``EVENTHUB__fullyQualifiedNamespace`` (identity, no connection string)."""
ENV_EVENTHUB_NAME = "EVENTHUB_NAME"
ENV_EVENTHUB_CONSUMER_GROUP = "EVENTHUB_CONSUMER_GROUP"

# --- MODEL_ENDPOINT --------------------------------------------------------

EndpointKind = Literal["http", "vertex", "sagemaker", "azureml"]


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``MODEL_ENDPOINT``: its platform, target and (Azure ML) deployment."""

    kind: EndpointKind
    target: str
    deployment: str | None = None


def vertex_endpoint(endpoint_id: str) -> str:
    """``vertex:projects/P/locations/L/endpoints/ID`` (the endpoint resource's id)."""
    return f"vertex:{endpoint_id}"


def sagemaker_endpoint(name: str) -> str:
    """``sagemaker:<endpoint name>``."""
    return f"sagemaker:{name}"


def azureml_endpoint(scoring_uri: str, deployment: str | None = None) -> str:
    """``azureml:<scoring uri>``, or ``azureml:<scoring uri>#<deployment>`` to pin a
    deployment by a header (a test of one; the chain follows the endpoint's traffic)."""
    return f"azureml:{scoring_uri}#{deployment}" if deployment else f"azureml:{scoring_uri}"


def parse_endpoint(value: str | None) -> Endpoint:
    """``MODEL_ENDPOINT`` -> ``Endpoint``; ``ValueError`` names the variable and the value."""
    if not value:
        raise ValueError(
            f"{ENV_MODEL_ENDPOINT} is not set (got {value!r}); set http(s)://..., vertex:projects/..., "
            "sagemaker:NAME or azureml:URI#DEPLOYMENT"
        )
    if value.startswith(("http://", "https://")):
        return Endpoint("http", value)
    kind, _, target = value.partition(":")
    if kind in ("vertex", "sagemaker") and target:
        return Endpoint(kind, target)  # type: ignore[arg-type]
    if kind == "azureml" and target:
        uri, _, deployment = target.partition("#")
        return Endpoint("azureml", uri, deployment or None)
    raise ValueError(
        f"{ENV_MODEL_ENDPOINT} {value!r} must start with http://, https://, vertex:, sagemaker: or azureml:"
    )


# --- COLLECTOR_SINK --------------------------------------------------------

SinkKind = Literal["eventlog", "pubsub", "kinesis", "eventhubs"]
SINK_KINDS: tuple[str, ...] = ("eventlog", "pubsub", "kinesis", "eventhubs")


def sink(kind: SinkKind, target: str) -> str:
    """``KIND:TARGET``: ``eventlog:<dir>``, ``pubsub:projects/P/topics/T``,
    ``kinesis:<stream name>``, ``eventhubs:<namespace host>/<hub>``."""
    if kind not in SINK_KINDS:
        raise ValueError(f"sink kind {kind!r} must be one of {', '.join(SINK_KINDS)}")
    return f"{kind}:{target}"


def parse_sink(value: str) -> tuple[SinkKind, str]:
    """``COLLECTOR_SINK`` -> (kind, target); ``ValueError`` names the variable and the value."""
    kind, _, target = value.partition(":")
    if not target:
        raise ValueError(
            f"{ENV_COLLECTOR_SINK} {value!r} must be KIND:TARGET (eventlog:, pubsub:, kinesis:, eventhubs:)"
        )
    if kind not in SINK_KINDS:
        raise ValueError(f"{ENV_COLLECTOR_SINK} kind {kind!r} must be eventlog, pubsub, kinesis or eventhubs")
    if kind == "eventhubs":
        eventhubs_target(target)
    return kind, target  # type: ignore[return-value]


def eventhubs_target(target: str) -> tuple[str, str]:
    """``<namespace host>/<hub>`` -> (host, hub)."""
    namespace, _, hub = target.partition("/")
    if not namespace or not hub:
        raise ValueError(f"{ENV_COLLECTOR_SINK} eventhubs:{target!r} must be eventhubs:NAMESPACE_HOST/HUB")
    return namespace, hub


# --- USER_STATE -------------------------------------------------------------

StateKind = Literal["sqlite", "dynamodb", "firestore", "tables"]
STATE_KINDS: tuple[str, ...] = ("sqlite", "dynamodb", "firestore", "tables")


def user_state(kind: StateKind, target: str) -> str:
    """``KIND:TARGET``: ``sqlite:<file>`` (local), ``dynamodb:<table name>``,
    ``firestore:projects/P/databases/D/<collection>``,
    ``tables:https://<account>.table.core.windows.net/<table>``."""
    if kind not in STATE_KINDS:
        raise ValueError(f"user-state kind {kind!r} must be one of {', '.join(STATE_KINDS)}")
    return f"{kind}:{target}"


def parse_user_state(value: str | None) -> tuple[StateKind, str]:
    """``USER_STATE`` -> (kind, target); ``ValueError`` names the variable and the value."""
    kind, _, target = (value or "").partition(":")
    if kind not in STATE_KINDS or not target:
        raise ValueError(
            f"{ENV_USER_STATE} {value!r} must be sqlite:FILE, dynamodb:TABLE, "
            "firestore:projects/P/databases/D/COLLECTION or tables:https://ACCOUNT.table.../TABLE"
        )
    if kind == "firestore":
        firestore_target(target)
    if kind == "tables":
        tables_target(target)
    return kind, target  # type: ignore[return-value]


def firestore_target(target: str) -> tuple[str, str, str]:
    """``projects/P/databases/D/COLLECTION`` -> (project, database, collection)."""
    parts = target.split("/")
    if len(parts) != 5 or parts[0] != "projects" or parts[2] != "databases" or not all(parts):
        raise ValueError(
            f"{ENV_USER_STATE} firestore:{target!r} must be firestore:projects/P/databases/D/COLLECTION"
        )
    return parts[1], parts[3], parts[4]


def tables_target(target: str) -> tuple[str, str]:
    """``https://ACCOUNT.table.../TABLE`` (or ``http://`` for a local
    stand-in) -> (endpoint, table)."""
    endpoint, _, table = target.rstrip("/").rpartition("/")
    if not endpoint.startswith(("https://", "http://")) or not table.isalnum():
        raise ValueError(
            f"{ENV_USER_STATE} tables:{target!r} must be tables:https://ACCOUNT.table.core.windows.net/TABLE"
        )
    return endpoint, table


# --- processing settings and job arguments ---------------------------------


@dataclass(frozen=True)
class ProcessingSettings:
    """What every engine's processing shares, with the one set of defaults.

    The cloud spec (``components.spec.ProcessingSpec``) takes its defaults
    from here, the jobs read them back from ``job_arguments``, and the local
    chain uses them as they are.
    """

    shards: int = 32
    """User shards: one warehouse lookup per shard and micro-batch."""
    window_minutes: int = 60
    """Item-popularity window (event time)."""
    allowed_lateness_minutes: int = 24 * 60
    """How late an event may arrive and still update its popularity window."""
    session_gap_minutes: int = 30
    """Inactivity that ends a session the tracker did not name."""
    batch_seconds: int = 10
    """Micro-batch length in arrival time (streaming jobs)."""

    def __post_init__(self) -> None:
        for name in ("shards", "window_minutes", "session_gap_minutes", "batch_seconds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.allowed_lateness_minutes < 0:
            raise ValueError(f"allowed_lateness_minutes must be >= 0, got {self.allowed_lateness_minutes}")

    @property
    def window_us(self) -> int:
        return self.window_minutes * 60_000_000

    @property
    def allowed_lateness_us(self) -> int:
        return self.allowed_lateness_minutes * 60_000_000

    @property
    def session_gap_us(self) -> int:
        return self.session_gap_minutes * 60_000_000


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProcessingSettings))


def job_arguments(settings: ProcessingSettings) -> dict[str, str]:
    """The settings as a job's ``--name value`` arguments (Glue's default
    arguments, the Synapse job's args; Dataflow's template parameters take
    the same names without the dashes)."""
    return {f"--{name}": str(getattr(settings, name)) for name in SETTING_NAMES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings as flags of a job's parser (argparse, or Beam's
    ``PipelineOptions`` parser, which is one), defaults from ``ProcessingSettings``."""
    defaults = ProcessingSettings()
    for f in fields(ProcessingSettings):
        parser.add_argument(
            f"--{f.name}",
            type=int,
            default=getattr(defaults, f.name),
            help=f"{_doc(f.name)} (default {getattr(defaults, f.name)})",
        )


def from_arguments(args: object) -> ProcessingSettings:
    """Parsed flags -> settings (``ValueError`` names a bad one)."""
    return ProcessingSettings(**{name: getattr(args, name) for name in SETTING_NAMES})


def _doc(name: str) -> str:
    return {
        "shards": "hash shards for keyed work",
        "window_minutes": "item-popularity window, minutes of event time",
        "allowed_lateness_minutes": "how late an event may still update its window, minutes",
        "session_gap_minutes": "inactivity that ends a session, minutes",
        "batch_seconds": "micro-batch length in arrival time, seconds",
    }[name]


# --- replays ---------------------------------------------------------------

REPLAY_MODES = ("archive", "dead_letters")
REPLAY_FLAGS = ("replay", "replay_from", "replay_to", "replay_stage", "replay_since")
"""A batch job's replay arguments (``--name value``; Dataflow's template parameters and
Data Factory's pipeline parameters take the same names)."""


@dataclass(frozen=True)
class ReplayRequest:
    """What a batch job replays (times in microseconds, UTC).

    ``archive``: the records that arrived in ``[start_us, end_us)``;
    ``dead_letters``: the stored dead letters (of ``stage``, dead-lettered
    since ``since_us``), re-run through the current code.
    """

    mode: str
    start_us: int | None = None
    end_us: int | None = None
    stage: str | None = None
    since_us: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in REPLAY_MODES:
            raise ValueError(f"--replay must be one of {', '.join(REPLAY_MODES)}, got {self.mode!r}")
        if self.mode == "archive":
            if self.start_us is None or self.end_us is None:
                raise ValueError("--replay archive needs --replay_from and --replay_to")
            if self.end_us <= self.start_us:
                raise ValueError(
                    f"--replay_to {_iso(self.end_us)} must be after --replay_from {_iso(self.start_us)}"
                )
        elif self.start_us is not None or self.end_us is not None:
            raise ValueError("--replay dead_letters takes --replay_stage and --replay_since, not a range")

    def describe(self) -> str:
        if self.mode == "archive":
            return f"archive {_iso(self.start_us)}..{_iso(self.end_us)}"  # type: ignore[arg-type]
        since = _iso(self.since_us) if self.since_us is not None else "any"
        return f"dead_letters stage={self.stage or 'any'} since={since}"


def _iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).isoformat()


def parse_time_us(flag: str, value: str | None) -> int | None:
    """A date or ISO 8601 time (UTC unless it names an offset) -> microseconds;
    ``ValueError`` names the flag and the value."""
    if value is None or value == "":
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{flag} must be a date or time like 2026-10-01 or 2026-10-01T12:00:00Z, got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """A batch job's replay flags (argparse, or Beam's options parser)."""
    helps = {
        "replay": "archive or dead_letters",
        "replay_from": "archive: first arrival time (inclusive)",
        "replay_to": "archive: end of the arrival range (exclusive)",
        "replay_stage": "dead_letters: only this failed stage",
        "replay_since": "dead_letters: dead-lettered at or after",
    }
    for name in REPLAY_FLAGS:
        parser.add_argument(f"--{name}", default=None, help=helps[name])


def replay_from_arguments(args: object) -> ReplayRequest:
    """Parsed replay flags -> the request (``ValueError`` names a bad flag)."""
    mode = getattr(args, "replay", None)
    if not mode:
        raise ValueError(f"--replay must be one of {', '.join(REPLAY_MODES)}, got {mode!r}")
    return ReplayRequest(
        mode,
        parse_time_us("--replay_from", getattr(args, "replay_from", None)),
        parse_time_us("--replay_to", getattr(args, "replay_to", None)),
        getattr(args, "replay_stage", None) or None,
        parse_time_us("--replay_since", getattr(args, "replay_since", None)),
    )


# --- metrics ---------------------------------------------------------------

BEAM_METRICS_NAMESPACE = "dataflow"
"""Beam counters' namespace (Dataflow shows them as ``job/user_counter``)."""
BEAM_COUNTERS = ("events_read", "events_stored", "duplicates_skipped", "dead_lettered")
CLOUDWATCH_NAMESPACE = "DataFlow"
"""CloudWatch namespace of the Glue job's own metrics (dimension ``Job``)."""
BATCH_METRICS = ("EventsRead", "EventsStored", "DuplicatesSkipped", "DeadLettered")
"""Per micro-batch counts the Spark jobs publish (CloudWatch, Application Insights)."""
SPILLED_BATCHES = "SpilledBatches"
"""One per micro-batch that could not be committed and was written raw to the dead letters."""


if __name__ == "__main__":
    print(" ".join(f"{k} {v}" for k, v in job_arguments(ProcessingSettings()).items()))


def metrics_envelope(connection_string: str, job: str, counts: dict[str, float], at: str) -> tuple[str, list]:
    """One micro-batch's counts as Application Insights metric telemetry:
    ``(track URL, envelopes)`` for the ingestion endpoint's ``/v2/track``."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    if "InstrumentationKey" not in parts:
        raise ValueError("the Application Insights connection string has no InstrumentationKey")
    ikey = parts["InstrumentationKey"]
    endpoint = parts.get("IngestionEndpoint", "https://dc.services.visualstudio.com/").rstrip("/")
    envelope = {
        "name": f"Microsoft.ApplicationInsights.{ikey.replace('-', '')}.Metric",
        "time": at,
        "iKey": ikey,
        "data": {
            "baseType": "MetricData",
            "baseData": {
                "ver": 2,
                "metrics": [
                    {"name": name, "value": float(v), "count": 1} for name, v in sorted(counts.items())
                ],
                "properties": {"Job": job},
            },
        },
    }
    return f"{endpoint}/v2/track", [envelope]


def post_metrics(connection_string: str, job: str, counts: dict[str, float]) -> None:
    """Send ``counts`` to Application Insights' ingestion endpoint (Azure's jobs:
    the Synapse stream, the training job); Monitoring alerts on them."""
    import datetime as dt
    import json
    import urllib.request

    at = dt.datetime.now(dt.UTC).isoformat()
    url, body = metrics_envelope(connection_string, job, counts, at)
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
