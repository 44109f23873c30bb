"""Private Cloud Storage buckets, the one way the GCP links make them.

    bucket = private_bucket(self, f"{name}-raw", project=..., region=..., labels=...,
                            rules=[delete(after_days=400)], versioned=False)

Uniform bucket-level access, public access prevention enforced, the chain's
key when one is set, never force-destroyed; versioned when asked (a deleted
or overwritten object can be brought back). ``delete`` and ``move_to`` are
the lifecycle rules the links use.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp


def delete(after_days: int, prefixes: list[str] | None = None, archived: bool = False):
    """Delete objects ``after_days`` old (under ``prefixes``; or only noncurrent versions)."""
    return gcp.storage.BucketLifecycleRuleArgs(
        action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
        condition=gcp.storage.BucketLifecycleRuleConditionArgs(
            age=after_days, matches_prefixes=prefixes, with_state="ARCHIVED" if archived else None
        ),
    )


def move_to(storage_class: str, after_days: int):
    """Move objects to a colder storage class ``after_days`` old."""
    return gcp.storage.BucketLifecycleRuleArgs(
        action=gcp.storage.BucketLifecycleRuleActionArgs(type="SetStorageClass", storage_class=storage_class),
        condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=after_days),
    )


def private_bucket(
    owner: pulumi.Resource,
    name: str,
    *,
    project: str,
    region: str,
    labels: dict[str, str],
    rules: list,
    versioned: bool,
    kms_key_name: str | None = None,
) -> gcp.storage.Bucket:
    """A bucket nobody outside the project reaches, as the module doc says."""
    key = gcp.storage.BucketEncryptionArgs(default_kms_key_name=kms_key_name) if kms_key_name else None
    return gcp.storage.Bucket(
        name,
        project=project,
        location=region,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=True) if versioned else None,
        encryption=key,
        lifecycle_rules=rules,
        force_destroy=False,
        labels=labels,
        opts=pulumi.ResourceOptions(parent=owner),
    )
