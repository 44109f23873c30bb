"""The offline engine: run a Pulumi program under the engine's mocks and
record what it declares.

``run_program(build)`` runs ``build`` the way ``pulumi preview`` runs
``__main__.py``, with ``pulumi.runtime.set_mocks`` standing in for the
engine (not for any cloud), waits until every resource is registered, and
returns the recorded resources with their inputs, parents and ``protect``.
The tests assert on them; ``dataflow plan`` renders them.

Computed outputs (ids, ARNs, endpoints) are placeholders in each cloud's
shape, from fixed fake accounts below, so a plan is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

PROJECT_NUMBER = "123456789012"
AWS_ACCOUNT = "210987654321"
AWS_REGION = "eu-west-1"
AZURE_SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
AZURE_TENANT = "99999999-8888-7777-6666-555555555555"


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    id: str
    parent: str | None = None
    protect: bool = False


class _Monitor(pulumi.runtime.mocks.MockMonitor):
    """The mock engine, also noting each registration's parent and ``protect``
    (the mocks' own callback does not see resource options)."""

    def __init__(self, mocks: Recorder) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request):
        if request.type != "pulumi:pulumi:Stack":
            parts = request.parent.split("::")
            # The stack itself is every top-level resource's parent: not shown.
            parent_type = parts[2].split("$")[-1] if len(parts) == 4 else ""
            # "type name": names alone repeat (a component and its main child share one).
            parent = (
                f"{parent_type} {parts[3]}" if parent_type and parent_type != "pulumi:pulumi:Stack" else None
            )
            self.recorder.options[(request.type, request.name)] = (parent, bool(request.protect))
            if request.ignoreChanges:
                self.recorder.ignored[(request.type, request.name)] = list(request.ignoreChanges)
        return super().RegisterResource(request)


@dataclass
class Recorder(pulumi.runtime.Mocks):
    resources: list[Declared] = field(default_factory=list)
    options: dict[tuple[str, str], tuple[str | None, bool]] = field(default_factory=dict)
    # ignore_changes by (type, name): properties a later update leaves alone.
    ignored: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # Outputs of other stacks, by fully qualified name, for StackReference.
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        state = dict(inputs)
        physical = inputs.get("name") or args.name
        project = inputs.get("project", "p")
        rid = f"{args.name}-id"
        t = args.typ
        if t == "gcp:serviceaccount/account:Account":
            state["email"] = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
        elif t == "gcp:pubsub/topic:Topic":
            rid, state["name"] = f"projects/{project}/topics/{physical}", physical
        elif t == "gcp:pubsub/subscription:Subscription":
            rid, state["name"] = f"projects/{project}/subscriptions/{physical}", physical
        elif t == "gcp:bigquery/dataset:Dataset":
            rid = f"projects/{project}/datasets/{inputs['datasetId']}"
        elif t == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
            state["jobId"], state["name"] = "2026-11-24_00_00_00-1", physical
        elif t == "gcp:vertex/aiEndpoint:AiEndpoint":
            rid = f"projects/{project}/locations/{inputs['location']}/endpoints/{inputs['name']}"
        elif t == "gcp:cloudrunv2/service:Service":
            state["name"], state["uri"] = physical, f"https://{physical}-abc-ew.a.run.app"
        elif t == "gcp:storage/bucket:Bucket":
            state["name"], state["url"] = physical, f"gs://{physical}"
        elif t == "gcp:storage/bucketObject:BucketObject":
            state["name"] = physical
        elif t == "pulumi:pulumi:StackReference":
            state["outputs"] = self.stack_outputs.get(inputs.get("name") or args.name, {})
            state["secretOutputNames"] = []
        elif t.startswith("aws:"):
            rid, state = _aws_state(t, args.name, inputs, state)
        elif t.startswith("azure-native:"):
            rid, state = _azure_state(t, args.name, inputs, state)
        self.resources.append(Declared(t, args.name, inputs, rid))
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": PROJECT_NUMBER, "projectId": args.args.get("projectId")}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": AWS_ACCOUNT,
                "arn": f"arn:aws:iam::{AWS_ACCOUNT}:user/deployer",
                "userId": "AID",
            }
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": AZURE_SUBSCRIPTION,
                "tenantId": AZURE_TENANT,
                "clientId": "c",
                "objectId": "o",
            }
        if args.token == "azuread:index/getServicePrincipal:getServicePrincipal":
            client_id = args.args.get("clientId", "")
            return {"clientId": client_id, "objectId": f"sp-{client_id}", "appRoleAssignmentRequired": True}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args["id"], "availabilityZone": f"{AWS_REGION}a", "vpcId": "vpc-0abc1234"}
        raise AssertionError(f"unexpected invoke {args.token}")

    # Queries for the tests.
    def of_type(self, suffix: str) -> list[Declared]:
        return [r for r in self.resources if r.type.endswith(suffix)]

    def one(self, suffix: str, name: str | None = None) -> Declared:
        found = [r for r in self.of_type(suffix) if name is None or r.name == name]
        assert len(found) == 1, f"{len(found)} resources of {suffix} named {name}: {[r.name for r in found]}"
        return found[0]

    def iam(self) -> list[Declared]:
        return [r for r in self.resources if "IAMMember" in r.type or "IamMember" in r.type]


