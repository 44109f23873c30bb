"""The script Glue runs (``ScriptLocation``); the code is the package
shipped with ``--extra-py-files``. See ``pipeline_code.spark.glue``."""

from pipeline_code.spark.glue import main

if __name__ == "__main__":
    main()
