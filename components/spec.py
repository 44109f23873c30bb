"""The cloud-neutral description of one chain, read from Pulumi config.

Every cloud's components take the same ``ChainSpec``; only where a cloud
needs its own facts (a GCP project, an image in its registry) do they read a
cloud section (``GcpSettings``). The stack config uses the same keys on
every cloud::

    config:
      data-flow:cloud: gcp                  # gcp | aws | azure
      data-flow:environment: dev
      data-flow:labels: {team: data}
      data-flow:stream: {retention_hours: 168}
      data-flow:processing: {max_workers: 3}
      ...
      gcp:project: my-project               # the cloud's own namespace
      gcp:region: europe-west1
      data-flow:gcp: {pipeline_image: ...}  # what only GCP needs

``load_spec`` validates everything before a single resource is declared: an
unknown key, a wrong type or a value out of range raises ``SpecError``
naming the key and the value received. It needs no Pulumi engine, so
``python -m components.spec stacks/Pulumi.gcp-dev.yaml`` checks a stack file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from pipeline_code.host import ProcessingSettings

PROJECT = "data-flow"
Cloud = Literal["gcp", "aws", "azure"]
Size = Literal["small", "medium", "large"]
DEFAULT_RETRAIN = "0 3 * * *"
_CRON = r"^(\d{1,2}) (\d{1,2}) ([\d*/,-]+) ([\d*/,-]+) ([\d*/,-]+)$"

_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_ENV = re.compile(r"[a-z][a-z0-9-]{0,15}")

Positive = Annotated[int, msgspec.Meta(ge=1)]
# The processing defaults have one source, shared with the jobs that read them.
_PROCESSING = ProcessingSettings()


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A config section: unknown keys are errors (a typo must not be ignored)."""


class StreamSpec(_Section):
    retention_hours: Annotated[int, msgspec.Meta(ge=24, le=7 * 24)] = 7 * 24
    """How long the stream keeps events a consumer has not read (Pub/Sub caps it at 7 days)."""
    throughput_mb_per_s: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    """Expected peak ingest; sizes Kinesis shards and Event Hubs throughput units."""
    ack_deadline_seconds: Annotated[int, msgspec.Meta(ge=10, le=600)] = 60
    """How long the pipeline has to process a delivery before it is redelivered."""
    enforce_schema: bool = True
    """Attach the event schema to the stream, so malformed events are refused at publish."""


class DeadLetterSpec(_Section):
    max_delivery_attempts: Annotated[int, msgspec.Meta(ge=5, le=100)] = 10
    """Deliveries of one message before the stream sets it aside (Pub/Sub allows 5-100)."""
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=7)] = 7
    """How long set-aside messages wait on the dead-letter stream."""
    table_retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = 400
    """Partitions of the dead-letter table older than this are dropped; null keeps them."""


class ProcessingSpec(_Section):
    batch_seconds: Annotated[int, msgspec.Meta(ge=1, le=300)] = _PROCESSING.batch_seconds
    """Micro-batch length: how long an event may wait before processing starts."""
    window_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = _PROCESSING.window_minutes
    """Item-popularity window (event time)."""
    allowed_lateness_minutes: Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 60)] = (
        _PROCESSING.allowed_lateness_minutes
    )
    """How late an event may arrive and still update its popularity window."""
    session_gap_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = _PROCESSING.session_gap_minutes
    """Inactivity that ends a session the tracker did not name."""
    shards: Annotated[int, msgspec.Meta(ge=1, le=1024)] = _PROCESSING.shards
    """User shards: one warehouse lookup per shard and micro-batch."""
    min_workers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    """Workers the job starts with and never scales below."""
    max_workers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    """Autoscaling ceiling: bounds the processing bill."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    """Retries of a micro-batch commit (Glue, Synapse) and of the Data Factory activity before giving up."""
    restart_minutes: Annotated[int, msgspec.Meta(ge=5, le=60)] = 10
    """How often the scheduler restarts a stopped streaming job (Glue trigger, Data Factory trigger)."""

    def settings(self) -> ProcessingSettings:
        """What the jobs run with (``pipeline_code.host.job_arguments`` passes it on)."""
        return ProcessingSettings(
            shards=self.shards,
            window_minutes=self.window_minutes,
            allowed_lateness_minutes=self.allowed_lateness_minutes,
            session_gap_minutes=self.session_gap_minutes,
            batch_seconds=self.batch_seconds,
        )


class WarehouseSpec(_Section):
    dataset: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")] = "dataflow"
    """Dataset (BigQuery), database (Redshift) or schema (Synapse) holding the tables."""
    partition_retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Drop partitions of event-date tables older than this; null keeps them all."""
    deletion_protection: bool = True
    """Refuse to delete the dataset and tables; set false only for throwaway stacks."""


