"""The Beam pipeline: composites, sources and sinks, options."""

from pipeline_code.beam import signatures

signatures.install()
