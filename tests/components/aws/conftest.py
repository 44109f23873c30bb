"""The AWS components' tests need the aws extra."""

import pytest

pytest.importorskip("pulumi_aws", reason="the aws extra is not installed")

from tests.components.aws.helpers import build


@pytest.fixture(scope="session")
def default():
    return build()
