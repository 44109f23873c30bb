"""One local Spark session for the Spark adapter's tests (it takes seconds to start)."""

from __future__ import annotations

import pytest

from pipeline_code.spark.local import spark_session


@pytest.fixture(scope="session")
def spark():
    # No skip when Spark is missing: CI installs the spark extra and a JRE,
    # and the conformance proof must not pass by not running.
    session = spark_session(cores=2)
    yield session
    session.stop()
