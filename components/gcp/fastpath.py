"""The fast path on GCP: a Firestore database of users' recent activity, and
the Cloud Run service that keeps it, behind a Pub/Sub push subscription.

``UserState`` is the store: a Firestore (Native mode) database of its own,
serverless and billed per operation, a TTL policy on ``expires_at``
(``fast_path.ttl_days`` after a user's last event), the chain's Cloud KMS
key when one is set (CMEK), deletion protection on, and no access but IAM:
``grant_write`` (``roles/datastore.user``) and ``grant_read``
(``roles/datastore.viewer``), each conditioned on this one database.

``FastPath`` is the service (the serving image,
``python -m pipeline_code.fastpath``), private and internal-only, behind a
push subscription on the chain's topic: Pub/Sub signs each push with an
OIDC token of a push identity that alone may invoke the service, retries
with backoff, and past ``dead_letters.max_delivery_attempts`` forwards the
message to the chain's dead-letter topic (the service agent may forward
from this subscription). Messages older than ``max_event_age_seconds`` are
no longer fresh and expire from the subscription.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.cloud_run import invoker, run_identity, run_service
from components.gcp.ingest import Ingest, seconds
from components.spec import DeadLetterSpec, FastPathSpec
from pipeline_code import host
from pipeline_code.userstate.firestore import TTL_FIELD

STORE_TYPE = "data-flow:gcp:UserState"
FUNCTION_TYPE = "data-flow:gcp:FastPath"
COLLECTION = "user_state"


class UserState(pulumi.ComponentResource):
    """The online store of each user's recent activity: one Firestore database.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        region: Region of the regional resources.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        kms_key_name: Cloud KMS key (``projects/.../cryptoKeys/...``) for customer-managed encryption.
            Default: None, Google-managed keys.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    database: gcp.firestore.Database
    location: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        region: str,
        labels: dict[str, str],
        kms_key_name: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(STORE_TYPE, name, None, opts)
        self.name = name
        self.project = project
        child = pulumi.ResourceOptions(parent=self)
        self.database = gcp.firestore.Database(
            f"{name}-db",
            project=project,
            name=name,
            location_id=region,
            type="FIRESTORE_NATIVE",
            concurrency_mode="OPTIMISTIC",
            cmek_config={"kms_key_name": kms_key_name} if kms_key_name else None,
            delete_protection_state="DELETE_PROTECTION_ENABLED",
            opts=child,
        )
        self.ttl = gcp.firestore.Field(
            f"{name}-ttl",
            project=project,
            database=self.database.name,
            collection=COLLECTION,
            field=TTL_FIELD,
            ttl_config={},
            # Only the TTL: no single-field index on the expiry is needed.
            index_config={},
            opts=child,
        )
        self.location = self.database.name.apply(
            lambda db: host.user_state("firestore", f"projects/{project}/databases/{db}/{COLLECTION}")
        )
        self.alert_targets: dict[str, pulumi.Input[str]] = {"database": self.database.name}
        self.register_outputs({"database": self.database.name, "location": self.location})

    def _grant(self, grantee: str, verb: str, role: str, member: pulumi.Input[str]) -> gcp.projects.IAMMember:
        # Firestore's roles are project-wide: the condition keeps this one to this database.
        return gcp.projects.IAMMember(
            f"{self.name}-{grantee}-{verb}",
            project=self.project,
            role=role,
            member=member,
            condition={
                "title": f"{self.name} only",
                "description": "This chain's user-state database and nothing else",
                "expression": self.database.name.apply(
                    lambda db: f'resource.name == "projects/{self.project}/databases/{db}"'
                ),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def grant_write(self, grantee: str, member: pulumi.Input[str]) -> gcp.projects.IAMMember:
        """Let ``member`` read and write users' states (the fast path)."""
        return self._grant(grantee, "writes", "roles/datastore.user", member)

    def grant_read(self, grantee: str, member: pulumi.Input[str]) -> gcp.projects.IAMMember:
        """Let ``member`` read users' states (the API)."""
        return self._grant(grantee, "reads", "roles/datastore.viewer", member)


class FastPath(pulumi.ComponentResource):
    """The stream service that applies each event to its user's state.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        project: GCP project id the resources live in.
        project_number: The project's number: the Pub/Sub service agent's identity is built from it.
        region: Region of the regional resources.
        ingest: The ingest link whose topic the subscription reads and whose dead-letter topic keeps
            what cannot be delivered.
        user_state: The store the service writes (``grant_write``).
        fast_path: ``data-flow:fast_path``: TTL, event age, memory and instance bounds.
        dead_letters: ``data-flow:dead_letters``: delivery attempts before a push is set aside.
        image: The serving image in Artifact Registry.
        labels: Labels on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    service: gcp.cloudrunv2.Service
    subscription: gcp.pubsub.Subscription

    def __init__(
        self,
        name: str,
        *,
        project: str,
        project_number: pulumi.Input[str],
        region: str,
        ingest: Ingest,
        user_state: UserState,
        fast_path: FastPathSpec,
        dead_letters: DeadLetterSpec,
        image: str,
        labels: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(FUNCTION_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account, member = run_identity(
            self,
            f"{name}-fresh",
            project=project,
            account_id=f"{name}-fresh",
            display_name="Data-Flow fast path",
        )
        self.service = run_service(
            self,
            f"{name}-fresh",
            project=project,
            region=region,
            identity=self.service_account,
            member=member,
            image=image,
            commands=["python", "-m", "pipeline_code.fastpath"],
            envs=[
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=host.ENV_USER_STATE, value=user_state.location
                ),
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name=host.ENV_USER_STATE_TTL_DAYS, value=str(fast_path.ttl_days)
                ),
            ],
            memory_mb=fast_path.memory_mb,
            min_instances=0,
            max_instances=fast_path.max_instances,
            probe_path="/live",
            labels=labels,
            pull_grant_name=f"{name}-fresh-pulls-image",
            grants=[user_state.grant_write("fast-path", member)],
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
        )
        # The identity Pub/Sub signs pushes as; it may invoke this service and nothing else.
        self.pusher, pusher_member = run_identity(
            self,
            f"{name}-push",
            project=project,
            account_id=f"{name}-push",
            display_name="Data-Flow fast-path push",
        )
        self.push_invokes = invoker(
            self, f"{name}-push-invokes", self.service, project=project, region=region, member=pusher_member
        )
        agent = pulumi.Output.concat(
            "serviceAccount:service-", project_number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        # The service agent mints the push's OIDC tokens as the push identity.
        self.agent_signs = gcp.serviceaccount.IAMMember(
            f"{name}-agent-signs-pushes",
            service_account_id=self.pusher.name,
            role="roles/iam.serviceAccountTokenCreator",
            member=agent,
            opts=child,
        )
        max_age = seconds(max(600, fast_path.max_event_age_seconds))
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-push",
            project=project,
            topic=ingest.topic.id,
            ack_deadline_seconds=30,
            message_retention_duration=max_age,
            retain_acked_messages=False,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=self.service.uri,
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=self.pusher.email, audience=self.service.uri
                ),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(minimum_backoff="1s", maximum_backoff="60s"),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=ingest.dead_letter_topic.id,
                max_delivery_attempts=dead_letters.max_delivery_attempts,
            ),
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.push_invokes, self.agent_signs]),
        )
        self.agent_forwards = gcp.pubsub.SubscriptionIAMMember(
            f"{name}-agent-forwards",
            project=project,
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=agent,
            opts=child,
        )
        self.alert_targets: dict[str, pulumi.Input[str]] = {
            "service": self.service.name,
            "subscription": self.subscription.name,
        }
        self.register_outputs({"service": self.service.name, "subscription": self.subscription.id})
