"""The Functions host's entry file: the one image serves the API or, by
``DATAFLOW_APP``, the collector (``collector``) or the fast path's Event Hubs
trigger (``fresh``): ``pipeline_code.serving.azure_function``,
``pipeline_code.collector.azure_function``, ``pipeline_code.fastpath.azure_function``."""

import os

APP = os.environ.get("DATAFLOW_APP", "api")
if APP == "collector":
    from pipeline_code.collector.azure_function import build
elif APP == "fresh":
    from pipeline_code.fastpath.azure_function import build
else:
    from pipeline_code.serving.azure_function import build

app = build()
