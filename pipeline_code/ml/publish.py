"""Publishing a trained version into a model registry that lives in a bucket.

    store = store_for("s3://bucket/models/")      # or gs:// via /gcs, or a mounted folder
    publish(store, Path("/opt/ml/model"), decision)

The layout is the local registry's (``ml.registry``), so ``dataflow models``
and the cloud jobs agree:

    <version>/metadata.json, <version>/model.npz     every version, refused ones too
    <version>.tar.gz                                  SageMaker's model.tar.gz of it
    <version>/decision.json                           the gate's decision
    production/                                       the served version's files (the next job's input)
    LATEST, promotions.jsonl                          what serves, and every change of it

A refused version is written and left unserved. A promoted one is written
first, then ``production/`` is replaced, then ``LATEST`` and the log: a
reader of ``LATEST`` always finds a whole version. Vertex AI's Cloud Storage
FUSE mount and Azure ML's read-write output mount are folders, so they use
``FolderStore``; S3 uses ``S3Store`` (boto3).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from pathlib import Path
from typing import Protocol

from pipeline_code.ml.registry import LATEST_FILE, PROMOTIONS_FILE, unwind

PRODUCTION = "production"
HEALTH_KEY = "dataflow_training"
"""The key of the JSON line each run logs with ``health``: what log-based alerts match."""


class Store(Protocol):
    """The few object operations a registry needs."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...


class FolderStore:
    """A folder (local, or a mounted bucket) as a store."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3Store:
    """``s3://bucket/prefix/`` as a store (boto3; SSE with the bucket's default key)."""

    def __init__(self, uri: str, client=None) -> None:
        if not uri.startswith("s3://"):
            raise ValueError(f"registry must be an s3:// URI, got {uri!r}")
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        ):
            out += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        return sorted(out)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


def store_for(location: str) -> Store:
    """``s3://...`` -> ``S3Store``; ``gs://...`` -> its ``/gcs`` FUSE folder; else a folder."""
    if location.startswith("s3://"):
        return S3Store(location)
    if location.startswith("gs://"):
        return FolderStore(Path("/gcs") / location.removeprefix("gs://"))
    return FolderStore(location)


def tarball(files: dict[str, bytes]) -> bytes:
    """SageMaker's model.tar.gz: the files at the archive root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def served(store: Store) -> str | None:
    raw = store.get(LATEST_FILE)
    return raw.decode().strip() or None if raw else None


def serve(store: Store, version: str, action: str, reason: str) -> dict:
    """Make ``version`` (already published) the served one: ``production/``, ``LATEST``, the log."""
    files = {k.split("/", 1)[1]: store.get(k) for k in store.keys(f"{version}/")}
    files.pop("decision.json", None)
    if "metadata.json" not in files:
        raise ValueError(f"version {version!r} is not in the registry")
    for key in store.keys(f"{PRODUCTION}/"):
        if key.split("/", 1)[1] not in files:
            store.delete(key)
    for name, data in files.items():
        store.put(f"{PRODUCTION}/{name}", data)  # type: ignore[arg-type]
    previous = served(store)
    at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    entry = {"at": at, "action": action, "version": version, "previous": previous, "reason": reason}
    log = (store.get(PROMOTIONS_FILE) or b"") + (json.dumps(entry, sort_keys=True) + "\n").encode()
    store.put(PROMOTIONS_FILE, log)
    store.put(LATEST_FILE, (version + "\n").encode())
    return entry


def publish(store: Store, version_dir: Path, decision: dict) -> dict | None:
    """Write the version (files, tarball, decision); serve it if the gate promoted it.
    Returns the promotion's log entry, or None when it was refused."""
    version = decision["model_version"]
    files = {p.name: p.read_bytes() for p in sorted(version_dir.iterdir()) if p.is_file()}
    files.pop("decision.json", None)
    for name, data in files.items():
        store.put(f"{version}/{name}", data)
    store.put(f"{version}.tar.gz", tarball(files))
    store.put(f"{version}/decision.json", (json.dumps(decision, indent=2, sort_keys=True) + "\n").encode())
    if decision["decision"] != "promoted" or served(store) == version:
        return None  # refused, or the very version already served (same data, settings and second)
    return serve(store, version, "promote", decision["reason"])


def previous_version(store: Store) -> str | None:
    """The version a rollback returns to (the same stack rule as ``Registry.stack``)."""
    lines = (store.get(PROMOTIONS_FILE) or b"").decode().splitlines()
    stack = unwind([json.loads(line) for line in lines if line.strip()])
    return stack[-2] if len(stack) >= 2 else None


def health(store: Store, now: dt.datetime | None = None) -> dict[str, float]:
    """What the slow path's alerts watch, from the registry itself: the gate's
    refusals since the last promotion, and the served version's age in days."""
    decisions = [json.loads(store.get(k) or b"{}") for k in store.keys("") if k.endswith("/decision.json")]
    refusals = 0
    for decision in sorted(decisions, key=lambda d: d.get("decided_at", ""), reverse=True):
        if decision.get("decision") == "promoted":
            break
        refusals += 1
    age = -1.0
    lines = [line for line in (store.get(PROMOTIONS_FILE) or b"").decode().splitlines() if line.strip()]
    if lines:
        at = dt.datetime.fromisoformat(json.loads(lines[-1])["at"].replace("Z", "+00:00"))
        age = ((now or dt.datetime.now(dt.UTC)) - at).total_seconds() / 86_400
    return {"ModelsTrained": 1.0, "RefusalsInARow": float(refusals), "ServedModelAgeDays": round(age, 3)}
