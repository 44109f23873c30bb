"""The policy pack's rules, as plain functions over one resource's inputs.

Each rule names the resource types it applies to, its checkov equivalent
where one exists, and returns a violation message or ``None``. The same
rules run in three places:

- ``pulumi preview --policy-pack components/policy`` (``__main__.py`` wraps
  each rule in a ``pulumi_policy`` policy; that pack has its own virtualenv,
  as Pulumi runs packs, because pulumi-policy pins an older protobuf);
- the tests, against a passing and a failing fixture per rule, and against
  every committed stack's offline plan (every default stack must pass all);
- anyone's code: ``violations(type, inputs, protect)``.

This module imports nothing outside the standard library, so the pack's
environment needs only pulumi-policy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Props = dict[str, Any]

# Actions IAM cannot scope to a resource ARN: "*" is the only resource they take.
UNSCOPED_ACTIONS = frozenset(
    {
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcEndpoints",
        "ec2:DescribeRouteTables",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeVpcAttribute",
        "redshift-data:DescribeStatement",
        "redshift-data:GetStatementResult",
        "redshift-data:CancelStatement",
    }
)
PRIMITIVE_GCP_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
# Owner, Contributor, User Access Administrator.
BROAD_AZURE_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
}
MIN_STREAM_RETENTION_HOURS = 24
MIN_LOG_RETENTION_DAYS = 7
MIN_ARCHIVE_DAYS = 30


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    types: tuple[str, ...]
    check: Callable[[Props, bool], str | None]
    checkov: str | None = None

    def applies(self, resource_type: str) -> bool:
        return resource_type in self.types


def _get(props: Props, *path: str) -> Any:
    value: Any = props
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _require(ok: bool, message: str) -> str | None:
    return None if ok else message


def _iam_statements(props: Props) -> list[dict]:
    doc = props.get("policy")
    doc = json.loads(doc) if isinstance(doc, str) else doc or {}
    statements = doc.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def statement_problem(s: dict[str, Any]) -> str | None:
    """What is too broad in one IAM ``Allow`` statement, or None. The AWS
    components refuse such a statement at deploy time with the same words."""
    if s.get("Effect", "Allow") != "Allow":
        return None
    actions = s.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    resources = s.get("Resource", [])
    resources = [resources] if isinstance(resources, str) else resources
    wild = [a for a in actions if "*" in a]
    if wild:
        return f"wildcard actions are not granted: {wild}"
    if "*" in resources and not set(actions) <= UNSCOPED_ACTIONS:
        return f"Resource '*' for actions that can be scoped: {sorted(set(actions) - UNSCOPED_ACTIONS)}"
    return None


def _aws_least_privilege(props: Props, _protect: bool) -> str | None:
    return next((p for p in map(statement_problem, _iam_statements(props)) if p), None)


def _s3_public_block(props: Props, _protect: bool) -> str | None:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [f for f in flags if props.get(f) is not True]
    return _require(not off, f"public access not blocked: {off} are not true")


def _s3_kms(props: Props, _protect: bool) -> str | None:
    rules = props.get("rules") or []
    algos = [_get(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") for r in rules]
    return _require(
        bool(algos) and all(a in ("aws:kms", "aws:kms:dsse") for a in algos), f"SSE is {algos}, not aws:kms"
    )


def _gcp_members(props: Props, _protect: bool) -> str | None:
    role, member = props.get("role", ""), props.get("member", "")
    if role in PRIMITIVE_GCP_ROLES:
        return f"primitive role {role}"
    return _require(member not in PUBLIC_MEMBERS, f"{role} granted to {member}")


def _retention(props: Props, _protect: bool) -> str | None:
    if "retentionPeriod" in props:  # Kinesis, hours
        hours = props["retentionPeriod"]
    elif "messageRetentionDuration" in props:  # Pub/Sub, "Ns"
        hours = int(str(props["messageRetentionDuration"]).rstrip("s")) / 3600
    else:  # Event Hubs
        hours = _get(props, "retentionDescription", "retentionTimeInHours") or 0
    return _require(
        hours >= MIN_STREAM_RETENTION_HOURS, f"retention {hours}h < {MIN_STREAM_RETENTION_HOURS}h"
    )


def _log_retention(props: Props, _protect: bool) -> str | None:
    days = props.get("retentionInDays") or 0
    problems = []
    if days < MIN_LOG_RETENTION_DAYS:
        problems.append(f"retention {days} days < {MIN_LOG_RETENTION_DAYS}")
    if not props.get("kmsKeyId"):
        problems.append("no KMS key")
    return "; ".join(problems) or None


def _aws_training_encrypted(props: Props, _protect: bool) -> str | None:
    target = props.get("target") or {}
    if not str(target.get("arn", "")).endswith(":sagemaker:createTrainingJob"):
        return None
    try:
        body = json.loads(target.get("input") or "{}")
    except ValueError:
        return "the training request is not JSON"
    missing = [
        key
        for key, value in (
            ("OutputDataConfig.KmsKeyId", _get(body, "OutputDataConfig", "KmsKeyId")),
            ("ResourceConfig.VolumeKmsKeyId", _get(body, "ResourceConfig", "VolumeKmsKeyId")),
            ("EnableInterContainerTrafficEncryption", body.get("EnableInterContainerTrafficEncryption")),
        )
        if not value
    ]
    return _require(not missing, f"training jobs start without {', '.join(missing)}")


def _gcp_training_identity(props: Props, _protect: bool) -> str | None:
    uri = str(_get(props, "httpTarget", "uri") or "")
    if not uri.endswith("/customJobs"):
        return None
    try:
        body = json.loads(base64.b64decode(_get(props, "httpTarget", "body") or ""))
    except ValueError:
        return "the custom job's body is not base64 JSON"
    account = _get(body, "jobSpec", "serviceAccount") or ""
    return _require(
        bool(account) and not account.endswith("-compute@developer.gserviceaccount.com"),
        f"custom jobs run as {account or 'the default compute account'}, not their own account",
    )


def _azure_training_identity(props: Props, _protect: bool) -> str | None:
    job = _get(props, "properties", "action", "jobDefinition") or {}
    if not job:
        return None
    return _require(
        _get(job, "identity", "identityType") == "Managed",
        "scheduled jobs run as the user who scheduled them, not a managed identity",
    )


RULES: list[Rule] = [
    # Encryption at rest with a customer-managed key.
    Rule(
        "aws-kinesis-kms",
        "Kinesis streams are encrypted with KMS.",
        ("aws:kinesis/stream:Stream",),
        lambda p, _: _require(
            p.get("encryptionType") == "KMS" and bool(p.get("kmsKeyId")), "stream not KMS-encrypted"
        ),
        "CKV_AWS_43",
    ),
    Rule(
        "aws-s3-kms",
        "S3 buckets default to SSE-KMS.",
        ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",),
        _s3_kms,
        "CKV_AWS_145",
    ),
    Rule(
        "aws-sagemaker-endpoint-kms",
        "SageMaker endpoint storage is KMS-encrypted.",
        ("aws:sagemaker/endpointConfiguration:EndpointConfiguration",),
        lambda p, _: _require(bool(p.get("kmsKeyArn")), "no kmsKeyArn"),
        "CKV_AWS_98",
    ),
    Rule(
        "aws-redshift-kms-and-logs",
        "Redshift Serverless namespaces use KMS and export audit logs.",
        ("aws:redshiftserverless/namespace:Namespace",),
        lambda p, _: _require(
            bool(p.get("kmsKeyId")) and bool(p.get("logExports")), "no kmsKeyId or no logExports"
        ),
        "CKV_AWS_64",
    ),
    Rule(
        "aws-sns-kms",
        "SNS topics are KMS-encrypted.",
        ("aws:sns/topic:Topic",),
        lambda p, _: _require(bool(p.get("kmsMasterKeyId")), "no kmsMasterKeyId"),
        "CKV_AWS_26",
    ),
    Rule(
        "aws-user-state-kms-ttl",
        "DynamoDB tables (the user state) are KMS-encrypted and expire items by TTL.",
        ("aws:dynamodb/table:Table",),
        lambda p, _: _require(
            _get(p, "serverSideEncryption", "enabled") is True
            and bool(_get(p, "serverSideEncryption", "kmsKeyArn"))
            and _get(p, "ttl", "enabled") is True
            and bool(_get(p, "ttl", "attributeName")),
            "not encrypted with a KMS key, or no TTL",
        ),
        "CKV_AWS_119",
    ),
    Rule(
        "aws-archive-encrypted",
        "Firehose archives compress and encrypt what they write with a KMS key.",
        ("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream",),
        lambda p, _: _require(
            bool(_get(p, "extendedS3Configuration", "kmsKeyArn"))
            and _get(p, "extendedS3Configuration", "compressionFormat") == "GZIP",
            "archive objects not KMS-encrypted or not compressed",
        ),
        None,
    ),
    Rule(
        "gcp-archive-replayable",
        "Cloud Storage subscriptions write Avro with each message's id and publish time (for replays).",
        ("gcp:pubsub/subscription:Subscription",),
        lambda p, _: _require(
            p.get("cloudStorageConfig") is None
            or _get(p, "cloudStorageConfig", "avroConfig", "writeMetadata") is True,
            "the archive drops the message id and publish time",
        ),
        None,
    ),
    Rule(
        "aws-log-groups",
        "Log groups are KMS-encrypted and kept at least a week.",
        ("aws:cloudwatch/logGroup:LogGroup",),
        _log_retention,
        "CKV_AWS_158",
    ),
    # No public access.
    Rule(
        "aws-s3-public-access-block",
        "Every public-access setting of a bucket is blocked.",
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",),
        _s3_public_block,
        "CKV_AWS_53",
    ),
    Rule(
        "aws-redshift-private",
        "Redshift Serverless is not publicly accessible and routes through the VPC.",
        ("aws:redshiftserverless/workgroup:Workgroup",),
        lambda p, _: _require(
            p.get("publiclyAccessible") is False and p.get("enhancedVpcRouting") is True,
            "publicly accessible or no enhanced VPC routing",
        ),
        "CKV_AWS_87",
    ),
    Rule(
        "aws-lambda-url-auth",
        "Function URLs require IAM auth; only the collector (named *-collector), which checks write keys "
        "itself because browsers cannot sign requests, may be public.",
        ("aws:lambda/functionUrl:FunctionUrl",),
        lambda p, _: _require(
            p.get("authorizationType") == "AWS_IAM" or str(p.get("functionName", "")).endswith("-collector"),
            f"authorizationType {p.get('authorizationType')}",
        ),
        "CKV_AWS_258",
    ),
    Rule(
        "gcp-bucket-private",
        "GCS buckets enforce public access prevention and uniform access.",
        ("gcp:storage/bucket:Bucket",),
        lambda p, _: _require(
            p.get("publicAccessPrevention") == "enforced" and p.get("uniformBucketLevelAccess") is True,
            "public access prevention not enforced or ACLs allowed",
        ),
        "CKV_GCP_114",
    ),
    Rule(
        "azure-storage-private",
        "Storage accounts: no public blobs, no shared keys, TLS 1.2.",
        ("azure-native:storage:StorageAccount",),
        lambda p, _: _require(
            p.get("allowBlobPublicAccess") is False
            and p.get("allowSharedKeyAccess") is False
            and p.get("minimumTlsVersion") == "TLS1_2",
            "public blobs, shared keys or TLS < 1.2",
        ),
        "CKV_AZURE_190",
    ),
    Rule(
        "azure-user-state-private",
        "Storage accounts holding tables (the user state) take no traffic from public networks.",
        ("azure-native:storage:StorageAccount",),
        lambda p, _: _require(
            _get(p, "encryption", "services", "table") is None or p.get("publicNetworkAccess") == "Disabled",
            "a table account open to public networks",
        ),
        "CKV_AZURE_59",
    ),
    Rule(
        "gcp-firestore-protected",
        "Firestore databases (the user state) refuse deletion.",
        ("gcp:firestore/database:Database",),
        lambda p, protect: _require(
            protect or p.get("deleteProtectionState") == "DELETE_PROTECTION_ENABLED",
            "deletion is not refused",
        ),
        None,
    ),
    Rule(
        "azure-synapse-private",
        "Synapse: managed VNet, exfiltration protection, no public network, Entra ID only.",
        ("azure-native:synapse:Workspace",),
        lambda p, _: _require(
            _get(p, "managedVirtualNetworkSettings", "preventDataExfiltration") is True
            and p.get("publicNetworkAccess") == "Disabled"
            and p.get("azureADOnlyAuthentication") is True,
            "exfiltration allowed, public network on or SQL auth on",
        ),
        "CKV_AZURE_157",
    ),
    Rule(
        "azure-ml-private",
        "Azure ML workspaces and endpoints have public network access off.",
        (
            "azure-native:machinelearningservices:Workspace",
            "azure-native:machinelearningservices:OnlineEndpoint",
        ),
        lambda p, _: _require(
            (p.get("publicNetworkAccess") or _get(p, "properties", "publicNetworkAccess")) == "Disabled",
            "public network access is on",
        ),
        "CKV_AZURE_144",
    ),
    # TLS minimums.
    Rule(
        "azure-eventhub-tls-entra",
        "Event Hubs: TLS 1.2 and no SAS keys.",
        ("azure-native:eventhub:Namespace",),
        lambda p, _: _require(
            p.get("minimumTlsVersion") == "1.2" and p.get("disableLocalAuth") is True,
            "TLS below 1.2 or local auth on",
        ),
        None,
    ),
    Rule(
        "azure-function-https",
        "Function Apps: HTTPS only, TLS 1.2, FTP off.",
        ("azure-native:web:WebApp",),
        lambda p, _: _require(
            p.get("httpsOnly") is True
            and _get(p, "siteConfig", "minTlsVersion") == "1.2"
            and _get(p, "siteConfig", "ftpsState") == "Disabled",
            "HTTP allowed, TLS < 1.2 or FTP on",
        ),
        "CKV_AZURE_70",
    ),
    Rule(
        "aws-redshift-tls",
        "Redshift Serverless requires TLS.",
        ("aws:redshiftserverless/workgroup:Workgroup",),
        lambda p, _: _require(
            {"parameterKey": "require_ssl", "parameterValue": "true"} in (p.get("configParameters") or []),
            "require_ssl is not true",
        ),
        None,
    ),
    # Least-privilege IAM.
    Rule(
        "aws-iam-least-privilege",
        "IAM policies name their actions and resources.",
        ("aws:iam/rolePolicy:RolePolicy",),
        _aws_least_privilege,
        "CKV_AWS_355",
    ),
    Rule(
        "gcp-iam-least-privilege",
        "No primitive roles, no public members.",
        tuple(
            f"gcp:{m}"
            for m in (
                "pubsub/topicIAMMember:TopicIAMMember",
                "pubsub/subscriptionIAMMember:SubscriptionIAMMember",
                "bigquery/iamMember:IamMember",
                "bigquery/datasetIamMember:DatasetIamMember",
                "storage/bucketIAMMember:BucketIAMMember",
                "projects/iAMMember:IAMMember",
                "artifactregistry/repositoryIamMember:RepositoryIamMember",
            )
        ),
        _gcp_members,
        "CKV_GCP_117",
    ),
    Rule(
        "azure-no-broad-roles",
        "No Owner, Contributor or User Access Administrator assignments.",
        ("azure-native:authorization:RoleAssignment",),
        lambda p, _: _require(
            str(p.get("roleDefinitionId", "")).rsplit("/", 1)[-1] not in BROAD_AZURE_ROLES,
            "broad built-in role",
        ),
        None,
    ),
    # Private processing networks.
    Rule(
        "gcp-dataflow-private-workers",
        "Dataflow workers have private IPs only.",
        ("gcp:dataflow/flexTemplateJob:FlexTemplateJob",),
        lambda p, _: _require(p.get("ipConfiguration") == "WORKER_IP_PRIVATE", "workers get public IPs"),
        None,
    ),
    Rule(
        "aws-glue-in-vpc-encrypted",
        "Glue jobs run in the VPC with a security configuration.",
        ("aws:glue/job:Job",),
        lambda p, _: _require(
            bool(p.get("connections")) and bool(p.get("securityConfiguration")),
            "no connection (VPC) or no security configuration",
        ),
        "CKV_AWS_195",
    ),
    # The slow path's jobs.
    Rule(
        "aws-training-encrypted",
        "Scheduled SageMaker training jobs encrypt their output, volumes and traffic with the chain's key.",
        ("aws:scheduler/schedule:Schedule",),
        _aws_training_encrypted,
        None,
    ),
    Rule(
        "gcp-training-own-identity",
        "Scheduled Vertex AI custom jobs run as their own service account, not the default compute one.",
        ("gcp:cloudscheduler/job:Job",),
        _gcp_training_identity,
        None,
    ),
    Rule(
        "azure-training-managed-identity",
        "Scheduled Azure ML jobs run as a managed identity.",
        ("azure-native:machinelearningservices:Schedule",),
        _azure_training_identity,
        None,
    ),
    # Retention minimums.
    Rule(
        "stream-retention",
        f"Streams keep unread events at least {MIN_STREAM_RETENTION_HOURS} hours.",
        ("aws:kinesis/stream:Stream", "gcp:pubsub/topic:Topic", "azure-native:eventhub:EventHub"),
        _retention,
        None,
    ),
    # Deletion protection on stores.
    Rule(
        "store-deletion-protection",
        "Warehouse stores refuse deletion.",
        (
            "gcp:bigquery/table:Table",
            "aws:redshiftserverless/namespace:Namespace",
            "azure-native:synapse:SqlPool",
        ),
        lambda p, protect: _require(
            protect or p.get("deletionProtection") is True, "deletion is not refused"
        ),
        None,
    ),
]


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Props
    protect: bool = False


@dataclass(frozen=True)
class StackRule:
    """A rule over the whole stack (how resources relate), as a stack policy."""

    name: str
    description: str
    check: Callable[[list[Resource]], list[str]]
    checkov: str | None = None


def _subscriptions_dead_letter(resources: list[Resource]) -> list[str]:
    subs = [r for r in resources if r.type == "gcp:pubsub/subscription:Subscription"]
    dead_topics = {_get(r.props, "deadLetterPolicy", "deadLetterTopic") for r in subs} - {None}
    return [
        f"{r.name}: no retry policy or no dead-letter policy"
        for r in subs
        # A dead-letter topic's own subscription is where undeliverable messages end.
        if r.props.get("topic") not in dead_topics
        and not (r.props.get("retryPolicy") and r.props.get("deadLetterPolicy"))
    ]


def _buckets_locked(resources: list[Resource]) -> list[str]:
    buckets = {r.name for r in resources if r.type == "aws:s3/bucket:Bucket"}
    blocked = {r.props.get("bucket") for r in resources if r.type.endswith(":BucketPublicAccessBlock")}
    encrypted = {
        r.props.get("bucket")
        for r in resources
        if r.type.endswith(":BucketServerSideEncryptionConfiguration")
    }
    return [f"{b}: no public access block" for b in sorted(buckets - blocked)] + [
        f"{b}: no default encryption" for b in sorted(buckets - encrypted)
    ]


def _user_state_expires(resources: list[Resource]) -> list[str]:
    """Firestore: a TTL policy on a field of each database. Table storage has
    no TTL: a fast-path Function App (``DATAFLOW_APP=fresh``, which purges
    daily) with ``USER_STATE_TTL_DAYS`` must name each table's account."""
    problems = []
    with_ttl = {
        r.props.get("database")
        for r in resources
        if r.type == "gcp:firestore/field:Field" and r.props.get("ttlConfig") is not None
    }
    for r in resources:
        if r.type == "gcp:firestore/database:Database" and r.props.get("name") not in with_ttl:
            problems.append(f"{r.name}: no TTL policy on any field")
    purging = []
    for r in resources:
        if r.type == "azure-native:web:WebApp":
            settings = {
                s.get("name"): s.get("value") for s in _get(r.props, "siteConfig", "appSettings") or []
            }
            if settings.get("DATAFLOW_APP") == "fresh" and settings.get("USER_STATE_TTL_DAYS"):
                purging.append(str(settings.get("USER_STATE", "")))
    for r in resources:
        if r.type == "azure-native:storage:Table":
            account = str(r.props.get("accountName", ""))
            if not any(f"//{account}." in location for location in purging):
                problems.append(f"{r.name}: no fast-path app purges expired users from account {account}")
    return problems


