"""The Functions host's entry file: the one image serves the API or, with
``DATAFLOW_APP=collector``, the collector (``pipeline_code.serving.azure_function``,
``pipeline_code.collector.azure_function``)."""

import os

if os.environ.get("DATAFLOW_APP") == "collector":
    from pipeline_code.collector.azure_function import build
else:
    from pipeline_code.serving.azure_function import build

app = build()
