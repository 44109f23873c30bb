"""The chain on GCP: Pub/Sub, Dataflow, BigQuery, Vertex AI, Cloud Run.

Needs the ``gcp`` extra (``pip install 'data-flow[gcp]'``). Use the whole
chain (``GcpChain``) or any link alone.
"""

from components.gcp.chain import GcpChain
from components.gcp.ingest import Ingest
from components.gcp.ml import Model
from components.gcp.monitoring import Monitoring
from components.gcp.process import Processing
from components.gcp.serve import Serve
from components.gcp.warehouse import Warehouse, WarehouseTable

__all__ = ["GcpChain", "Ingest", "Model", "Monitoring", "Processing", "Serve", "Warehouse", "WarehouseTable"]