def _archive_retention(resources: list[Resource]) -> list[str]:
    """The store behind each archive keeps its files at least ``MIN_ARCHIVE_DAYS``."""
    problems = []
    gcs = {r.props.get("name", r.name): r for r in resources if r.type == "gcp:storage/bucket:Bucket"}
    for r in resources:
        bucket = _get(r.props, "cloudStorageConfig", "bucket")
        if r.type == "gcp:pubsub/subscription:Subscription" and bucket in gcs:
            ages = [
                _get(rule, "condition", "age")
                for rule in gcs[bucket].props.get("lifecycleRules") or []
                if _get(rule, "action", "type") == "Delete" and not _get(rule, "condition", "matchesPrefixes")
            ]
            if any(a is not None and a < MIN_ARCHIVE_DAYS for a in ages):
                problems.append(f"{bucket}: archive files deleted before {MIN_ARCHIVE_DAYS} days")
    archived = {
        str(_get(r.props, "extendedS3Configuration", "bucketArn")).rsplit(":", 1)[-1]
        for r in resources
        if r.type == "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
    }
    for r in resources:
        if r.type.endswith(":BucketLifecycleConfiguration") and r.props.get("bucket") in archived:
            for rule in r.props.get("rules") or []:
                days = _get(rule, "expiration", "days")
                if days is not None and days < MIN_ARCHIVE_DAYS:
                    problems.append(
                        f"{r.props['bucket']}: archive objects expire before {MIN_ARCHIVE_DAYS} days"
                    )
    for r in resources:
        if r.type == "azure-native:storage:ManagementPolicy":
            for rule in _get(r.props, "policy", "rules") or []:
                if "capture/" not in (_get(rule, "definition", "filters", "prefixMatch") or []):
                    continue
                days = _get(
                    rule, "definition", "actions", "baseBlob", "delete", "daysAfterModificationGreaterThan"
                )
                if days is not None and days < MIN_ARCHIVE_DAYS:
                    problems.append(f"{r.name}: captured files deleted before {MIN_ARCHIVE_DAYS} days")
    return problems


