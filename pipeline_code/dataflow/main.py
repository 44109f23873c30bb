"""Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The launcher runs this file with the job's parameters as flags. Everything
lives in ``pipeline_code.beam.streaming``: this file is ``__main__`` on the
launcher, and with ``save_main_session`` nothing here is worth pickling.
"""

from pipeline_code.beam.streaming import run_streaming

if __name__ == "__main__":
    run_streaming()
