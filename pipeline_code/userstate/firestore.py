"""The user-state store on GCP: one Firestore document per user.

Firestore in Native mode (the seed's Firebase): serverless, billed per
operation, a TTL policy on a timestamp field, customer-managed keys and no
public access (IAM only). Document: in ``COLLECTION``, the id is the user key
(``/`` and ``%`` percent-encoded, and the ids Firestore reserves escaped);
fields ``touches`` (the window as JSON), ``last_seen_at``, ``updated_at``
(integers, microseconds) and ``expires_at`` (a timestamp: the TTL policy's
field). A write is ``create`` for a new user, else ``update`` with the
document's ``update_time`` as precondition.

google-cloud-firestore is imported on use; it honours
``FIRESTORE_EMULATOR_HOST`` (the tests run Google's Firestore emulator).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pipeline_code.core.userstate import Activity, decode_touches, encode_touches
from pipeline_code.userstate import DEFAULT_TTL_DAYS, expires_at_s

TTL_FIELD = "expires_at"


def document_id(user_key: str) -> str:
    """A user key as a document id: ``/`` and ``%`` as ``%XX``; ``.``, ``..``
    and ``__x__`` (reserved) with the first character encoded."""
    doc = re.sub(r"[/%]", lambda m: f"%{ord(m.group()):02X}", user_key)
    if doc in (".", "..") or re.fullmatch(r"__.*__", doc):
        doc = f"%{ord(doc[0]):02X}{doc[1:]}"
    return doc


class FirestoreUserState:
    """``UserState`` on a Firestore collection
    (``USER_STATE=firestore:projects/P/databases/D/COLLECTION``)."""

    def __init__(
        self,
        project: str,
        database: str,
        collection: str,
        ttl_days: int = DEFAULT_TTL_DAYS,
        timeout: float = 2.0,
        client: Any = None,
    ) -> None:
        from google.cloud import firestore

        self.client = client or firestore.Client(project=project, database=database)
        self.collection = self.client.collection(collection)
        self.ttl_days = ttl_days
        self.timeout = timeout

    def read(self, user_key: str) -> tuple[Activity | None, Any]:
        snapshot = self.collection.document(document_id(user_key)).get(timeout=self.timeout)
        if not snapshot.exists:
            return None, None
        doc = snapshot.to_dict()
        if doc[TTL_FIELD] < dt.datetime.now(dt.UTC):
            return None, snapshot.update_time
        state = Activity(user_key, decode_touches(doc["touches"]), doc["last_seen_at"], doc["updated_at"])
        return state, snapshot.update_time

    def get(self, user_key: str) -> Activity | None:
        return self.read(user_key)[0]

    def write(self, state: Activity, version: Any) -> bool:
        from google.api_core.exceptions import AlreadyExists, Conflict, FailedPrecondition

        doc = {
            "touches": encode_touches(state.touches).decode(),
            "last_seen_at": state.last_seen_at,
            "updated_at": state.updated_at,
            TTL_FIELD: dt.datetime.fromtimestamp(expires_at_s(state.updated_at, self.ttl_days), dt.UTC),
        }
        ref = self.collection.document(document_id(state.user_key))
        try:
            if version is None:
                ref.create(doc, timeout=self.timeout)
            else:
                option = self.client.write_option(last_update_time=version)
                ref.update(doc, option=option, timeout=self.timeout)
        except (AlreadyExists, Conflict, FailedPrecondition):
            return False
        return True

    def close(self) -> None:
        self.client.close()
