"""The chain on Azure: Event Hubs, Data Factory + Synapse Spark, Synapse SQL, Azure ML, Functions.

Needs the ``azure`` extra (``pip install 'data-flow[azure]'``). Use the whole
chain (``AzureChain``) or any link alone.
"""

from components.azure.chain import AzureChain
from components.azure.ingest import Ingest
from components.azure.ml import Model
from components.azure.monitoring import Monitoring
from components.azure.process import Processing
from components.azure.security import Lake
from components.azure.serve import Serve
from components.azure.warehouse import Warehouse

__all__ = ["AzureChain", "Ingest", "Lake", "Model", "Monitoring", "Processing", "Serve", "Warehouse"]
