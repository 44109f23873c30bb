"""The stand-ins (``tests.pipeline_code.userstate.standins``) for the adapters' tests."""

from tests.pipeline_code.userstate.conftest import (  # noqa: F401
    azurite_url,
    firestore_host,
    moto_url,
    pubsub_host,
)
