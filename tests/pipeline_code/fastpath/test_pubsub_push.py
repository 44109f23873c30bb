"""GCP: the Cloud Run service behind a Pub/Sub push subscription, fed the
envelope Pub/Sub documents, and then real pushes from Google's Pub/Sub
emulator (a push subscription with its retry policy) into Firestore's."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time

import httpx
import pytest

from pipeline_code.core.userstate import recent_items
from pipeline_code.fastpath.pubsub_push import PushApp
from pipeline_code.userstate.local import LocalUserState
from tests.conftest import line
from tests.pipeline_code.serving.servers import free_port


def envelope(data: bytes, message_id: str = "1234567890", attempt: int | None = 1) -> dict:
    """A push request body as Pub/Sub sends it (both spellings of the ids,
    as the service does)."""
    body = {
        "message": {
            "attributes": {"source": "collector"},
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-01-01T12:00:00.123Z",
            "publish_time": "2026-01-01T12:00:00.123Z",
        },
        "subscription": "projects/shop/subscriptions/events-fresh",
    }
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return body


def post(app, body, content: bytes | None = None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fresh") as client:
            if content is not None:
                return await client.post("/", content=content)
            return await client.post("/", json=body)

    return asyncio.run(go())


def test_a_push_is_applied_and_acknowledged(tmp_path) -> None:
    store = LocalUserState(tmp_path / "s.sqlite")
    app = PushApp(store)
    assert post(app, envelope(line(event_id="a", items=[{"item_id": "sku-7"}]))).status_code == 204
    # The same message again (a redelivery): acknowledged, nothing changes.
    assert post(app, envelope(line(event_id="a", items=[{"item_id": "sku-7"}]), attempt=2)).status_code == 204
    assert recent_items(store.get("u-1")) == ["sku-7"] and len(store.get("u-1").touches) == 1


@pytest.mark.parametrize("data", [b"{not json", b'{"event_name": "view_item"}', b""])
def test_a_bad_event_is_acknowledged_and_never_blocks(tmp_path, data) -> None:
    app = PushApp(LocalUserState(tmp_path / "s.sqlite"))
    assert post(app, envelope(data)).status_code == 204
    metrics = asyncio.run(_get(app, "/metrics"))
    assert "dataflow_fresh_rejected_total" in metrics


async def _get(app, path: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fresh") as client:
        return (await client.get(path)).text


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[]", "not a Pub/Sub push envelope"),
        (b'{"message": {"data": "***"}}', "message.data is not base64"),
        (b"\xff\xfe", "not a Pub/Sub push envelope"),
        (b'{"message": {"data": "' + b"[" * 5000 + b'"}', "not a Pub/Sub push envelope"),
    ],
)
def test_a_body_that_is_not_an_envelope_is_a_400_naming_why(tmp_path, content, fragment) -> None:
    response = post(PushApp(LocalUserState(tmp_path / "s.sqlite")), None, content)
    assert response.status_code == 400 and fragment in response.json()["message"]


class DownStore:
    def read(self, user_key):
        raise ConnectionError("firestore unavailable")

    def get(self, user_key):
        raise ConnectionError("firestore unavailable")


def test_a_store_outage_is_a_503_so_pubsub_redelivers() -> None:
    response = post(PushApp(DownStore()), envelope(line()))
    assert response.status_code == 503 and "redeliver" in response.json()["message"]


@pytest.mark.standin
@pytest.mark.slow
def test_real_pushes_from_the_pubsub_emulator_reach_firestore(pubsub_host, firestore_host, tmp_path) -> None:
    """The service as Cloud Run runs it (``python -m pipeline_code.fastpath``),
    the store Firestore's emulator, the pushes from Pub/Sub's emulator: the
    envelope is the service's own, not ours. A bad event among them is acked."""
    from google.cloud import pubsub_v1

    from pipeline_code.userstate.firestore import FirestoreUserState

    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "USER_STATE": "firestore:projects/shop/databases/(default)/user_state",
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "GOOGLE_CLOUD_PROJECT": "shop",
    }
    proc = subprocess.Popen([sys.executable, "-m", "pipeline_code.fastpath"], env=env)
    try:
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.create_topic(name="projects/shop/topics/events").name
        subscriber.create_subscription(
            request={
                "name": "projects/shop/subscriptions/events-fresh",
                "topic": topic,
                "push_config": {"push_endpoint": f"http://127.0.0.1:{port}/"},
                "ack_deadline_seconds": 10,
            }
        )
        payloads = [
            line(
                event_id=f"p{i}",
                user_id=f"shopper-{i % 3}",
                items=[{"item_id": f"sku-{i}"}],
                event_timestamp=f"2026-01-01T10:{i:02d}:00Z",
            )
            for i in range(9)
        ] + [b"{broken"]
        for p in payloads:
            publisher.publish(topic, p).result(timeout=10)
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
        from google.cloud import firestore

        store = FirestoreUserState("shop", "(default)", "user_state", client=firestore.Client(project="shop"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [store.get(f"shopper-{u}") for u in range(3)]
            if all(s is not None and len(s.touches) == 3 for s in states):
                break
            time.sleep(0.2)
        assert [recent_items(s) for s in states] == [[f"sku-{i}" for i in range(u, 9, 3)] for u in range(3)]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'dataflow_fresh_rejected_total{stage="parse"} 1.0' in metrics
        assert 'dataflow_fresh_requests_total{code="204",route="push"} 10.0' in metrics
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        proc.terminate()
        proc.wait(10)
