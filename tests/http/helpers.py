"""Requests and checks shared by the HTTP suite."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import trio
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from trio.testing import wait_all_tasks_blocked

from actors.system import Vault
from tests.polling import eventually
from tests.support import actor_headers, multipart_body, pdf_bytes, upload_fields
from vault.config import Settings
from vault.domain.models import Role

API = "/api/v1"
UPLOAD = f"{API}/documents/upload"
VERIFY = f"{API}/documents/verify"
PROBLEM_JSON = "application/problem+json"

DOCUMENT_FIELDS = frozenset({
    "id", "entity_type", "entity_id", "token_id", "document_type", "filename", "mime_type",
    "size_bytes", "storage_bucket", "storage_key", "sha256_hash", "status", "uploaded_by",
    "verified_by", "archived_by", "archived_at", "hash_verified_at", "on_chain_reference",
    "metadata", "created_at", "updated_at",
})
"""The contract's ``Document`` object, key for key."""

ACTIONS = ("upload", "download", "verify", "archive", "list")

ALLOWED: Mapping[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(ACTIONS),
    Role.ISSUER: frozenset(ACTIONS),
    Role.INVESTOR: frozenset({"download", "list"}),
    Role.AUDITOR: frozenset({"download", "verify", "list"}),
    Role.COMPLIANCE_OFFICER: frozenset({"download", "verify", "archive", "list"}),
}
"""The contract's role matrix, written out independently of the code's."""

SUCCESS = {"upload": 201, "download": 200, "verify": 200, "archive": 200, "list": 200}
"""The status each action answers when it is allowed."""


def list_path(entity_id: UUID | str) -> str:
    return f"{API}/documents/{entity_id}"


def download_path(document_id: UUID | str) -> str:
    return f"{API}/documents/{document_id}/download"


def archive_path(document_id: UUID | str) -> str:
    return f"{API}/documents/{document_id}"


def url_path(url: str) -> str:
    """The path (and query) of an absolute URL, for the test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def post_upload(
    client: Client,
    *,
    entity_id: UUID | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    mime: str = "application/pdf",
    filename: str = "contract.pdf",
    fields: Iterable[tuple[str, str]] | None = None,
    with_file: bool = True,
    file_first: bool = False,
    **extra: str,
) -> Response:
    """POST one multipart upload; fields default to a valid form for ``entity_id``."""
    if fields is None:
        fields = upload_fields(entity_id or uuid4(), **extra)
    file = (filename, pdf_bytes() if content is None else content, mime) if with_file else None
    body, content_type = multipart_body(fields, file, file_first=file_first)
    sent = dict(actor_headers(Role.ISSUER) if headers is None else headers)
    sent["Content-Type"] = content_type
    return await client.post(UPLOAD, data=body, headers=sent)


async def uploaded(client: Client, **kwargs: Any) -> dict[str, Any]:
    """Upload a document that must be accepted, and return its ``Document``."""
    response = await post_upload(client, **kwargs)
    assert response.status_code == 201, await response.get_data(as_text=True)
    document: dict[str, Any] = await response.get_json()
    return document


async def verify(
    client: Client, document_id: str, headers: Mapping[str, str] | None = None,
    **body: Any,
) -> Response:
    payload = {"document_id": document_id, **body}
    sent = dict(actor_headers(Role.AUDITOR) if headers is None else headers)
    sent["Content-Type"] = "application/json"
    return await client.post(VERIFY, data=json.dumps(payload).encode(), headers=sent)


async def problem(response: Response, status: int, error_code: str) -> dict[str, Any]:
    """Check an RFC 9457 error answer and return its body."""
    text = await response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status
    assert body["error_code"] == error_code
    assert {"type", "title", "detail"} <= body.keys()
    return body


def _read_outbox(database: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT destination, body FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return [{"destination": destination, **json.loads(body)} for destination, body in rows]


async def outbox(settings: Settings) -> list[dict[str, Any]]:
    """Every outbox row so far, delivered or not: the event body plus its destination."""
    return await trio.to_thread.run_sync(_read_outbox, settings.vault_data_dir / "vault.sqlite3")


async def audit_rows(settings: Settings) -> list[dict[str, Any]]:
    return [row for row in await outbox(settings) if row["destination"] == "audit_events"]


def object_path(settings: Settings, storage_key: str) -> Path:
    return settings.vault_data_dir / "blobs" / "objects" / storage_key


async def act(
    client: Client,
    action: str,
    headers: Mapping[str, str],
    admin: Mapping[str, str] | None = None,
) -> Response:
    """Perform one of ``ACTIONS`` with ``headers``; every action but an upload is on a fresh
    document uploaded with ``admin`` (an admin's headers by default)."""
    entity = uuid4()
    if action == "upload":
        return await post_upload(client, entity_id=entity, headers=headers)
    doc = await uploaded(
        client, entity_id=entity,
        headers=actor_headers(Role.ADMIN) if admin is None else admin,
    )
    match action:
        case "download":
            return await client.get(download_path(doc["id"]), headers=dict(headers))
        case "verify":
            return await verify(client, doc["id"], headers)
        case "archive":
            return await client.delete(archive_path(doc["id"]), headers=dict(headers))
        case "list":
            return await client.get(list_path(entity), headers=dict(headers))
    raise AssertionError(action)


async def assert_matrix_answer(response: Response, role: Role, action: str) -> None:
    """The answer the role matrix gives ``role`` for ``action``: success, or 403."""
    if action in ALLOWED[role]:
        assert response.status_code == SUCCESS[action], await response.get_data(as_text=True)
    else:
        await problem(response, 403, "UNAUTHORIZED_ACCESS")


def decisions(logs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ``access_decided`` entries among captured log entries."""
    return [entry for entry in logs if entry["event"] == "access_decided"]


def assert_decided(
    logged: Iterable[Mapping[str, Any]], *, actor: UUID, role: str, entity: str, source: str
) -> None:
    """Each decision names ``actor`` with ``role``, the document's ``entity`` and its ``source``."""
    for decision in logged:
        assert decision["actor_id"] == str(actor)
        assert decision["role"] == role
        assert decision["entity_id"] == entity
        assert decision["source"] == source


async def quiesce(vault: Vault) -> None:
    """Wait until every task is blocked and no worker thread is busy."""
    backends = vault.backends
    limiters = (backends.db_limiter, backends.blob_limiter, backends.sink_limiter)
    await wait_all_tasks_blocked(cushion=0.001)
    await eventually(
        lambda: all(limiter.borrowed_tokens == 0 for limiter in limiters),
        "every worker thread of the vault to be idle", within=5,
    )