class ModelSpec(_Section):
    size: Size = "small"
    """Serving machine size; each cloud maps it to an instance type."""
    min_replicas: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    max_replicas: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    private: bool = False
    """Serve the endpoint on a private network only (needs a network in the cloud section)."""
    retrain: Annotated[str, msgspec.Meta(pattern=_CRON)] | None = DEFAULT_RETRAIN
    """When the model retrains: a five-field cron in UTC (minute and hour numbers; the export of
    the training data runs 30 minutes before). Null: only on demand."""
    tolerance: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.02
    """Share of production's NDCG@10 a candidate may lose and still be promoted."""
    canary_percent: Annotated[int, msgspec.Meta(ge=1, le=99)] = 10
    """Share of traffic (SageMaker: capacity) a promoted version gets first."""
    bake_minutes: Annotated[int, msgspec.Meta(ge=1, le=180)] = 10
    """How long the canary runs before all traffic moves (and alarms can still roll back)."""
    training_size: Size = "small"
    """Training machine size; each cloud maps it to an instance type."""


class ServeSpec(_Section):
    min_instances: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    """Zero lets the API scale to nothing when idle (first request pays a cold start)."""
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    memory_mb: Annotated[int, msgspec.Meta(ge=128, le=32768)] = 512
    public: bool = False
    """Let anyone on the internet call the API. Off: callers need an identity allowed to invoke."""


class CollectorSpec(_Section):
    enabled: bool = True
    """Deploy the Segment-compatible collector as the ingest front door."""
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    memory_mb: Annotated[int, msgspec.Meta(ge=128, le=32768)] = 512
    allowed_origins: list[Annotated[str, msgspec.Meta(pattern=r"^https?://[^/\s,]+$")]] = []
    """Shop origins (``https://shop.example``) browsers may send from; empty: any (write keys check)."""


class ArchiveSpec(_Section):
    """The raw archive: every event as it arrived, for batch replays."""

    retention_days: Annotated[int, msgspec.Meta(ge=30)] | None = 400
    """Days the archive keeps raw events (None: forever). At least 30: a replay needs history."""
    flush_seconds: Annotated[int, msgspec.Meta(ge=60, le=600)] = 300
    """Longest wait before buffered events are written as a file (GCP, AWS; Capture writes each minute)."""
    flush_mb: Annotated[int, msgspec.Meta(ge=1, le=128)] = 64
    """Largest file before it is written (GCP, AWS)."""


class FastPathSpec(_Section):
    """The fast path: a stream function that keeps each user's recent activity
    in an online store the API reads (``pipeline_code.fastpath``)."""

    ttl_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    """Days a user's state outlives their last event; the store deletes it after."""
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    memory_mb: Annotated[int, msgspec.Meta(ge=128, le=32768)] = 512
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100
    """Events per function invocation where the platform batches (Kinesis, Event Hubs)."""
    batch_window_seconds: Annotated[int, msgspec.Meta(ge=0, le=300)] = 1
    """How long the platform may wait to fill a batch: freshness against invocations."""
    max_event_age_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600
    """Events older than this on the stream are no longer fresh: the function skips past them."""
    read_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 150
    """The API's budget for its one read per request; past it, it answers without fresh items."""


