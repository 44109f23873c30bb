"""Every user-state store against a real implementation of its API: SQLite
locally, DynamoDB on moto's server, Azure Table on Azurite, Firestore on
Google's emulator. One conformance test: the same events, with redeliveries
and out-of-order arrivals, give the same state in every store, the state the
same events give once and in order."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from pipeline_code.core.features import INTERACTION_WEIGHTS
from pipeline_code.core.ports import apply_touches
from pipeline_code.core.userstate import WINDOW, Activity, Touch, merge, recent_items
from pipeline_code.userstate.local import LocalUserState
from tests.pipeline_code.userstate import standins

NOW = 1_800_000_000_000_000
USERS = ["u-1", "anon:a/b#c?d%e\\f", "__x__", ".", "ü-ñ 😀", "u-" + "9" * 120]


def local_store(tmp_path_factory, ttl_days: int = 30):
    return LocalUserState(tmp_path_factory.mktemp("state") / "s.sqlite", ttl_days=ttl_days)


def dynamodb_store(moto_url: str, ttl_days: int = 30):
    import boto3

    from pipeline_code.userstate.dynamodb import KEY, TTL_ATTRIBUTE, DynamoUserState

    name = f"user-state-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=moto_url, region_name="eu-west-1")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
    return DynamoUserState(name, ttl_days=ttl_days, region="eu-west-1", endpoint_url=moto_url)


def table_store(azurite_url: str, ttl_days: int = 30):
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.data.tables import TableServiceClient

    from pipeline_code.userstate.tables import TableUserState

    credential = AzureNamedKeyCredential(standins.AZURITE_ACCOUNT, standins.AZURITE_KEY)
    service = TableServiceClient(azurite_url, credential=credential)
    client = service.create_table(f"userstate{uuid.uuid4().hex[:8]}")
    return TableUserState(client, ttl_days=ttl_days)


def firestore_store(firestore_host: str, monkeypatch, ttl_days: int = 30):
    from google.cloud import firestore

    from pipeline_code.userstate.firestore import FirestoreUserState

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
    client = firestore.Client(project="data-flow-test")
    return FirestoreUserState(
        "data-flow-test", "(default)", f"state-{uuid.uuid4().hex[:8]}", ttl_days=ttl_days, client=client
    )


STORES = ["local", *(pytest.param(k, marks=pytest.mark.standin) for k in ("dynamodb", "tables", "firestore"))]


@pytest.fixture(params=STORES)
def make_store(request, tmp_path_factory, monkeypatch):
    """A factory of fresh, empty stores of one kind (``ttl_days`` as argument)."""
    kind = request.param
    if kind == "local":
        return lambda ttl_days=30: local_store(tmp_path_factory, ttl_days)
    if kind == "dynamodb":
        url = request.getfixturevalue("moto_url")
        return lambda ttl_days=30: dynamodb_store(url, ttl_days)
    if kind == "tables":
        url = request.getfixturevalue("azurite_url")
        return lambda ttl_days=30: table_store(url, ttl_days)
    host = request.getfixturevalue("firestore_host")
    return lambda ttl_days=30: firestore_store(host, monkeypatch, ttl_days)


def stream(seed: int = 7, n: int = 400) -> list[tuple[str, Touch]]:
    """``n`` touches over the test users, with items, removals and searches."""
    rng = random.Random(seed)
    names = ["view_item", "add_to_cart", "remove_from_cart", "purchase", "search", "select_item"]
    out = []
    for i in range(n):
        name = rng.choice(names)
        items = (
            () if name == "search" else tuple(f"sku-{rng.randrange(30)}" for _ in range(rng.randrange(1, 4)))
        )
        at = 1_767_225_600_000_000 + rng.randrange(10_000) * 1_000_000
        out.append((rng.choice(USERS), Touch(f"e-{i}", at, name, items, INTERACTION_WEIGHTS.get(name, 0.0))))
    return out


def delivered(events: list[tuple[str, Touch]], seed: int = 11) -> list[list[tuple[str, Touch]]]:
    """The same events as a stream delivers them: shuffled, a quarter sent
    again (some in the same batch), in batches of varying size."""
    rng = random.Random(seed)
    sent = events + rng.sample(events, len(events) // 4)
    rng.shuffle(sent)
    batches, i = [], 0
    while i < len(sent):
        size = rng.randrange(1, 40)
        batches.append(sent[i : i + size])
        i += size
    return batches


def expected(events: list[tuple[str, Touch]]) -> dict[str, Activity]:
    """Each user's state from the events once, in event-time order."""
    out: dict[str, Activity] = {}
    for user, t in sorted(events, key=lambda e: e[1].key()):
        out[user] = merge(out.get(user), user, [t], NOW) or out[user]
    return out


