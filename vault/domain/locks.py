"""Retention locks and legal holds on stored objects, the way S3 Object Lock has them.

A *retention* keeps an object version from being deleted until its
``retain_until``; its *mode* says who could shorten it on S3 (``governance``:
someone allowed to bypass governance; ``compliance``: nobody). The vault
never shortens or weakens a retention (``stronger``), and never asks S3 to
bypass one, so for the vault both modes forbid deletion alike. A *legal
hold* forbids deletion while it is on, whatever the retention says.

Pure: no clock is read here (``blocks_deletion`` is told the time).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from uuid import UUID

import attrs

from vault.domain.errors import VaultError

__all__ = ["LockMode", "ObjectLock", "Retention", "StorageLocked", "StoredVersion", "stronger"]


class LockMode(enum.StrEnum):
    COMPLIANCE = "compliance"
    GOVERNANCE = "governance"


def _utc(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"a retention date must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


@attrs.frozen
class Retention:
    """Keep an object version until ``retain_until`` (timezone-aware, held in UTC)."""

    mode: LockMode = attrs.field(converter=LockMode)
    retain_until: datetime = attrs.field(converter=_utc)


@attrs.frozen
class ObjectLock:
    """The lock state of one stored object version, as the storage reports it."""

    version_id: str | None
    """The version it describes (None where the store has no versions)."""
    mode: LockMode | None
    retain_until: datetime | None = attrs.field(converter=_utc_or_none)
    legal_hold: bool

    @classmethod
    def unlocked(cls, version_id: str | None = None) -> ObjectLock:
        return cls(version_id=version_id, mode=None, retain_until=None, legal_hold=False)

    @property
    def retention(self) -> Retention | None:
        """The retention it carries (expired or not), None when it has none."""
        if self.mode is None or self.retain_until is None:
            return None
        return Retention(self.mode, self.retain_until)

    def blocks_deletion(self, now: datetime) -> bool:
        """Whether the storage refuses to delete it at ``now``: held, or retained past now."""
        if self.legal_hold:
            return True
        return self.retain_until is not None and self.retain_until > _utc(now)


def stronger(current: Retention | None, asked: Retention) -> Retention:
    """What a retention becomes when ``asked`` is applied over ``current``.

    The later ``retain_until`` and the stronger mode (compliance beats
    governance): storage never shortens or weakens a retention.
    """
    if current is None:
        return asked
    compliance = LockMode.COMPLIANCE in (current.mode, asked.mode)
    return Retention(
        LockMode.COMPLIANCE if compliance else LockMode.GOVERNANCE,
        max(current.retain_until, asked.retain_until),
    )


@attrs.frozen
class StoredVersion:
    """One stored version of an object, as the storage lists it (and ``destroy`` deletes)."""

    version_id: str | None
    """S3's version id; None on the local store, which keeps one version a key."""
    delete_marker: bool
    """An S3 delete marker: no bytes, no lock, but a version all the same."""
    lock: ObjectLock
    """Its retention and legal hold (``ObjectLock.unlocked`` for a delete marker)."""


class StorageLocked(VaultError):
    """The storage refuses: the object is under a retention lock or a legal hold."""

    status = 409
    error_code = "STORAGE_LOCKED"
    title = "Storage Locked"


@attrs.frozen
class LockTask:
    """One document whose object's lock must be brought to what the records say."""

    document_id: UUID
    storage_key: str
    version_id: str | None
    queued_at: datetime
    token: UUID
    """New each time the document is queued: its row goes only if still this one."""
    retention: Retention | None
    """What the record keeps it for (None: uploaded under no policy)."""
    legal_hold: bool
    """Whether an active hold covers it now."""