class AlertSpec(_Section):
    backlog_seconds: Annotated[int, msgspec.Meta(ge=30)] = 300
    """Alert when the oldest unprocessed event is older than this."""
    dead_letters_per_5min: Annotated[int, msgspec.Meta(ge=1)] = 10
    """Alert when more inputs than this are dead-lettered in five minutes."""
    processing_lag_seconds: Annotated[int, msgspec.Meta(ge=30)] = 120
    """Alert when the job's system lag exceeds this."""
    freshness_seconds: Annotated[int, msgspec.Meta(ge=30)] = 300
    """Alert when the job's output is staler than this."""
    error_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05
    """Alert when this share of model requests fail."""
    latency_p99_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    """Alert when the model's 99th-percentile latency exceeds this."""
    fast_path_lag_seconds: Annotated[int, msgspec.Meta(ge=10)] = 60
    """Alert when the fast path's oldest unapplied event is older than this."""
    fast_path_errors_per_5min: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Alert when the stream function fails more often than this in five minutes."""
    archive_delay_seconds: Annotated[int, msgspec.Meta(ge=300)] = 1800
    """Alert when an event has waited longer than this to reach the raw archive."""
    model_refusals_in_a_row: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Alert when the gate refuses this many candidates in a row (the data or the code drifted)."""
    model_max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 7
    """Alert when the model served was promoted longer ago than this."""
    email: str | None = None
    """Where alerts go. Without it, alerts only show in the console."""


class GcpSettings(_Section):
    """What only GCP needs (``data-flow:gcp``); project and region come from
    the provider's own ``gcp:project`` and ``gcp:region``."""

    project: str
    region: str
    pipeline_image: str
    """Flex Template launcher image with the pipeline (Artifact Registry)."""
    model_server_image: str
    """The one model-server image (``pipeline_code/serving/Dockerfile``)."""
    api_image: str
    """The recommendation API image (the same image, ``api`` entrypoint)."""
    training_image: str
    """The training job's image in Artifact Registry (``pipeline_code/ml/Dockerfile``)."""
    model_artifact_uri: str
    """``gs://`` folder holding a trained model version (``dataflow train`` output)."""
    subnetwork: str | None = None
    """Subnetwork for the job's private-IP workers; regional self link or ``regions/R/subnetworks/S``."""
    network: str | None = None
    """VPC network (``projects/NUMBER/global/networks/NAME``) for a private endpoint."""
    kms_key_name: str | None = None
    """Customer-managed key for the stream, bucket, dataset, job and endpoint."""
    machine_type: str = "n2-standard-2"
    """Dataflow worker machine type."""


KINESIS_CONNECTOR_JAR = (
    "https://awslabs-code-us-east-1.s3.amazonaws.com/spark-sql-kinesis-connector/"
    "spark-streaming-sql-kinesis-connector_2.12-1.0.0.jar"
)
"""The open-source Kinesis connector for Spark Structured Streaming (awslabs)."""


class AwsSettings(_Section):
    """What only AWS needs (``data-flow:aws``); the region comes from the
    provider's own ``aws:region``."""

    region: str
    vpc_id: str
    """The VPC the warehouse and the job's network interfaces live in."""
    subnet_ids: list[str]
    """Private subnets in at least three availability zones (Redshift Serverless needs three)."""
    model_server_image: str
    """The one model-server image in ECR (``pipeline_code/serving/Dockerfile``)."""
    api_image: str
    """The API as a Lambda image in ECR (serving Dockerfile; handler ``pipeline_code.serving.aws_lambda``)."""
    training_image: str
    """The training job's image in ECR (``pipeline_code/ml/Dockerfile``)."""
    model_artifact_uri: str
    """``s3://`` URI of a ``model.tar.gz`` holding a trained model version."""
    kinesis_shards: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None
    """Provisioned shards; null (default) is on-demand capacity."""
    kms_key_arn: str | None = None
    """A customer-managed key for every store; without it the chain creates one (with rotation)."""
    glue_worker_type: Literal["G.025X", "G.1X", "G.2X", "G.4X"] = "G.1X"
    redshift_base_rpus: Annotated[int, msgspec.Meta(ge=8, le=1024, multiple_of=8)] = 8
    """Redshift Serverless base capacity (RPUs, multiples of 8)."""
    kinesis_connector_jar_url: str = KINESIS_CONNECTOR_JAR
    """Downloaded by Pulumi at deploy time and copied into the chain's private bucket."""


