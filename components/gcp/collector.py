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

from components.gcp.ingest import Ingest
from components.gcp.process import grant_image_pull
from components.spec import CollectorSpec
from pipeline_code import host

TYPE = "data-flow:gcp:Collector"


class Collector(pulumi.ComponentResource):
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
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=project,
            account_id=f"{name}"[:30],
            display_name="Data-Flow collector",
            opts=child,
        )
        member = self.service_account.email.apply(lambda e: f"serviceAccount:{e}")
        self.write_keys = gcp.secretmanager.Secret(
            f"{name}-write-keys",
            project=project,
            secret_id=f"{name}-write-keys",
            replication={"auto": {}},
            labels=labels,
            opts=child,
        )
        grants = [
            ingest.grant_publish("collector", member),
            grant_image_pull(self, f"{name}-pulls-image", image, member),
            gcp.secretmanager.SecretIamMember(
                f"{name}-reads-write-keys",
                project=project,
                secret_id=self.write_keys.secret_id,
                role="roles/secretmanager.secretAccessor",
                member=member,
                opts=child,
            ),
        ]
        env = gcp.cloudrunv2.ServiceTemplateContainerEnvArgs
        self.service = gcp.cloudrunv2.Service(
            f"{name}-service",
            project=project,
            location=region,
            ingress="INGRESS_TRAFFIC_ALL",
            deletion_protection=False,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=self.service_account.email,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=0, max_instance_count=collector.max_instances
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=image,
                        commands=["python", "-m", "pipeline_code.collector"],
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=8080),
                        envs=[
                            env(
                                name=host.ENV_COLLECTOR_SINK,
                                value=ingest.topic.id.apply(lambda t: host.sink("pubsub", t)),
                            ),
                            env(name=host.ENV_SPILL_MB, value="0"),
                            env(
                                name=host.ENV_WRITE_KEYS,
                                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                                        secret=self.write_keys.secret_id, version="latest"
                                    )
                                ),
                            ),
                        ],
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": f"{collector.memory_mb}Mi"}
                        ),
                        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                path="/live"
                            )
                        ),
                    )
                ],
            ),
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )
        # Public by design: trackers in browsers call it; it checks write keys itself.
        self.public_invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-public",
            project=project,
            location=region,
            name=self.service.name,
            role="roles/run.invoker",
            member="allUsers",
            opts=child,
        )
        self.url = self.service.uri
        self.register_outputs({"url": self.url})
