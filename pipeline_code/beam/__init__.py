"""The Beam pipeline: composites, sources and sinks, options."""
