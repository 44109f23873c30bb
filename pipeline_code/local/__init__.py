"""The local chain on embedded defaults: event log and DuckDB warehouse."""