def group(batch: list[tuple[str, Touch]]) -> dict[str, list[Touch]]:
    by: dict[str, list[Touch]] = {}
    for user, t in batch:
        by.setdefault(user, []).append(t)
    return by


def same(a: Activity | None, b: Activity | None) -> bool:
    """Equal but for ``updated_at`` (when the store wrote it)."""
    return a is not None and b is not None and (a.touches, a.last_seen_at) == (b.touches, b.last_seen_at)


def test_redelivered_and_out_of_order_events_give_the_in_order_state(make_store) -> None:
    store = make_store()
    events = stream()
    for batch in delivered(events):
        apply_touches(store, group(batch), NOW)
    want = expected(events)
    for user in USERS:
        got = store.get(user)
        assert same(got, want[user]), user
        assert len(got.touches) == WINDOW
        assert recent_items(got) == recent_items(want[user])
    # Applying everything again writes nothing.
    assert sum(apply_touches(store, group(batch), NOW) for batch in delivered(events, seed=3)) == 0


def test_concurrent_writers_to_one_user_lose_nothing(make_store) -> None:
    """Two function instances merging into one user at once: the conditional
    write makes the loser read again and merge, so both sets of touches land."""
    store = make_store()
    halves = [
        [
            Touch(f"w{w}-{i}", 1_767_225_600_000_000 + i * 2 + w, "view_item", (f"sku-{w}-{i}",), 1.0)
            for i in range(12)
        ]
        for w in (0, 1)
    ]
    errors: list[BaseException] = []

    def writer(touches: list[Touch]) -> None:
        try:
            for t in touches:
                apply_touches(store, {"u-1": [t]}, NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(h,)) for h in halves]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    got = store.get("u-1")
    assert {t.event_id for t in got.touches} == {t.event_id for h in halves for t in h}


def test_a_stale_version_is_refused(make_store) -> None:
    store = make_store()
    apply_touches(store, {"u-1": [Touch("e1", 1, "view_item", ("a",), 1.0)]}, NOW)
    state, version = store.read("u-1")
    apply_touches(store, {"u-1": [Touch("e2", 2, "view_item", ("b",), 1.0)]}, NOW)
    assert store.write(merge(state, "u-1", [Touch("e3", 3, "view_item", ("c",), 1.0)], NOW), version) is False
    assert store.write(merge(None, "u-1", [Touch("e4", 4, "view_item", ("d",), 1.0)], NOW), None) is False
    assert [t.event_id for t in store.get("u-1").touches] == ["e2", "e1"]


def test_an_expired_state_reads_as_absent_and_is_replaced(make_store) -> None:
    store = make_store(ttl_days=1)
    long_ago = (time.time_ns() // 1000) - 3 * 86_400_000_000
    apply_touches(store, {"u-1": [Touch("old", 1, "view_item", ("a",), 1.0)]}, long_ago)
    assert store.get("u-1") is None
    apply_touches(store, {"u-1": [Touch("new", 2, "view_item", ("b",), 1.0)]}, time.time_ns() // 1000)
    assert [t.event_id for t in store.get("u-1").touches] == ["new"]


def test_an_unknown_user_has_no_state(make_store) -> None:
    assert make_store().get("nobody") is None


@pytest.mark.standin
def test_the_table_purge_deletes_expired_users_only(azurite_url) -> None:
    """Table storage has no TTL: the daily purge is what bounds the store."""
    store = table_store(azurite_url, ttl_days=1)
    now = time.time_ns() // 1000
    apply_touches(store, {"gone": [Touch("a", 1, "view_item", ("x",), 1.0)]}, now - 3 * 86_400_000_000)
    apply_touches(store, {"kept/1": [Touch("b", 2, "view_item", ("y",), 1.0)]}, now)
    assert store.purge() == 1
    assert store.read("gone") == (None, None) and store.get("kept/1") is not None
    assert store.purge() == 0
