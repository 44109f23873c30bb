"""The warehouses: one module per warehouse, everything the chain knows of it.

Each renders the logical tables (``pipeline_code.tables``) in its dialect
(DDL and the per-batch merge), and implements the core's ports: a
``WarehouseLookup`` for the streaming jobs and a ``Sink`` that stages and
commits a batch in one transaction.

- ``duckdb``: the local warehouse (``Warehouse``, ``LocalWarehouseSink``, ``DuckDBLookup``);
- ``bigquery``: schemas, views and row conversion, ``BigQueryLookup``;
- ``redshift``: DDL and merge, ``RedshiftDataLookup`` and ``RedshiftSink`` (Data API);
- ``synapse``: T-SQL DDL, staging and merge, ``SynapseLookup`` and ``SynapseSink``.

Cloud clients (google-cloud-bigquery, boto3, pyodbc) are imported on use,
so the components import the DDL without them.
"""
