"""Data-Flow's shared processing code: the event contract, the engine-free
core, its Beam pipeline, and the local chain (event log, DuckDB warehouse)."""

__version__ = "0.1.0"
