"""Pulumi ComponentResource classes for the chain.

This package holds the cloud-neutral spec and, per cloud, one component per
link (ingest, process, warehouse, ML, serve) plus one that composes them.
They create the logical tables described in ``pipeline_code.tables`` and
deploy the processing code in ``pipeline_code``. Each cloud's SDK is an
optional extra (``pip install 'data-flow[gcp]'``, ``[aws]``, ``[azure]``).
"""
