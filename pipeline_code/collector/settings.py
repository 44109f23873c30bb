"""The collector's configuration from its host's environment, on every platform.

The names are the host contract's (``pipeline_code.host``): the components
set exactly these.

- ``COLLECTOR_SINK``: ``eventlog:<dir>``, ``pubsub:projects/P/topics/T``,
  ``kinesis:<stream name>`` or ``eventhubs:<namespace host>/<hub>``;
- ``DATAFLOW_WRITE_KEYS``: comma-separated write keys (required unless
  ``COLLECTOR_OPEN=1``, for a private local collector), or on AWS
  ``DATAFLOW_WRITE_KEYS_SECRET``: the Secrets Manager secret holding them;
- ``COLLECTOR_ALLOWED_ORIGINS``: the shops' origins browsers may send from,
  comma-separated (``https://shop.example``); unset or empty: any origin
  (the write key is the check);
- ``COLLECTOR_SPILL_DIR`` (default: a directory under the system temp dir) and
  ``COLLECTOR_SPILL_MB``: the local spill for broker outages (``0`` on
  serverless hosts, whose disk does not outlive the instance).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_code import host
from pipeline_code.collector.app import Collector
from pipeline_code.streams.publish import Publisher, publisher_for


def write_keys_from_env(env: Mapping[str, str]) -> set[str] | None:
    """The write keys; ``None`` (any key) only when ``COLLECTOR_OPEN=1``."""
    keys = {k.strip() for k in env.get(host.ENV_WRITE_KEYS, "").split(",") if k.strip()}
    if keys:
        return keys
    if env.get(host.ENV_COLLECTOR_OPEN) == "1":
        return None
    raise ValueError(
        f"{host.ENV_WRITE_KEYS} is empty (got {env.get(host.ENV_WRITE_KEYS)!r}); set it, "
        f"or {host.ENV_COLLECTOR_OPEN}=1 for a private collector"
    )


def write_keys_from_secret(secret_id: str) -> set[str]:
    """AWS: the write keys from a Secrets Manager secret (a comma-separated string)."""
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    keys = {k.strip() for k in value.split(",") if k.strip()}
    if not keys:
        raise ValueError(f"{host.ENV_WRITE_KEYS_SECRET} {secret_id!r} holds no write keys")
    return keys


def allowed_origins_from_env(env: Mapping[str, str]) -> set[str] | None:
    """The allowed browser origins; ``None``: any. Each must be ``scheme://host[:port]``."""
    origins = {o.strip().rstrip("/") for o in env.get(host.ENV_ALLOWED_ORIGINS, "").split(",") if o.strip()}
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(f"{host.ENV_ALLOWED_ORIGINS} entry {origin!r} must be scheme://host[:port]")
    return origins or None


def publisher_from_env(env: Mapping[str, str], default_spill_mb: int) -> Publisher:
    """``COLLECTOR_SINK`` and the spill settings -> the publisher."""
    spill_mb = env.get(host.ENV_SPILL_MB, "") or str(default_spill_mb)
    if not spill_mb.isdigit():
        raise ValueError(f"{host.ENV_SPILL_MB} must be a whole number of MiB, got {spill_mb!r}")
    return publisher_for(env.get(host.ENV_COLLECTOR_SINK, ""), env.get(host.ENV_SPILL_DIR), int(spill_mb))


def collector_from_env(env: Mapping[str, str], default_spill_mb: int = 1024) -> Collector:
    """The collector as a host's environment describes it (``ValueError`` names a bad variable)."""
    if env.get(host.ENV_WRITE_KEYS_SECRET):
        keys: set[str] | None = write_keys_from_secret(env[host.ENV_WRITE_KEYS_SECRET])
    else:
        keys = write_keys_from_env(env)
    return Collector(publisher_from_env(env, default_spill_mb), keys, allowed_origins_from_env(env))
