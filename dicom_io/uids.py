"""Deterministic UIDs for the objects we write, so reprocessing replaces instead of duplicating.

UIDs use the 2.25 root (PS3.5 B.2: a UUID as a decimal integer). The UUID is a name-based
UUID (RFC 4122 version 5, SHA-1) of the source UID, the model version, the object type and
an optional index, so the same inputs always give the same UID and different inputs do not
collide in practice. No organisation root is needed.
"""

from __future__ import annotations

import uuid

# Fixed namespace for brainxai result UIDs (uuid5 of the DNS name "brainxai.invalid").
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "brainxai.invalid")

OBJECT_TYPES = frozenset({"sc", "pm", "pm-float", "sr"})


def derived_uid(
    source_uid: str, model_version: str, object_type: str, index: int | None = None
) -> str:
    """A UID determined by (source UID, model version, object type[, index])."""
    if not source_uid:
        raise ValueError("source UID must not be empty")
    parts = [source_uid.strip(), model_version, object_type]
    if index is not None:
        parts.append(str(index))
    name = "|".join(parts)
    return f"2.25.{uuid.uuid5(NAMESPACE, name).int}"


def series_uid(source_series_uid: str, model_version: str, object_type: str) -> str:
    """SeriesInstanceUID of the result series of one type made from one source series."""
    return derived_uid(source_series_uid, model_version, object_type + "/series")


def instance_uid(
    source_series_uid: str, model_version: str, object_type: str, index: int = 0
) -> str:
    """SOPInstanceUID of the index-th result object of one type for one source series."""
    return derived_uid(source_series_uid, model_version, object_type + "/instance", index)
