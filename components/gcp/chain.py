"""The whole chain on GCP, from one ``ChainSpec``.

    trackers -> Cloud Run (Collector) -> Pub/Sub (Ingest) -> Dataflow (Processing) -> BigQuery (Warehouse)
        -> Vertex AI (Model) -> Cloud Run (Serve), watched by Monitoring
    Pub/Sub push -> Cloud Run (FastPath) -> Firestore (UserState) -> read by Serve
    Pub/Sub Cloud Storage subscription -> Cloud Storage (Archive)

Each link is its own component and can be used alone; this one wires them:
the job reads the subscription Ingest created and writes the tables
Warehouse created, the API calls the endpoint Model created, and each
identity is granted exactly those resources. ``outputs()`` is the stack's
contract for other stacks (the same names on every cloud).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from components.gcp.archive import Archive
from components.gcp.collector import Collector
from components.gcp.fastpath import FastPath, UserState
from components.gcp.ingest import Ingest
from components.gcp.model import Model
from components.gcp.monitoring import Monitoring
from components.gcp.processing import Processing
from components.gcp.serve import Serve
from components.gcp.training import Training
from components.gcp.warehouse import Warehouse
from components.outputs import ChainOutputs
from components.spec import ChainSpec, SpecError

TYPE = "data-flow:gcp:Chain"


class GcpChain(pulumi.ComponentResource):
    """Every link of the chain on GCP.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        spec: The validated chain spec (``components.spec.load_spec``); its ``gcp`` section is required.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    def __init__(self, name: str, spec: ChainSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        if spec.cloud != "gcp" or spec.gcp is None:
            raise SpecError(
                f"GcpChain needs data-flow:cloud 'gcp' and a data-flow:gcp section (got {spec.cloud!r})"
            )
        super().__init__(TYPE, name, None, opts)
        g = spec.gcp
        labels = spec.house_labels()
        child = pulumi.ResourceOptions(parent=self)
        project_number = gcp.organizations.get_project_output(project_id=g.project).number

        self.ingest = Ingest(
            f"{name}-ingest",
            project=g.project,
            project_number=project_number,
            stream=spec.stream,
            dead_letters=spec.dead_letters,
            labels=labels,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.archive = Archive(
            f"{name}-archive",
            project=g.project,
            project_number=project_number,
            region=g.region,
            ingest=self.ingest,
            archive=spec.archive,
            stream=spec.stream,
            dead_letters=spec.dead_letters,
            labels=labels,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.warehouse = Warehouse(
            f"{name}-warehouse",
            project=g.project,
            location=g.region,
            warehouse=spec.warehouse,
            dead_letters=spec.dead_letters,
            labels=labels,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.processing = Processing(
            f"{name}-process",
            project=g.project,
            region=g.region,
            ingest=self.ingest,
            warehouse=self.warehouse,
            archive=self.archive,
            processing=spec.processing,
            image=g.pipeline_image,
            labels=labels,
            subnetwork=g.subnetwork,
            machine_type=g.machine_type,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.model = Model(
            f"{name}-ml",
            project=g.project,
            region=g.region,
            model=spec.model,
            image=g.model_server_image,
            artifact_uri=g.model_artifact_uri,
            labels=labels,
            network=g.network,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.training = Training(
            f"{name}-train",
            project=g.project,
            region=g.region,
            model_spec=spec.model,
            alerts=spec.alerts,
            warehouse=self.warehouse,
            model=self.model,
            image=g.training_image,
            labels=labels,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.user_state = UserState(
            f"{name}-state",
            project=g.project,
            region=g.region,
            labels=labels,
            kms_key_name=g.kms_key_name,
            opts=child,
        )
        self.fast_path = FastPath(
            f"{name}-fast",
            project=g.project,
            project_number=project_number,
            region=g.region,
            ingest=self.ingest,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            dead_letters=spec.dead_letters,
            image=g.api_image,
            labels=labels,
            opts=child,
        )
        self.serve = Serve(
            f"{name}-serve",
            project=g.project,
            region=g.region,
            model=self.model,
            user_state=self.user_state,
            fast_path=spec.fast_path,
            serve=spec.serve,
            image=g.api_image,
            labels=labels,
            opts=child,
        )
        self.collector = None
        if spec.collector.enabled:
            self.collector = Collector(
                f"{name}-collector",
                project=g.project,
                region=g.region,
                ingest=self.ingest,
                collector=spec.collector,
                image=g.api_image,
                labels=labels,
                opts=child,
            )
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            project=g.project,
            alerts=spec.alerts,
            ingest=self.ingest,
            processing=self.processing,
            model=self.model,
            fast_path=self.fast_path,
            user_state=self.user_state,
            archive=self.archive,
            training=self.training,
            labels=labels,
            opts=child,
        )
        self.register_outputs(dict(self.outputs()))

    def outputs(self) -> ChainOutputs:
        """What other stacks read (``pulumi.StackReference``); same keys on every cloud."""
        return ChainOutputs(
            ingest_endpoint=self.ingest.topic.id,
            dead_letter_location=self.ingest.dead_letter_topic.id,
            warehouse_location=self.warehouse.dataset.id,
            processing_job=self.processing.job.job_id,
            model_endpoint=self.model.endpoint.id,
            api_url=self.serve.url,
            collector_url=self.collector.url if self.collector else pulumi.Output.from_input(""),
            user_state_location=self.user_state.location,
            archive_location=self.archive.location,
            model_registry_location=self.training.location,
        )
