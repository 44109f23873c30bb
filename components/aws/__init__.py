"""The chain on AWS: Kinesis, Glue, Redshift Serverless, SageMaker, Lambda, DynamoDB,
Firehose.

Needs the ``aws`` extra (``pip install 'data-flow[aws]'``). Use the whole
chain (``Chain``, also named ``AwsChain``) or any link alone; every cloud
exports the same names (``__all__``), each link with the same grant verbs.
"""

from components.aws.archive import Archive
from components.aws.chain import AwsChain
from components.aws.collector import Collector
from components.aws.fastpath import FastPath, UserState
from components.aws.ingest import Ingest
from components.aws.model import Model
from components.aws.monitoring import Monitoring
from components.aws.processing import Processing
from components.aws.serve import Serve
from components.aws.training import Training
from components.aws.warehouse import Warehouse

Chain = AwsChain

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
