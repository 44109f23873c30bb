"""The file the Synapse replay job definition runs; the code is the package
shipped with it (``--py-files``). See ``pipeline_code.spark.synapse``."""

from pipeline_code.spark.synapse import replay_main

if __name__ == "__main__":
    replay_main()
