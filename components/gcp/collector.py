"""The collector on GCP: the ingest front door on Cloud Run.

Trackers (Segment's libraries, RudderStack SDKs) send to its URL; it checks
their write key and publishes to the Ingest topic. It is public on purpose
(browsers and apps call it) and authenticates callers itself, by write key.
The keys live in Secret Manager (``<name>-write-keys``; add a version with
``gcloud secrets versions add``), read at start through the service's secret
environment, never in config or state. Its own service account may publish
to that one topic, read that one secret, and pull its image. No local spill
on Cloud Run (its disk is memory): when Pub/Sub is down the collector
answers 503 after its retries, and trackers keep and resend the events.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.cloud_run import invoker, run_identity, run_service
from components.gcp.ingest import Ingest
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:gcp:Collector"


class Collector(pulumi.ComponentResource):
    """The collector on Cloud Run: Segment's tracking API in front of the topic.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        ingest: The ingest link (its stream is read or written, through its grant verbs).
        collector: ``data-flow:collector``: instance bound and memory of the collector.
        image: The image with the collector (the serving Dockerfile's) in Artifact Registry.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    service: gcp.cloudrunv2.Service
    write_keys: gcp.secretmanager.Secret
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        ingest: Ingest,
        collector: CollectorSpec,
        image: str,
        labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account, member = run_identity(
            self, f"{name}-sa", project=project, account_id=name, display_name="Data-Flow collector"
        )
        self.write_keys = gcp.secretmanager.Secret(
            f"{name}-write-keys",
            project=project,
            secret_id=f"{name}-write-keys",
            replication={"auto": {}},
            labels=labels,
            opts=child,
        )
        reads_keys = gcp.secretmanager.SecretIamMember(
            f"{name}-reads-write-keys",
            project=project,
            secret_id=self.write_keys.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=member,
            opts=child,
        )
        env = gcp.cloudrunv2.ServiceTemplateContainerEnvArgs
        secret = gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs
        self.service = run_service(
            self,
            f"{name}-service",
            project=project,
            region=region,
            identity=self.service_account,
            member=member,
            image=image,
            commands=["python", "-m", "pipeline_code.collector"],
            envs=[
                env(
                    name=host.ENV_COLLECTOR_SINK,
                    value=ingest.topic.id.apply(lambda t: host.sink("pubsub", t)),
                ),
                env(name=host.ENV_SPILL_MB, value="0"),
                *(
                    [env(name=host.ENV_ALLOWED_ORIGINS, value=",".join(collector.allowed_origins))]
                    if collector.allowed_origins
                    else []
                ),
                env(
                    name=host.ENV_WRITE_KEYS,
                    value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                        secret_key_ref=secret(secret=self.write_keys.secret_id, version="latest")
                    ),
                ),
            ],
            memory_mb=collector.memory_mb,
            min_instances=0,
            max_instances=collector.max_instances,
            probe_path="/live",
            labels=labels,
            pull_grant_name=f"{name}-pulls-image",
            grants=[ingest.grant_publish("collector", member), reads_keys],
        )
        # Public by design: trackers in browsers call it; it checks write keys itself.
        self.public_invoker = invoker(
            self, f"{name}-public", self.service, project=project, region=region, member="allUsers"
        )
        self.url = self.service.uri
        self.register_outputs({"url": self.url})
