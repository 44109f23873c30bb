"""The slow path on GCP: a scheduled export, a Vertex AI custom job that
gates, publishes and rolls out, and the model registry it keeps.

    Cloud Scheduler (model.retrain - 30 min) -> BigQuery jobs.insert: EXPORT DATA to Parquet in GCS
    Cloud Scheduler (model.retrain) -> Vertex AI customJobs.create (the training image)
        -> gate against models/production/ -> publish to models/ -> canary split, then undeploy the old

Why an export: the custom job reads Parquet through Vertex AI's Cloud
Storage FUSE mount (``/gcs/BUCKET``), so it needs no BigQuery access, and
``EXPORT DATA`` is one query a day (billed by the bytes it scans of
``events``). The registry bucket is private (uniform access, public access
prevention), versioned, encrypted with the chain's key when one is set; it
keeps ``training/latest/`` (the export), ``models/`` (every version,
``production/``, ``LATEST``, ``promotions.jsonl``) and ``jobs/`` (Vertex
AI's output, deleted after 30 days).

Identities, each with exactly its grants:

- the scheduler's account runs the export (a job user reading ``events``,
  writing the bucket) and creates custom jobs as the job's account (a custom
  role with ``aiplatform.customJobs.create`` only, and ``actAs`` on that
  one account);
- the job's account uses the bucket, pulls the training image, appends its
  decisions to ``model_versions`` (``grant_record_models``), and deploys:
  a custom role with the model-upload and endpoint-deploy permissions only,
  and ``actAs`` on the endpoint's serving account.

Scheduler jobs with ``model.retrain`` null are created paused: ``gcloud
scheduler jobs run`` starts one on demand. ``python -m pipeline_code.ml.job
--rollback`` as the same custom job rolls back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.gcp.model import MACHINE_TYPES, Model
from components.gcp.processing import grant_image_pull, image_repository
from components.gcp.storage import delete, private_bucket
from components.gcp.warehouse import Warehouse
from components.spec import DEFAULT_RETRAIN, AlertSpec, ModelSpec, retrain_times
from pipeline_code.ml.export import export_sql
from pipeline_code.ml.publish import HEALTH_KEY

TYPE = "data-flow:gcp:Training"
DEPLOYER_PERMISSIONS = (
    "aiplatform.endpoints.deploy",
    "aiplatform.endpoints.get",
    "aiplatform.endpoints.undeploy",
    "aiplatform.endpoints.update",
    "aiplatform.models.get",
    "aiplatform.models.upload",
    "aiplatform.operations.get",
)
LAUNCHER_PERMISSIONS = ("aiplatform.customJobs.create",)


def export_query(project: str, dataset: str, bucket: str) -> str:
    """``EXPORT DATA`` of ``ml.export.export_sql`` to Parquet, over the last export."""
    select = export_sql("bigquery").replace("FROM events", f"FROM `{project}.{dataset}.events`")
    return (
        f"EXPORT DATA OPTIONS (uri = 'gs://{bucket}/training/latest/part-*.parquet', "
        f"format = 'PARQUET', overwrite = true) AS {select}"
    )


def custom_job(
    *,
    name: str,
    image: str,
    bucket: str,
    service_account: str,
    machine_type: str,
    tolerance: float,
    rollout: str,
    project: str,
    dataset: str,
    kms_key_name: str | None,
) -> dict[str, Any]:
    """The CustomJob the schedule creates (REST JSON)."""
    job: dict[str, Any] = {
        "displayName": f"{name}-run",
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {"machineType": machine_type},
                    "replicaCount": "1",
                    "containerSpec": {
                        "imageUri": image,
                        "args": [
                            "--training-data",
                            f"/gcs/{bucket}/training/latest",
                            "--production",
                            f"/gcs/{bucket}/models/production",
                            "--registry",
                            f"gs://{bucket}/models/",
                            "--model-out",
                            "/tmp/model",
                            "--tolerance",
                            str(tolerance),
                        ],
                        "env": [
                            {"name": "ROLLOUT", "value": rollout},
                            {"name": "WAREHOUSE", "value": f"bigquery:{project}.{dataset}"},
                        ],
                    },
                }
            ],
            "serviceAccount": service_account,
            "baseOutputDirectory": {"outputUriPrefix": f"gs://{bucket}/jobs/"},
            "scheduling": {"timeout": "14400s"},
        },
        "labels": {"app": "data-flow", "link": "training"},
    }
    if kms_key_name:
        job["encryptionSpec"] = {"kmsKeyName": kms_key_name}
    return job


class Training(pulumi.ComponentResource):
    """The export and training schedules, the custom job's identity, and the model registry.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        model_spec: ``data-flow:model``: the schedule, the gate's tolerance, the canary and bake.
        alerts: ``data-flow:alerts``: (read by Monitoring) refusals in a row, the served model's age.
        warehouse: The warehouse link the export reads (its ``events`` table).
        model: The model link whose endpoint the job rolls out to.
        image: The training image in Artifact Registry (``pipeline_code/ml/Dockerfile``).
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    bucket: gcp.storage.Bucket
    service_account: gcp.serviceaccount.Account
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        model_spec: ModelSpec,
        alerts: AlertSpec,
        warehouse: Warehouse,
        model: Model,
        image: str,
        labels: dict[str, str],
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        image_repository(image)  # fail here, naming the image
        self.bucket = private_bucket(
            self,
            f"{name}-registry",
            project=project,
            region=region,
            labels=labels,
            rules=[delete(30, prefixes=["jobs/"]), delete(30, archived=True)],
            versioned=True,
            kms_key_name=kms_key_name,
        )

        def account(key: str, title: str) -> gcp.serviceaccount.Account:
            return gcp.serviceaccount.Account(
                f"{name}-{key}",
                project=project,
                account_id=f"{name}-{key}"[:30],
                display_name=title,
                opts=child,
            )

        def member(a: gcp.serviceaccount.Account) -> pulumi.Output[str]:
            return a.email.apply(lambda e: f"serviceAccount:{e}")

        def role_id(key: str) -> str:
            return f"{name}_{key}".replace("-", "_")

        def custom_role(key: str, title: str, permissions: tuple[str, ...]) -> gcp.projects.IAMCustomRole:
            return gcp.projects.IAMCustomRole(
                f"{name}-{key}",
                project=project,
                role_id=role_id(key),
                title=title,
                permissions=list(permissions),
                opts=child,
            )

        self.service_account = account("job", "Data-Flow training job")
        self.scheduler_account = account("scheduler", "Data-Flow training scheduler")
        job, scheduler = member(self.service_account), member(self.scheduler_account)
        self.deployer = custom_role("deployer", "Data-Flow model rollout", DEPLOYER_PERMISSIONS)
        self.launcher = custom_role("launcher", "Data-Flow training launcher", LAUNCHER_PERMISSIONS)

        def bucket_member(key: str, who: pulumi.Input[str]) -> gcp.storage.BucketIAMMember:
            return gcp.storage.BucketIAMMember(
                f"{name}-{key}",
                bucket=self.bucket.name,
                role="roles/storage.objectAdmin",
                member=who,
                opts=child,
            )

        def project_member(
            key: str, role: str, who: pulumi.Input[str], after: pulumi.Resource | None = None
        ) -> gcp.projects.IAMMember:
            # A custom role's full name is known before it exists: bind it by name, after it.
            opts = pulumi.ResourceOptions(parent=self, depends_on=[after]) if after else child
            return gcp.projects.IAMMember(f"{name}-{key}", project=project, role=role, member=who, opts=opts)

        def act_as(
            key: str, target: pulumi.Input[str], who: pulumi.Input[str]
        ) -> gcp.serviceaccount.IAMMember:
            return gcp.serviceaccount.IAMMember(
                f"{name}-{key}",
                service_account_id=target,
                role="roles/iam.serviceAccountUser",
                member=who,
                opts=child,
            )

        self.grants: list[pulumi.Resource] = [
            bucket_member("job-uses-registry", job),
            grant_image_pull(self, f"{name}-job-pulls-image", image, job),
            project_member(
                "job-deploys", f"projects/{project}/roles/{role_id('deployer')}", job, after=self.deployer
            ),
            act_as(
                "job-acts-as-server",
                pulumi.Output.concat("projects/", project, "/serviceAccounts/", model.service_account.email),
                job,
            ),
            # The export: a query job reading events, writing the bucket.
            project_member("scheduler-runs-queries", "roles/bigquery.jobUser", scheduler),
            warehouse.tables["events"].grant_read("training-export", scheduler),
            bucket_member("scheduler-exports", scheduler),
            # The training run: create custom jobs, as the job's account only.
            project_member(
                "scheduler-launches",
                f"projects/{project}/roles/{role_id('launcher')}",
                scheduler,
                after=self.launcher,
            ),
            act_as(
                "scheduler-acts-as-job",
                pulumi.Output.concat("projects/", project, "/serviceAccounts/", self.service_account.email),
                scheduler,
            ),
        ]
        # Its decisions, in the warehouse's model_versions and nowhere else.
        self.grants += warehouse.grant_record_models("training", job)
        # The endpoint's serving account reads the versions the job rolls out.
        self.grants.append(self.grant_read("server", member(model.service_account)))

        rollout = pulumi.Output.all(model.endpoint.name, model.service_account.email, model.model_id).apply(
            lambda v: json.dumps(
                {
                    "platform": "vertex",
                    "project": project,
                    "location": region,
                    "endpoint_id": v[0],
                    "model_id": v[2],
                    "image": model.image,
                    "machine_type": model.machine_type,
                    "min_replicas": model.min_replicas,
                    "max_replicas": model.max_replicas,
                    "service_account": v[1],
                    "kms_key_name": kms_key_name,
                    "canary_percent": model_spec.canary_percent,
                    "bake_seconds": model_spec.bake_minutes * 60,
                },
                sort_keys=True,
            )
        )
        self.job_body = pulumi.Output.all(
            self.bucket.name, self.service_account.email, rollout, warehouse.dataset.dataset_id
        ).apply(
            lambda v: custom_job(
                name=name,
                image=image,
                bucket=v[0],
                service_account=v[1],
                machine_type=MACHINE_TYPES[model_spec.training_size],
                tolerance=model_spec.tolerance,
                rollout=v[2],
                project=project,
                dataset=v[3],
                kms_key_name=kms_key_name,
            )
        )
        self.export_body = pulumi.Output.all(warehouse.dataset.dataset_id, self.bucket.name).apply(
            lambda v: {
                "configuration": {
                    "query": {"query": export_query(project, v[0], v[1]), "useLegacySql": False},
                    "labels": {"app": "data-flow", "link": "training-export"},
                }
            }
        )
        times = retrain_times(model_spec)
        export_cron, train_cron = times or retrain_times(ModelSpec(retrain=DEFAULT_RETRAIN))  # type: ignore[misc]

        def scheduled(key: str, cron: str, uri: str, body: pulumi.Output[dict]) -> gcp.cloudscheduler.Job:
            return gcp.cloudscheduler.Job(
                f"{name}-{key}",
                project=project,
                region=region,
                name=f"{name}-{key}",
                description=f"Data-Flow: {key} (model.retrain)",
                schedule=cron,
                time_zone="Etc/UTC",
                paused=times is None,
                attempt_deadline="320s",
                retry_config=gcp.cloudscheduler.JobRetryConfigArgs(retry_count=3, min_backoff_duration="60s"),
                http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    uri=uri,
                    http_method="POST",
                    headers={"Content-Type": "application/json"},
                    body=body.apply(
                        lambda b: base64.b64encode(json.dumps(b, sort_keys=True).encode()).decode()
                    ),
                    oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                        service_account_email=self.scheduler_account.email,
                        scope="https://www.googleapis.com/auth/cloud-platform",
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
            )

        self.export_job = scheduled(
            "export",
            export_cron,
            f"https://bigquery.googleapis.com/bigquery/v2/projects/{project}/jobs",
            self.export_body,
        )
        self.run_job = scheduled(
            "run",
            train_cron,
            f"https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/customJobs",
            self.job_body,
        )
        self.location = self.bucket.name.apply(lambda b: f"gs://{b}/models/")
        # What to watch: Monitoring takes the link and reads these (the key of the job's health line).
        self.alert_targets: dict[str, pulumi.Input[str]] = {"marker": HEALTH_KEY}
        self.register_outputs({"location": self.location, "service_account": self.service_account.email})

    def grant_read(self, grantee: str, member: pulumi.Input[str]) -> gcp.storage.BucketIAMMember:
        """Let ``member`` read the registry's model versions (the serving account, a reviewer)."""
        return gcp.storage.BucketIAMMember(
            f"{self.name}-{grantee}-reads",
            bucket=self.bucket.name,
            role="roles/storage.objectViewer",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