class AzureSettings(_Section):
    """What only Azure needs (``data-flow:azure``); the location comes from
    the provider's own ``azure-native:location``."""

    location: str
    model_server_image: str
    """The one model-server image in ACR (``REGISTRY.azurecr.io/REPO:TAG``)."""
    api_image: str
    """The API's Functions image in ACR (``pipeline_code/serving/azure/Dockerfile``)."""
    training_image: str
    """The training job's image in ACR (``pipeline_code/ml/Dockerfile``)."""
    model_artifact_uri: str
    """``azureml://`` or ``https://ACCOUNT.blob.core.windows.net/...`` folder of a trained model version."""
    private_endpoint_subnet_id: str
    """Subnet for the private endpoints (the ML workspace; nothing is public by default)."""
    function_subnet_id: str
    """Subnet delegated to ``Microsoft.Web/serverFarms``: the API's way to the private endpoint."""
    sql_admin_object_id: str
    """Entra ID object id of the group that administers Synapse (AAD-only authentication)."""
    sql_admin_login: str = "data-flow-admins"
    """Display name of that group."""
    api_client_id: str | None = None
    """Entra ID app (client) id that callers get tokens for; required unless ``serve.public``."""
    eventhub_partitions: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    zone_redundant: bool = True
    spark_node_size: Literal["Small", "Medium", "Large"] = "Small"
    sql_pool_sku: Annotated[str, msgspec.Meta(pattern=r"^DW\d+c$")] = "DW100c"
    """Dedicated SQL pool size; pause it when idle to stop its bill."""
    cmk_key_url: str | None = None
    """Key Vault key URL (``https://VAULT.vault.azure.net/keys/NAME``) for Synapse, the lake, Event Hubs."""


class ChainSpec(_Section):
    cloud: Cloud
    environment: Annotated[str, msgspec.Meta(pattern=f"^{_ENV.pattern}$")] = "dev"
    labels: dict[str, str] = {}
    stream: StreamSpec = StreamSpec()
    dead_letters: DeadLetterSpec = DeadLetterSpec()
    processing: ProcessingSpec = ProcessingSpec()
    warehouse: WarehouseSpec = WarehouseSpec()
    model: ModelSpec = ModelSpec()
    serve: ServeSpec = ServeSpec()
    collector: CollectorSpec = CollectorSpec()
    fast_path: FastPathSpec = FastPathSpec()
    archive: ArchiveSpec = ArchiveSpec()
    alerts: AlertSpec = AlertSpec()
    gcp: GcpSettings | None = None
    aws: AwsSettings | None = None
    azure: AzureSettings | None = None

    def house_labels(self) -> dict[str, str]:
        """The stack's labels merged over the house ones, for every child."""
        return {"app": PROJECT, "environment": self.environment, "managed-by": "pulumi", **self.labels}


class SpecError(ValueError):
    """Invalid config; the message names the key and the value."""


