"""The file the Synapse Spark job definition runs; the code is the package
shipped with it (``--py-files``). See ``pipeline_code.spark.synapse``."""

from pipeline_code.spark.synapse import main

if __name__ == "__main__":
    main()
