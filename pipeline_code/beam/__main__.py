"""``python -m pipeline_code.beam --event_log_dir DIR --warehouse FILE``: process
a local event log past the warehouse's checkpoint. See ``pipeline.run``."""

from pipeline_code.beam.pipeline import run

print(run())
