"""The chain on Azure: Event Hubs, Data Factory + Synapse Spark, Synapse SQL, Azure ML, Functions,
Table storage.

Needs the ``azure`` extra (``pip install 'data-flow[azure]'``). Use the whole
chain (``Chain``, also named ``AzureChain``) or any link alone; every cloud
exports the same names (``__all__``), each link with the same grant verbs.
"""

from components.azure.archive import Archive
from components.azure.chain import AzureChain
from components.azure.collector import Collector
from components.azure.fastpath import FastPath, UserState
from components.azure.ingest import Ingest
from components.azure.model import Model
from components.azure.monitoring import Monitoring
from components.azure.processing import Processing
from components.azure.serve import Serve
from components.azure.training import Training
from components.azure.warehouse import Warehouse

Chain = AzureChain

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
