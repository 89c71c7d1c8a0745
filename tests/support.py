"""Helpers shared by the actor, HTTP and system suites."""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from vault.config import Settings
from vault.domain.models import Role

PDF = b"%PDF-1.7\n" + b"test document body\n"


def pdf_bytes(size: int = 64, *, seed: bytes | None = None) -> bytes:
    """A unique PDF-looking payload of exactly ``size`` bytes (size >= 9)."""
    head = b"%PDF-1.7\n" + (seed or uuid.uuid4().bytes)
    if size <= len(head):
        return head[:size]
    return head + os.urandom(size - len(head))


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    # Checkpoints are signed when asked (a verification, Publish) and at start
    # and stop, not on a timer, and the integrity sweep is off: what a test
    # sees of the log and of verifications is what it did.
    values: dict[str, Any] = {
        "environment": "test",
        "vault_data_dir": data_dir,
        "ledger_checkpoint_interval_seconds": 3600.0,
        "integrity_sweep_period_hours": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


def actor_headers(
    role: Role | str = Role.ISSUER, actor_id: uuid.UUID | None = None
) -> dict[str, str]:
    return {
        "X-Actor-Id": str(actor_id or uuid.uuid4()),
        "X-Actor-Role": role.value if isinstance(role, Role) else role,
    }


def multipart_body(
    fields: Iterable[tuple[str, str]],
    file: tuple[str, bytes, str] | None,
    *,
    file_first: bool = False,
    boundary: str = "vaultTestBoundary7MA4YWxkTrZu0gW",
) -> tuple[bytes, str]:
    """A multipart/form-data body with parts in a chosen order.

    ``file`` is (filename, content, content type). Returns (body, content type header).
    """
    parts: list[bytes] = []
    field_parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        ).encode() + value.encode() + b"\r\n"
        for name, value in fields
    ]
    file_parts: list[bytes] = []
    if file is not None:
        filename, content, content_type = file
        file_parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode() + content + b"\r\n"
        )
    parts = file_parts + field_parts if file_first else field_parts + file_parts
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload_fields(
    entity_id: uuid.UUID, *, entity_type: str = "issuer", document_type: str = "kyc",
    **extra: str,
) -> list[tuple[str, str]]:
    fields = [
        ("entity_id", str(entity_id)),
        ("entity_type", entity_type),
        ("document_type", document_type),
    ]
    fields.extend(extra.items())
    return fields


@attrs.define
class Clock:
    """A clock ``ahead`` of the real one by what the test sets: time moved, not waited for."""

    ahead: datetime.timedelta = datetime.timedelta(0)

    def __call__(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.ahead
