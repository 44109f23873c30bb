"""The collector: Segment-compatible HTTP ingest in front of any of the chain's streams."""
