"""The GCP components' tests need the gcp extra."""

import pytest

pytest.importorskip("pulumi_gcp", reason="the gcp extra is not installed")

from tests.components.gcp.helpers import build


@pytest.fixture(scope="session")
def default():
    return build()
