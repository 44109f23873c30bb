"""The chain on AWS: Kinesis, Glue, Redshift Serverless, SageMaker, Lambda.

Needs the ``aws`` extra (``pip install 'data-flow[aws]'``). Use the whole
chain (``AwsChain``) or any link alone.
"""

from components.aws.chain import AwsChain
from components.aws.ingest import Ingest
from components.aws.ml import Model
from components.aws.monitoring import Monitoring
from components.aws.process import Processing
from components.aws.security import PrivateBucket
from components.aws.serve import Serve
from components.aws.warehouse import Warehouse

__all__ = ["AwsChain", "Ingest", "Model", "Monitoring", "PrivateBucket", "Processing", "Serve", "Warehouse"]