def retrain_times(spec: ModelSpec) -> tuple[str, str] | None:
    """``model.retrain`` as two five-field crons (UTC): the export of the
    training data, 30 minutes before, and the training job. None: on demand."""
    if spec.retrain is None:
        return None
    minute, hour, *rest = spec.retrain.split()
    before = (int(hour) * 60 + int(minute) - 30) % (24 * 60)
    # An export on the day before cannot be said with a day-of-month or weekday field.
    if before > int(hour) * 60 + int(minute) and (rest[0] != "*" or rest[2] != "*"):
        raise SpecError(
            f"{PROJECT}:model.retrain {spec.retrain!r}: training before 00:30 on given days leaves "
            "no room for the export 30 minutes earlier; train at 00:30 or later"
        )
    return " ".join([str(before % 60), str(before // 60), *rest]), spec.retrain


def eventbridge_cron(cron: str) -> str:
    """A five-field cron -> EventBridge Scheduler's ``cron(M H DoM Mon DoW Y)``:
    one of the day fields must be ``?``, and weekdays count from 1 (Sunday)."""
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
        dow = re.sub(r"\d+", lambda m: str(int(m.group()) % 7 + 1), dow)
    else:
        raise SpecError(
            f"{PROJECT}:model.retrain {cron!r} names both a day of the month and a weekday; "
            "EventBridge takes one of them"
        )
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


SECTIONS = tuple(f for f in ChainSpec.__struct_fields__)


def _at(config: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = config
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _key(path: list[str]) -> str:
    return f"{PROJECT}:{path[0]}" + "".join(f".{p}" for p in path[1:]) if path else PROJECT


def load_spec(config: Mapping[str, Any]) -> ChainSpec:
    """Plain config values (section name -> value) -> a validated ``ChainSpec``."""
    try:
        spec = msgspec.convert(dict(config), ChainSpec)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = re.search(r" - at `\$((?:\.\w+|\[\d+\])*)`$", message)
        path = re.findall(r"\w+", found.group(1)) if found else []
        reason = message[: found.start()] if found else message
        missing = re.match(r"Object missing required field `(\w+)`", reason)
        if missing:
            path = [*path, missing.group(1)]
            raise SpecError(f"{_key(path)} is required (got None)") from None
        unknown = re.match(r"Object contains unknown field `(\w+)`", reason)
        if unknown:
            path = [*path, unknown.group(1)]
            raise SpecError(
                f"{_key(path)} is not a setting (value {_at(config, path)!r}); check the spelling"
            ) from None
        raise SpecError(f"{_key(path)}: {reason} (got {_at(config, path)!r})") from None
    _check(spec)
    return spec


def _check(spec: ChainSpec) -> None:
    """Rules across fields, which types alone cannot say."""
    for key, value in spec.labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise SpecError(
                f"{PROJECT}:labels key {key!r} must be lower case, start with a letter, <= 63 chars"
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise SpecError(
                f"{PROJECT}:labels.{key} value {value!r} must be lower case letters, digits, _ or -"
            )
    if spec.processing.min_workers > spec.processing.max_workers:
        raise SpecError(
            f"{PROJECT}:processing.min_workers ({spec.processing.min_workers}) is above "
            f"max_workers ({spec.processing.max_workers})"
        )
    if spec.model.retrain is not None:
        minute, hour = (int(v) for v in spec.model.retrain.split()[:2])
        if minute > 59 or hour > 23:
            raise SpecError(f"{PROJECT}:model.retrain {spec.model.retrain!r}: minute or hour out of range")
        retrain_times(spec.model)
    if spec.model.min_replicas > spec.model.max_replicas:
        raise SpecError(
            f"{PROJECT}:model.min_replicas ({spec.model.min_replicas}) is above "
            f"max_replicas ({spec.model.max_replicas})"
        )
    if spec.serve.min_instances > spec.serve.max_instances:
        raise SpecError(
            f"{PROJECT}:serve.min_instances ({spec.serve.min_instances}) is above "
            f"max_instances ({spec.serve.max_instances})"
        )
    if spec.cloud == "gcp":
        _check_gcp(spec)
    if spec.cloud == "aws":
        _check_aws(spec)
    if spec.cloud == "azure":
        _check_azure(spec)


def _check_gcp(spec: ChainSpec) -> None:
    gcp = spec.gcp
    if gcp is None:
        raise SpecError(f"{PROJECT}:gcp is required when {PROJECT}:cloud is 'gcp' (got None)")
    if not re.fullmatch(r"[a-z][a-z0-9.:-]{4,61}[a-z0-9]", gcp.project):
        raise SpecError(f"gcp:project {gcp.project!r} is not a GCP project id")
    if not re.fullmatch(r"[a-z]+-[a-z]+\d", gcp.region):
        raise SpecError(f"gcp:region {gcp.region!r} is not a GCP region such as 'europe-west1'")
    for field in ("pipeline_image", "model_server_image", "api_image", "training_image"):
        value = getattr(gcp, field)
        if not re.fullmatch(r"[a-z0-9-]+-docker\.pkg\.dev/[^/]+/[^/]+/[^:@\s]+[:@][^\s]+", value):
            raise SpecError(
                f"{PROJECT}:gcp.{field} {value!r} must be an Artifact Registry image with a tag or "
                "digest: REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG"
            )
    if not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}(/[^\s]*)?", gcp.model_artifact_uri):
        raise SpecError(f"{PROJECT}:gcp.model_artifact_uri {gcp.model_artifact_uri!r} must be a gs:// folder")
    if spec.model.private and not gcp.network:
        raise SpecError(
            f"{PROJECT}:model.private is true but {PROJECT}:gcp.network is not set (got None); "
            "a private endpoint is reached over a VPC network"
        )
    if gcp.kms_key_name is not None and not re.fullmatch(
        r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+", gcp.kms_key_name
    ):
        raise SpecError(
            f"{PROJECT}:gcp.kms_key_name {gcp.kms_key_name!r} must be "
            "projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )


_ECR_IMAGE = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[^:@\s]+[:@][^\s]+")


def _check_aws(spec: ChainSpec) -> None:
    aws = spec.aws
    if aws is None:
        raise SpecError(f"{PROJECT}:aws is required when {PROJECT}:cloud is 'aws' (got None)")
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", aws.region):
        raise SpecError(f"aws:region {aws.region!r} is not an AWS region such as 'eu-west-1'")
    if not re.fullmatch(r"vpc-[0-9a-f]{8,17}", aws.vpc_id):
        raise SpecError(f"{PROJECT}:aws.vpc_id {aws.vpc_id!r} is not a VPC id (vpc-...)")
    if len(aws.subnet_ids) < 3:
        raise SpecError(
            f"{PROJECT}:aws.subnet_ids needs at least 3 subnets in 3 availability zones "
            f"for Redshift Serverless (got {aws.subnet_ids!r})"
        )
    for subnet in aws.subnet_ids:
        if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", subnet):
            raise SpecError(f"{PROJECT}:aws.subnet_ids entry {subnet!r} is not a subnet id (subnet-...)")
    for field in ("model_server_image", "api_image", "training_image"):
        value = getattr(aws, field)
        if not _ECR_IMAGE.fullmatch(value):
            raise SpecError(
                f"{PROJECT}:aws.{field} {value!r} must be an ECR image with a tag or digest: "
                "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG"
            )
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+\.tar\.gz", aws.model_artifact_uri):
        raise SpecError(
            f"{PROJECT}:aws.model_artifact_uri {aws.model_artifact_uri!r} must be s3://BUCKET/KEY.tar.gz"
        )
    if aws.kms_key_arn is not None and not re.fullmatch(
        r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}", aws.kms_key_arn
    ):
        raise SpecError(f"{PROJECT}:aws.kms_key_arn {aws.kms_key_arn!r} is not a KMS key ARN")
    if not aws.kinesis_connector_jar_url.startswith("https://"):
        raise SpecError(
            f"{PROJECT}:aws.kinesis_connector_jar_url {aws.kinesis_connector_jar_url!r} must be https://"
        )


_ACR_IMAGE = re.compile(r"[a-z0-9]{5,50}\.azurecr\.io/[^:@\s]+[:@][^\s]+")
_SUBNET_ID = re.compile(
    r"/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"virtualNetworks/[^/]+/subnets/[^/]+",
    re.IGNORECASE,
)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_azure(spec: ChainSpec) -> None:
    az = spec.azure
    if az is None:
        raise SpecError(f"{PROJECT}:azure is required when {PROJECT}:cloud is 'azure' (got None)")
    if not re.fullmatch(r"[a-z]+[a-z0-9]*", az.location):
        raise SpecError(f"azure-native:location {az.location!r} is not an Azure region such as 'westeurope'")
    for field in ("model_server_image", "api_image", "training_image"):
        value = getattr(az, field)
        if not _ACR_IMAGE.fullmatch(value):
            raise SpecError(
                f"{PROJECT}:azure.{field} {value!r} must be an ACR image with a tag or digest: "
                "REGISTRY.azurecr.io/REPOSITORY:TAG"
            )
    if not re.fullmatch(
        r"(azureml://|https://[a-z0-9]{3,24}\.blob\.core\.windows\.net/)\S+", az.model_artifact_uri
    ):
        raise SpecError(
            f"{PROJECT}:azure.model_artifact_uri {az.model_artifact_uri!r} must be azureml://... "
            "or https://ACCOUNT.blob.core.windows.net/..."
        )
    for field in ("private_endpoint_subnet_id", "function_subnet_id"):
        value = getattr(az, field)
        if not _SUBNET_ID.fullmatch(value):
            raise SpecError(
                f"{PROJECT}:azure.{field} {value!r} must be a subnet resource id "
                "(/subscriptions/.../virtualNetworks/VNET/subnets/NAME)"
            )
    if not _GUID.fullmatch(az.sql_admin_object_id):
        raise SpecError(
            f"{PROJECT}:azure.sql_admin_object_id {az.sql_admin_object_id!r} is not an object id (GUID)"
        )
    if not spec.serve.public and (az.api_client_id is None or not _GUID.fullmatch(az.api_client_id)):
        raise SpecError(
            f"{PROJECT}:azure.api_client_id must be the Entra ID app id callers get tokens for "
            f"when {PROJECT}:serve.public is false (got {az.api_client_id!r})"
        )
    if az.cmk_key_url is not None and not re.fullmatch(
        r"https://[a-z0-9-]{3,24}\.vault\.azure\.net/keys/[A-Za-z0-9-]+(/[0-9a-f]{32})?", az.cmk_key_url
    ):
        raise SpecError(f"{PROJECT}:azure.cmk_key_url {az.cmk_key_url!r} is not a Key Vault key URL")


# Settings each cloud's provider reads from its own namespace, copied into the cloud section.
_PROVIDER_SETTINGS = {"gcp": ("project", "region"), "aws": ("region",), "azure": ("location",)}
# Each provider's config namespace.
_PROVIDER_NAMESPACE = {"gcp": "gcp", "aws": "aws", "azure": "azure-native"}


def _with_provider_settings(values: dict[str, Any], provider_setting) -> dict[str, Any]:
    """Project and region live in the provider's own namespace (``gcp:project``,
    ``aws:region``), where the provider reads them too; copy them into the
    cloud section. ``provider_setting(cloud, key)`` reads one."""
    cloud = values.get("cloud")
    if cloud not in _PROVIDER_SETTINGS:
        return values
    section = dict(values.get(cloud) or {})
    for key in _PROVIDER_SETTINGS[cloud]:
        if provider_setting(cloud, key) is not None:
            section.setdefault(key, provider_setting(cloud, key))
    return {**values, cloud: section}


def spec_from_pulumi_config() -> ChainSpec:
    """Read every section from the running stack's config (``__main__``)."""
    import pulumi

    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for section in SECTIONS:
        raw = cfg.get(section)
        if raw is None:
            continue
        try:
            values[section] = cfg.get_object(section)
        except Exception:  # a plain string value (cloud, environment)
            values[section] = raw
    return load_spec(
        _with_provider_settings(values, lambda cloud, key: pulumi.Config(_PROVIDER_NAMESPACE[cloud]).get(key))
    )


def spec_from_stack_file(path: str) -> ChainSpec:
    """Validate a ``stacks/Pulumi.<stack>.yaml`` without the Pulumi engine."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = (yaml.safe_load(f) or {}).get("config", {})
    values: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT:
            values[name] = value
    return load_spec(
        _with_provider_settings(values, lambda cloud, key: config.get(f"{_PROVIDER_NAMESPACE[cloud]}:{key}"))
    )


if __name__ == "__main__":
    import sys

    try:
        print(spec_from_stack_file(sys.argv[1]))
    except SpecError as exc:
        sys.exit(f"invalid config: {exc}")
