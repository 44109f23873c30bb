"""The script the Glue replay job runs (``ScriptLocation``); the code is the
package shipped with ``--extra-py-files``. See ``pipeline_code.spark.glue``."""

from pipeline_code.spark.glue import replay_main

if __name__ == "__main__":
    replay_main()
