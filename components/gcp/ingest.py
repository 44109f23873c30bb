"""Ingest on GCP: a Pub/Sub topic with the event schema, the pipeline's
subscription, and a dead-letter topic that keeps what cannot be delivered.

Secure by default: the topic enforces the event contract at publish time
(``enforce_schema``), messages are retained for the spec's window even once
read, nothing may publish or subscribe until granted (``grant_publish``,
``grant_consume``), and a customer-managed key encrypts both topics when
one is configured. The Pub/Sub service agent gets exactly the two grants
dead-lettering needs: publish on the dead-letter topic, subscribe on the
source subscription.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from components.spec import DeadLetterSpec, StreamSpec

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "pipeline_code" / "schemas" / "event.v1.proto"
TYPE = "data-flow:gcp:Ingest"


def seconds(n: int) -> str:
    """A Pub/Sub duration string."""
    return f"{n}s"


class Ingest(pulumi.ComponentResource):
    """The stream events arrive on, and the pipeline's subscription to it.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        project_number: The project's number: the Pub/Sub service agent's identity is built from it.
        stream: ``data-flow:stream``: retention, expected throughput, ack deadline, schema enforcement.
        dead_letters: ``data-flow:dead_letters``: delivery attempts, retention of set-aside events and
            of the dead-letter table.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    topic: gcp.pubsub.Topic
    subscription: gcp.pubsub.Subscription
    dead_letter_topic: gcp.pubsub.Topic
    dead_letter_subscription: gcp.pubsub.Subscription
    schema: gcp.pubsub.Schema | None

    def __init__(
        self,
        name: str,
        *,
        project: str,
        project_number: pulumi.Input[str],
        stream: StreamSpec,
        dead_letters: DeadLetterSpec,
        labels: dict[str, str],
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.project = project
        child = pulumi.ResourceOptions(parent=self)
        retention = seconds(stream.retention_hours * 3600)

        self.schema = None
        schema_settings = None
        if stream.enforce_schema:
            self.schema = gcp.pubsub.Schema(
                f"{name}-schema",
                project=project,
                name=f"{name}-event-v1",
                type="PROTOCOL_BUFFER",
                definition=SCHEMA_FILE.read_text(encoding="utf-8"),
                opts=child,
            )
            # Trackers send JSON; Pub/Sub checks it with proto3's JSON mapping.
            schema_settings = gcp.pubsub.TopicSchemaSettingsArgs(schema=self.schema.id, encoding="JSON")

        self.topic = gcp.pubsub.Topic(
            f"{name}-events",
            project=project,
            schema_settings=schema_settings,
            message_retention_duration=retention,
            kms_key_name=kms_key_name,
            labels=labels,
            opts=child,
        )
        self.dead_letter_topic = gcp.pubsub.Topic(
            f"{name}-dead-letters",
            project=project,
            message_retention_duration=seconds(dead_letters.retention_days * 86400),
            kms_key_name=kms_key_name,
            labels=labels,
            opts=child,
        )
        # Without a subscription, messages on the dead-letter topic are lost.
        self.dead_letter_subscription = gcp.pubsub.Subscription(
            f"{name}-dead-letters",
            project=project,
            topic=self.dead_letter_topic.id,
            message_retention_duration=seconds(dead_letters.retention_days * 86400),
            retain_acked_messages=False,
            ack_deadline_seconds=60,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            labels=labels,
            opts=child,
        )
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-pipeline",
            project=project,
            topic=self.topic.id,
            ack_deadline_seconds=stream.ack_deadline_seconds,
            message_retention_duration=retention,
            retain_acked_messages=False,
            # An idle subscription must not expire: that would silently drop the stream.
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=self.dead_letter_topic.id,
                max_delivery_attempts=dead_letters.max_delivery_attempts,
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            labels=labels,
            opts=child,
        )

        agent = pulumi.Output.concat(
            "serviceAccount:service-", project_number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        self.agent_publishes_dead_letters = gcp.pubsub.TopicIAMMember(
            f"{name}-agent-publishes-dead-letters",
            project=project,
            topic=self.dead_letter_topic.name,
            role="roles/pubsub.publisher",
            member=agent,
            opts=child,
        )
        self.agent_forwards_from_subscription = gcp.pubsub.SubscriptionIAMMember(
            f"{name}-agent-forwards",
            project=project,
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=agent,
            opts=child,
        )
        # What to watch: Monitoring takes the link and reads these (Pub/Sub ids).
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "subscription": self.subscription.name,
            "dead_letter_topic": self.dead_letter_topic.name,
        }
        self.register_outputs(
            {
                "topic": self.topic.id,
                "subscription": self.subscription.id,
                "dead_letter_topic": self.dead_letter_topic.id,
                "dead_letter_subscription": self.dead_letter_subscription.id,
            }
        )

    def grant_publish(self, grantee: str, member: pulumi.Input[str]) -> gcp.pubsub.TopicIAMMember:
        """Let ``member`` publish events to the topic, and nothing else."""
        return gcp.pubsub.TopicIAMMember(
            f"{self.name}-{grantee}-publishes",
            project=self.project,
            topic=self.topic.name,
            role="roles/pubsub.publisher",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def grant_consume(self, grantee: str, member: pulumi.Input[str]) -> list[pulumi.Resource]:
        """Let ``member`` pull and acknowledge from the pipeline's subscription
        (and read its settings, which the Dataflow reader checks at start)."""
        return [
            gcp.pubsub.SubscriptionIAMMember(
                f"{self.name}-{grantee}-{verb}",
                project=self.project,
                subscription=self.subscription.name,
                role=role,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for verb, role in (("subscribes", "roles/pubsub.subscriber"), ("views", "roles/pubsub.viewer"))
        ]

    def grant_read_dead_letters(
        self, grantee: str, member: pulumi.Input[str]
    ) -> gcp.pubsub.SubscriptionIAMMember:
        """Let ``member`` drain the dead-letter subscription (to inspect or replay)."""
        return gcp.pubsub.SubscriptionIAMMember(
            f"{self.name}-{grantee}-reads-dead-letters",
            project=self.project,
            subscription=self.dead_letter_subscription.name,
            role="roles/pubsub.subscriber",
            member=member,
            opts=pulumi.ResourceOptions(parent=self),
        )
