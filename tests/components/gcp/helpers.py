"""What the GCP component tests share: building the chain, reading what it declared."""

from __future__ import annotations

from components.gcp import GcpChain
from components.spec import load_spec
from tests.components.configs import gcp_config
from tests.components.conftest import run_program


def build(**sections):
    """The chain without the collector (its own tests are in test_collector.py)."""
    sections.setdefault("collector", {"enabled": False})
    return run_program(lambda: GcpChain("dataflow", load_spec(gcp_config(**sections))))


def members_of(rec, email_prefix: str) -> list:
    return [r for r in rec.iam() if str(r.inputs["member"]).startswith(f"serviceAccount:{email_prefix}")]


KEY = "projects/shop-analytics-dev/locations/europe-west1/keyRings/data/cryptoKeys/chain"


PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


PUBLIC = {"allUsers", "allAuthenticatedUsers"}
