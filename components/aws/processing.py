"""Processing on AWS: the shared pipeline as a Glue streaming job, and a Glue batch job for replays.

Pulumi uploads what the job runs to a private, KMS-encrypted bucket:

- ``code/glue_job.py``: the script Glue starts (``pipeline_code/spark/glue_job.py``);
- ``code/glue_replay_job.py``: the replay job's (``pipeline_code/spark/glue_replay_job.py``);
- ``code/pipeline_code.zip``: the package, zipped by Pulumi at deploy time
  (``--extra-py-files``), with ``pipeline_code/spark/requirements.txt`` as
  ``--additional-python-modules``;
- ``code/jars/...``: the Kinesis connector for Spark Structured Streaming,
  downloaded by Pulumi at deploy time and served from this bucket
  (``--extra-jars``), so the job reads no bucket but its own.

The job (``gluestreaming``, Glue 5.0, auto scaling up to the spec's
``max_workers``) runs ``glueContext.forEachBatch`` with the spec's batch
length and its checkpoint in ``checkpoint/``; staged Parquet lives in
``staging/`` for 7 days. It runs as its own role, which is granted, resource
by resource: read on the stream, write to the dead-letter bucket, the
warehouse's Data API on the workgroup, its bucket prefixes, its log group,
the key. A security configuration encrypts its S3 output, logs and
bookmarks; logs are kept ``log_retention_days``. A scheduled trigger starts
the job, and restarts it within ``processing.restart_minutes`` if it ever stops (one run at
most: the trigger's start is refused while a run is live).

The replay job (``glueetl``, same code, same security configuration) runs
only when started, with the range or the dead-letter selection as the run's
arguments, and stops when the batch is committed (or after
``REPLAY_TIMEOUT_MINUTES``)::

    aws glue start-job-run --job-name CHAIN-process-replay \
        --arguments '{"--replay":"archive","--replay_from":"2026-11-01","--replay_to":"2026-11-02"}'
    aws glue start-job-run --job-name CHAIN-process-replay \
        --arguments '{"--replay":"dead_letters","--replay_stage":"validate"}'

It runs as its own role: read on the archive (``Archive.grant_read``), the
warehouse's write grant, its code, its staging and its log group; nothing
of the stream or the dead-letter bucket (a replay that fails commits
nothing, and its input is still in the archive or the warehouse).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.aws.archive import PREFIX as ARCHIVE_PREFIX
from components.aws.archive import Archive
from components.aws.ingest import Ingest
from components.aws.security import (
    PrivateBucket,
    encrypted_log_group,
    grant,
    kms_statements,
    log_write,
    service_role,
    statement,
)
from components.aws.warehouse import Warehouse
from components.spec import ProcessingSpec
from pipeline_code import host
from pipeline_code.host import CLOUDWATCH_NAMESPACE

TYPE = "data-flow:aws:Processing"
PACKAGE = Path(__file__).resolve().parents[2] / "pipeline_code"
SCRIPT = PACKAGE / "spark" / "glue_job.py"
REPLAY_SCRIPT = PACKAGE / "spark" / "glue_replay_job.py"
REPLAY_TIMEOUT_MINUTES = 12 * 60
"""A replay run is stopped after this long (Glue's default is two days)."""
REQUIREMENTS = PACKAGE / "spark" / "requirements.txt"
GLUE_VERSION = "5.0"


def additional_modules() -> str:
    """``pipeline_code/spark/requirements.txt`` as Glue's comma-separated list."""
    lines = REQUIREMENTS.read_text().splitlines()
    return ",".join(r.strip() for r in lines if r.strip() and not r.startswith("#"))


def _glue_arguments(bucket: str, log_group: str) -> dict[str, str]:
    """What every job of the link passes Glue: the package, its modules, logs, metrics."""
    return {
        "--job-language": "python",
        "--extra-py-files": f"s3://{bucket}/code/pipeline_code.zip",
        "--additional-python-modules": additional_modules(),
        "--enable-metrics": "true",
        "--enable-continuous-cloudwatch-log": "true",
        "--continuous-log-logGroup": log_group,
        "--TempDir": f"s3://{bucket}/temp/",
    }


def job_arguments(
    *,
    processing: ProcessingSpec,
    stream_name: str,
    region: str,
    workgroup: str,
    database: str,
    bucket: str,
    dead_letter_bucket: str,
    copy_role_arn: str,
    log_group: str,
    jar_key: str,
) -> dict[str, str]:
    """The job's default arguments: Glue's own, then the pipeline's
    (``pipeline_code.spark.glue.parse_args`` reads them)."""
    return {
        **_glue_arguments(bucket, log_group),
        "--extra-jars": f"s3://{bucket}/{jar_key}",
        "--enable-auto-scaling": "true",
        "--stream_name": stream_name,
        "--region": region,
        "--workgroup": workgroup,
        "--database": database,
        "--staging_uri": f"s3://{bucket}/staging/",
        "--checkpoint_uri": f"s3://{bucket}/checkpoint/",
        "--dead_letter_uri": f"s3://{dead_letter_bucket}/",
        "--copy_role_arn": copy_role_arn,
        **host.job_arguments(processing.settings()),
        "--commit_attempts": str(processing.retries + 1),
    }


def replay_arguments(
    *,
    processing: ProcessingSpec,
    archive_bucket: str,
    region: str,
    workgroup: str,
    database: str,
    bucket: str,
    copy_role_arn: str,
    log_group: str,
) -> dict[str, str]:
    """The replay job's default arguments (``pipeline_code.spark.glue.parse_replay_args``);
    each run adds ``--replay`` and its range or selection."""
    return {
        **_glue_arguments(bucket, log_group),
        "--enable-auto-scaling": "true",
        # A replay is keyed by its input, not by what a bookmark remembers.
        "--job-bookmark-option": "job-bookmark-disable",
        "--archive_uri": f"s3://{archive_bucket}/{ARCHIVE_PREFIX}",
        "--region": region,
        "--workgroup": workgroup,
        "--database": database,
        "--staging_uri": f"s3://{bucket}/staging/",
        "--copy_role_arn": copy_role_arn,
        **host.job_arguments(processing.settings()),
    }


class Processing(pulumi.ComponentResource):
    """The Glue streaming job, its code, its role and its logs.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        region: Region of the Glue job and the stream.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        warehouse: The warehouse link the job writes to (through its grant verbs).
        archive: The archive link the replay job reads (through its grant verbs).
        processing: ``data-flow:processing``: micro-batch, windows, shards, workers, retries
            (``ProcessingSpec.settings()`` becomes the job's arguments).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        connector_jar_url: URL of the Kinesis connector jar for Spark, uploaded to the private code
            bucket.
        worker_type: Glue worker type. Default: ``G.1X``.
        log_retention_days: Days the function's log group keeps entries. Default: 30.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    job: aws.glue.Job
    role: aws.iam.Role
    replay_job: aws.glue.Job
    replay_role: aws.iam.Role
    bucket: PrivateBucket
    log_group: aws.cloudwatch.LogGroup

    def __init__(
        self,
        name: str,
        *,
        region: str,
        ingest: Ingest,
        warehouse: Warehouse,
        archive: Archive,
        processing: ProcessingSpec,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        connector_jar_url: str,
        worker_type: str = "G.1X",
        log_retention_days: int = 30,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = PrivateBucket(
            f"{name}-code",
            kms_key_arn=kms_key_arn,
            tags=tags,
            expire_prefixes={"staging/": 7, "temp/": 7},
            opts=child,
        )
        bucket = self.bucket.bucket
        jar_key = "code/jars/" + connector_jar_url.rsplit("/", 1)[-1]
        uploads = [
            aws.s3.BucketObjectv2(
                f"{name}-script",
                bucket=bucket.id,
                key="code/glue_job.py",
                source=pulumi.FileAsset(str(SCRIPT)),
                opts=child,
            ),
            aws.s3.BucketObjectv2(
                f"{name}-replay-script",
                bucket=bucket.id,
                key="code/glue_replay_job.py",
                source=pulumi.FileAsset(str(REPLAY_SCRIPT)),
                opts=child,
            ),
            aws.s3.BucketObjectv2(
                f"{name}-package",
                bucket=bucket.id,
                key="code/pipeline_code.zip",
                # Nested so the zip's top level is the package directory.
                source=pulumi.AssetArchive({"pipeline_code": pulumi.FileArchive(str(PACKAGE))}),
                opts=child,
            ),
            aws.s3.BucketObjectv2(
                f"{name}-connector",
                bucket=bucket.id,
                key=jar_key,
                source=pulumi.RemoteAsset(connector_jar_url),
                opts=child,
            ),
        ]
        self.log_group = encrypted_log_group(
            f"{name}-logs",
            f"/aws-glue/jobs/{name}",
            kms_key_arn=kms_key_arn,
            tags=tags,
            retention_days=log_retention_days,
            parent=self,
        )
        self.security_configuration = aws.glue.SecurityConfiguration(
            f"{name}-security",
            name=f"{name}-security",
            encryption_configuration={
                "cloudwatch_encryption": {
                    "cloudwatch_encryption_mode": "SSE-KMS",
                    "kms_key_arn": kms_key_arn,
                },
                "job_bookmarks_encryption": {
                    "job_bookmarks_encryption_mode": "CSE-KMS",
                    "kms_key_arn": kms_key_arn,
                },
                "s3_encryption": {"s3_encryption_mode": "SSE-KMS", "kms_key_arn": kms_key_arn},
            },
            opts=child,
        )

        self.role = service_role(f"{name}-job", "glue.amazonaws.com", tags, self)
        grants = [
            ingest.grant_consume("job", self.role),
            *warehouse.grant_write("job", self.role),
            grant(
                f"{name}-job-runtime",
                self.role,
                self._runtime_statements(self.log_group, kms_key_arn, ["checkpoint/", "staging/", "temp/"]),
                self,
            ),
            # COPY reads the staged batches and nothing else of the bucket.
            grant(
                f"{name}-copy-staging",
                warehouse.copy_role,
                [
                    statement(["s3:ListBucket"], [bucket.arn]),
                    statement(["s3:GetObject"], [self.bucket.objects("staging/")]),
                    kms_statements(kms_key_arn, write=False),
                ],
                self,
            ),
        ]
        arguments = pulumi.Output.all(
            ingest.stream.name,
            warehouse.workgroup.workgroup_name,
            bucket.bucket,
            ingest.dead_letters.bucket.bucket,
            warehouse.copy_role.arn,
            self.log_group.name,
        ).apply(
            lambda v: job_arguments(
                processing=processing,
                stream_name=v[0],
                region=region,
                workgroup=v[1],
                database=warehouse.database,
                bucket=v[2],
                dead_letter_bucket=v[3],
                copy_role_arn=v[4],
                log_group=v[5],
                jar_key=jar_key,
            )
        )
        self.job = self._glue_job(
            f"{name}-job",
            f"{name}-stream",
            self.role,
            ("gluestreaming", "glue_job.py"),
            arguments,
            worker_type,
            processing,
            warehouse,
            tags,
            depends_on=[*uploads, *grants],
        )
        self.trigger = aws.glue.Trigger(
            f"{name}-keep-running",
            name=f"{name}-keep-running",
            type="SCHEDULED",
            schedule=f"cron(0/{processing.restart_minutes} * * * ? *)",
            start_on_creation=True,
            actions=[{"job_name": self.job.name}],
            tags=tags,
            opts=child,
        )
        self._replay(name, region, warehouse, archive, processing, kms_key_arn, tags, log_retention_days,
                     worker_type, uploads)  # fmt: skip
        # What to watch: Monitoring takes the link and reads these (CloudWatch dimension values).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "job": self.job.name,
        }
        self.register_outputs({"job": self.job.name, "replay_job": self.replay_job.name})

    def _runtime_statements(
        self, log_group: aws.cloudwatch.LogGroup, kms_key_arn: pulumi.Input[str], writes: list[str]
    ) -> list[dict]:
        """What a Glue job of the link needs beyond its grants: its code, the
        prefixes it writes, its logs, the key, its metrics and the network
        interfaces Glue places in the warehouse connection's subnet."""
        bucket = self.bucket.bucket
        return [
            statement(["s3:ListBucket"], [bucket.arn]),
            statement(["s3:GetObject"], [self.bucket.objects("code/")]),
            statement(
                ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"], [self.bucket.objects(p) for p in writes]
            ),
            log_write(log_group),
            kms_statements(kms_key_arn),
            statement(
                ["cloudwatch:PutMetricData"],
                ["*"],
                {"StringEquals": {"cloudwatch:namespace": ["Glue", CLOUDWATCH_NAMESPACE]}},
            ),
            statement(
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeRouteTables",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcAttribute",
                    "ec2:DescribeVpcEndpoints",
                    "ec2:DescribeVpcs",
                ],
                ["*"],
            ),
        ]

    def _replay(
        self,
        name: str,
        region: str,
        warehouse: Warehouse,
        archive: Archive,
        processing: ProcessingSpec,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        log_retention_days: int,
        worker_type: str,
        uploads: list[pulumi.Resource],
    ) -> None:
        """The replay job: started on demand, reads the archive or the dead
        letters, writes the warehouse, as a role that can do only that."""
        self.replay_log_group = encrypted_log_group(
            f"{name}-replay-logs",
            f"/aws-glue/jobs/{name}-replay",
            kms_key_arn=kms_key_arn,
            tags=tags,
            retention_days=log_retention_days,
            parent=self,
        )
        self.replay_role = service_role(f"{name}-replay", "glue.amazonaws.com", tags, self)
        grants = [
            archive.grant_read("replay", self.replay_role),
            *warehouse.grant_write("replay", self.replay_role),
            grant(
                f"{name}-replay-runtime",
                self.replay_role,
                self._runtime_statements(self.replay_log_group, kms_key_arn, ["staging/", "temp/"]),
                self,
            ),
        ]
        bucket = self.bucket.bucket
        arguments = pulumi.Output.all(
            archive.bucket.bucket.bucket,
            warehouse.workgroup.workgroup_name,
            bucket.bucket,
            warehouse.copy_role.arn,
            self.replay_log_group.name,
        ).apply(
            lambda v: replay_arguments(
                processing=processing,
                archive_bucket=v[0],
                region=region,
                workgroup=v[1],
                database=warehouse.database,
                bucket=v[2],
                copy_role_arn=v[3],
                log_group=v[4],
            )
        )
        self.replay_job = self._glue_job(
            f"{name}-replay",
            f"{name}-replay",
            self.replay_role,
            ("glueetl", "glue_replay_job.py"),
            arguments,
            worker_type,
            processing,
            warehouse,
            tags,
            depends_on=[*uploads, *grants],
            timeout=REPLAY_TIMEOUT_MINUTES,
        )

    def _glue_job(
        self,
        resource_name: str,
        job_name: str,
        role: aws.iam.Role,
        command: tuple[str, str],
        arguments: pulumi.Input[dict[str, str]],
        worker_type: str,
        processing: ProcessingSpec,
        warehouse: Warehouse,
        tags: dict[str, str],
        depends_on: list[pulumi.Resource],
        **extra,
    ) -> aws.glue.Job:
        """A job of the link: ``command`` is Glue's command name and the
        script under ``code/``; one run at a time (two streaming runs would
        commit the same batches, two replays could each miss the other's dead
        letters), no retries (a retry would replay what the run committed
        before it failed; a replay is started again by hand), in the
        warehouse's network, under the security configuration."""
        kind, script = command
        return aws.glue.Job(
            resource_name,
            name=job_name,
            role_arn=role.arn,
            glue_version=GLUE_VERSION,
            command={
                "name": kind,
                "script_location": self.bucket.bucket.bucket.apply(lambda b: f"s3://{b}/code/{script}"),
                "python_version": "3",
            },
            default_arguments=arguments,
            worker_type=worker_type,
            # With auto scaling, the ceiling; Glue needs at least two workers.
            number_of_workers=max(2, processing.max_workers),
            max_retries=0,
            execution_property={"max_concurrent_runs": 1},
            connections=[warehouse.connection.name],
            security_configuration=self.security_configuration.name,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            **extra,
        )
