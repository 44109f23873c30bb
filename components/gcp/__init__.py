"""The chain on GCP: Pub/Sub, Dataflow, BigQuery, Vertex AI, Cloud Run, Firestore,
Cloud Storage.

Needs the ``gcp`` extra (``pip install 'data-flow[gcp]'``). Use the whole
chain (``Chain``, also named ``GcpChain``) or any link alone; every cloud
exports the same names (``__all__``), each link with the same grant verbs.
"""

from components.gcp.archive import Archive
from components.gcp.chain import GcpChain
from components.gcp.collector import Collector
from components.gcp.fastpath import FastPath, UserState
from components.gcp.ingest import Ingest
from components.gcp.model import Model
from components.gcp.monitoring import Monitoring
from components.gcp.processing import Processing
from components.gcp.serve import Serve
from components.gcp.training import Training
from components.gcp.warehouse import Warehouse

Chain = GcpChain

# The same public names on every cloud; helpers of one cloud stay importable, not listed.
__all__ = [
    "Archive",
    "Chain",
    "Collector",
    "FastPath",
    "Ingest",
    "Model",
    "Monitoring",
    "Processing",
    "Serve",
    "Training",
    "UserState",
    "Warehouse",
]
