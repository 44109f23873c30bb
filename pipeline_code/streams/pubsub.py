"""Pub/Sub: the collector's publisher (google-cloud-pubsub, imported on use)."""

from __future__ import annotations

from pipeline_code.streams.publish import PublishError


class PubSubPublisher:
    """A Pub/Sub topic (``projects/P/topics/T``); the client batches, we wait for every id."""

    def __init__(self, topic: str) -> None:
        from google.cloud import pubsub_v1

        self.topic = topic
        self.client = pubsub_v1.PublisherClient()

    def publish(self, payloads: list[bytes]) -> None:
        futures = [self.client.publish(self.topic, p) for p in payloads]
        try:
            for f in futures:
                f.result(timeout=30)
        except Exception as exc:
            raise PublishError(f"Pub/Sub {self.topic}: {exc}") from exc
