"""The Spark adapter: the shared core on Glue, Synapse Spark and local PySpark."""