STACK_RULES: list[StackRule] = [
    StackRule(
        "archive-retention",
        f"Raw archives keep their files at least {MIN_ARCHIVE_DAYS} days (GCS lifecycle, S3 expiry, "
        "the lake's policy on Capture's container).",
        _archive_retention,
    ),
    StackRule(
        "user-state-expires",
        "Every user-state store bounds what it keeps: a Firestore TTL policy, or (Table storage has "
        "no TTL) the fast-path app that purges expired users daily.",
        _user_state_expires,
    ),
    StackRule(
        "gcp-subscription-dead-letter",
        "Subscriptions retry with backoff and dead-letter what they cannot deliver "
        "(the dead-letter topic's own subscription excepted).",
        _subscriptions_dead_letter,
    ),
    StackRule(
        "aws-every-bucket-locked",
        "Every S3 bucket has a public access block and default encryption.",
        _buckets_locked,
        "CKV2_AWS_6",
    ),
]


def stack_violations(resources: list[Resource]) -> list[tuple[str, str]]:
    return [(rule.name, message) for rule in STACK_RULES for message in rule.check(resources)]


def violations(resource_type: str, props: Props, protect: bool = False) -> list[tuple[str, str]]:
    """``[(rule name, message)]`` for one resource."""
    found = []
    for rule in RULES:
        if rule.applies(resource_type):
            message = rule.check(props, protect)
            if message:
                found.append((rule.name, message))
    return found