def _aws_state(t: str, name: str, inputs: dict, state: dict) -> tuple[str, dict]:
    """Computed outputs AWS would return, in the shapes the provider uses."""
    service = t.split(":")[1].split("/")[0]
    physical = inputs.get("name") or inputs.get("workgroupName") or inputs.get("namespaceName") or name
    state.setdefault("name", physical)
    state["arn"] = f"arn:aws:{service}:{AWS_REGION}:{AWS_ACCOUNT}:{t.rsplit(':', 1)[1].lower()}/{physical}"
    rid = f"{name}-id"
    if t == "aws:s3/bucket:Bucket":
        state["bucket"], state["arn"] = name, f"arn:aws:s3:::{name}"
        rid = name
    elif t == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{AWS_ACCOUNT}:role/{name}"
        rid = name
    elif t == "aws:kms/key:Key":
        state["keyId"] = "1234abcd-12ab-34cd-56ef-1234567890ab"
        state["arn"] = f"arn:aws:kms:{AWS_REGION}:{AWS_ACCOUNT}:key/{state['keyId']}"
    elif t == "aws:redshiftserverless/namespace:Namespace":
        state["adminPasswordSecretArn"] = f"arn:aws:secretsmanager:{AWS_REGION}:{AWS_ACCOUNT}:secret:rs-admin"
    elif t == "aws:lambda/functionUrl:FunctionUrl":
        state["functionUrl"] = "https://abc123.lambda-url.eu-west-1.on.aws/"
    elif t == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{AWS_REGION}:{AWS_ACCOUNT}:log-group:{physical}"
    return rid, state


def _azure_state(t: str, name: str, inputs: dict, state: dict) -> tuple[str, dict]:
    """Computed outputs Azure would return: ARM ids, names, identities, endpoints."""
    kind = t.split(":")[2]
    physical = name
    # The resource's own name input, where its type has one (not its parent's).
    own = {
        "Namespace": "namespaceName", "EventHub": "eventHubName", "StorageAccount": "accountName",
        "BlobContainer": "containerName", "SqlPool": "sqlPoolName", "BigDataPool": "bigDataPoolName",
        "Pipeline": "pipelineName", "Trigger": "triggerName", "LinkedService": "linkedServiceName",
        "OnlineEndpoint": "endpointName", "OnlineDeployment": "deploymentName", "Vault": "vaultName",
        "ConsumerGroup": "consumerGroupName",
    }.get(kind)  # fmt: skip
    if own and inputs.get(own):
        physical = inputs[own]
    elif kind not in ("EnvironmentVersion", "ModelVersion") and isinstance(inputs.get("name"), str):
        physical = inputs["name"]
    rg = inputs.get("resourceGroupName", "rg")
    provider = t.split(":")[1]
    rid = f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{rg}/providers/{provider}/{kind}/{physical}"
    state["name"] = physical
    if kind == "ResourceGroup":
        rid = f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{name}"
    if "identity" in inputs:
        state["identity"] = {
            **inputs["identity"],
            "principalId": f"principal-{name}",
            "tenantId": AZURE_TENANT,
        }
    if kind == "UserAssignedIdentity":
        # What Entra ID assigns a user-assigned identity.
        state |= {"principalId": f"principal-{name}", "clientId": f"client-{name}", "tenantId": AZURE_TENANT}
    if kind == "Workspace" and "synapse" in t:
        state["connectivityEndpoints"] = {
            "sql": f"{name}.sql.azuresynapse.net",
            "dev": f"https://{name}.dev.azuresynapse.net",
        }
    if kind == "OnlineEndpoint":
        state["properties"] = {
            **inputs.get("properties", {}),
            "scoringUri": f"https://{physical}.westeurope.inference.ml.azure.com/score",
        }
    if kind == "WebApp":
        state["defaultHostName"] = f"{name}.azurewebsites.net"
    if kind == "Component":
        state["connectionString"] = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    return rid, state


def run_program(
    build, stack: str = "test", stack_outputs: dict[str, dict[str, Any]] | None = None
) -> tuple[Recorder, Any]:
    """Run ``build()`` under mocks; returns the recorder and what it returned."""
    import asyncio

    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # a previous asyncio.run() closed and unset it: Pulumi's runtime needs one
        asyncio.set_event_loop(asyncio.new_event_loop())
    recorder = Recorder(stack_outputs=stack_outputs or {})
    pulumi.runtime.set_mocks(
        recorder, project="data-flow", stack=stack, preview=False, monitor=_Monitor(recorder)
    )
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        result["value"] = build()

    program()
    for r in recorder.resources:
        r.parent, r.protect = recorder.options.get((r.type, r.name), (None, False))
    return recorder, result["value"]


def resolved(output: pulumi.Output) -> Any:
    """The value of an Output from a finished program run."""
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(output.future())
