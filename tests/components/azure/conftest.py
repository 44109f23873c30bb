"""The Azure components' tests need the azure extra."""

import pytest

pytest.importorskip("pulumi_azure_native", reason="the azure extra is not installed")

from tests.components.azure.helpers import build


@pytest.fixture(scope="session")
def default():
    return build()
