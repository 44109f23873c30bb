"""``python -m pipeline_code.local --event_log_dir DIR --warehouse FILE``: process
a local event log past the warehouse's checkpoint (``pipeline_code.local.run.run``)."""

from pipeline_code.local.run import run

print(run())
