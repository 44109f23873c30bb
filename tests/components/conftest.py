"""The component tests run the program on the offline engine (``components/mocks.py``)."""

from components.mocks import (  # noqa: F401  (what the tests import from here)
    AWS_ACCOUNT,
    AWS_REGION,
    AZURE_SUBSCRIPTION,
    AZURE_TENANT,
    PROJECT_NUMBER,
    Declared,
    Recorder,
    resolved,
    run_program,
)
