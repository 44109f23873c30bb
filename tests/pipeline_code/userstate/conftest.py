"""Session fixtures: one of each stand-in (see ``standins``)."""

from __future__ import annotations

import pytest

from tests.pipeline_code.userstate import standins


@pytest.fixture(scope="session")
def moto_url():
    yield from standins.moto_server()


@pytest.fixture(scope="session")
def azurite_url():
    yield from standins.azurite()


@pytest.fixture(scope="session")
def firestore_host():
    yield from standins.firestore_emulator()


@pytest.fixture(scope="session")
def pubsub_host():
    yield from standins.pubsub_emulator()
