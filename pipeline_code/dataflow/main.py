"""Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The launcher runs this file with the job's parameters as flags: the
streaming job (``pipeline_code.beam.streaming``), or, when the launch names
``--replay``, a batch replay (``pipeline_code.beam.replay_job``) from the
same image. This file is ``__main__`` on the launcher, and with
``save_main_session`` nothing here is worth pickling.
"""

import sys


def is_replay(argv: list[str]) -> bool:
    return any(a == "--replay" or a.startswith("--replay=") for a in argv)


if __name__ == "__main__":
    if is_replay(sys.argv[1:]):
        from pipeline_code.beam.replay_job import run_replay

        run_replay()
    else:
        from pipeline_code.beam.streaming import run_streaming

        run_streaming()
