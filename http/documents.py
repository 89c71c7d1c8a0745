"""The ``/api/v1`` document routes other than the upload (``http/upload.py``).

Order of checks, as the contract fixes it: identity (401), request shape
(422), the document exists (404), permission (403). Reads go through the
vault's read side (``actors.reads``); every change goes through the actor
that owns it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from quart import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from actors.archiver import Archived, ArchiveDocument
from actors.runtime import ask
from actors.verifier import VerifyDocument
from vault.config import MAX_URL_EXPIRY_SECONDS
from vault.domain.errors import BodyTooLarge, DocumentDisposed, InvalidExpiry, InvalidRequest
from vault.domain.models import Action, Document, EntityType, document_json, iso_response
from vault.domain.validation import JsonRefused, load_json
from vault.ports import PageCursor

from .body import SMALL_BODY_LIMIT
from .responses import json_response
from .state import authorize, correlation_id, identify, parse_integer, parse_uuid, state

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

api = Blueprint("documents", __name__, url_prefix="/api/v1")


# ---------------------------------------------------------------- verify


@api.post("/documents/verify")
async def verify() -> Response:
    body = await json_body()
    actor_raw = body.get("verifier_id", body.get("verified_by"))
    if actor_raw is not None and not isinstance(actor_raw, str):
        actor_raw = str(actor_raw)
    actor = identify(actor_raw)
    document_id = parse_uuid(_str_or_none(body.get("document_id")), "body", "document_id")
    named = parse_uuid(actor_raw, "body", "verifier_id", required=False)
    assert document_id is not None
    doc = await state().vault.reads.document(document_id)
    await authorize(actor, Action.VERIFY, doc, "verifier_id", named)
    refuse_disposed(doc)
    st = state()
    result = await ask(
        st.vault.verifier,
        lambda reply: VerifyDocument(document_id, actor, correlation_id(), reply),
        deadline=st.deadline(),
        returns=Document,
    )
    return json_response(document_json(result))


def refuse_disposed(doc: Document) -> None:
    """410 ``DOCUMENT_DISPOSED`` for a tombstone (after 401, 422, 404 and 403; before 423)."""
    if doc.is_disposed:
        raise DocumentDisposed(doc.id)


async def json_body() -> dict[str, Any]:
    try:
        raw = await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise BodyTooLarge(SMALL_BODY_LIMIT) from None
    try:
        body = load_json(raw or b"null")
    except JsonRefused as exc:
        raise InvalidRequest.field("body", "json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest.field("body", "json", "body must be a JSON object")
    return body


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- list


def encode_cursor(doc: Document) -> str:
    return encode_position(doc.created_at, doc.id)


def encode_position(at: datetime, item_id: UUID) -> str:
    """A page position (newest first: strictly after ``(at, item_id)``), opaque to clients."""
    raw = json.dumps([at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> PageCursor:
    """The page position ``encode_cursor`` wrote; anything else is a 422 naming ``cursor``.

    A cursor is a flat JSON pair of strings, so nothing deeper is parsed, and
    an instant that cannot be brought to UTC (year 1 at +14:00) is malformed.
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        pair = load_json(base64.urlsafe_b64decode(padded.encode()), max_depth=1)
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise ValueError("not a pair of strings")
        created, doc_id = pair
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return PageCursor(created_at=moment.astimezone(UTC), document_id=UUID(doc_id))
    except (ValueError, OverflowError, binascii.Error):
        raise InvalidRequest.field("query", "cursor", "malformed cursor") from None


def query_choice(name: str, choices: type[E]) -> E | None:
    """The query parameter ``name`` as one of the enum's values (None when absent), or a 422."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return choices(raw)
    except ValueError:
        allowed = " or ".join(c.value for c in choices)
        raise InvalidRequest.field("query", name, f"must be {allowed}") from None


def query_cursor() -> PageCursor | None:
    raw = request.args.get("cursor")
    return decode_cursor(raw) if raw else None


def next_position(found: Sequence[T], size: int, position: Callable[[T], tuple[datetime, UUID]]
                  ) -> str | None:
    """The cursor of the page after ``found[:size]`` (``found`` holds one more when there
    is one), or None."""
    if len(found) <= size:
        return None
    return encode_position(*position(found[size - 1]))


def _bool_param(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidRequest.field("query", name, "must be true or false")


@api.get("/documents/<entity_id>")
async def list_documents(entity_id: str) -> Response:
    listing_actor = identify(None)
    entity = parse_uuid(entity_id, "path", "entity_id")
    assert entity is not None
    raw_type = request.args.get("entity_type")
    entity_type = None
    if raw_type:
        try:
            entity_type = EntityType(raw_type)
        except ValueError:
            raise InvalidRequest.field(
                "query", "entity_type", f"must be one of {', '.join(EntityType)}"
            ) from None
    include_archived = _bool_param("include_archived", False)
    raw_limit = request.args.get("limit", "100")
    try:
        limit = parse_integer(raw_limit)
    except ValueError:
        raise InvalidRequest.field("query", "limit", "must be an integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequest.field("query", "limit", "must be between 1 and 1000")
    raw_cursor = request.args.get("cursor")
    after = decode_cursor(raw_cursor) if raw_cursor else None
    await state().authorizer.authorize_listing(listing_actor, entity)
    docs = await state().vault.reads.documents(
        entity, entity_type=entity_type, include_archived=include_archived,
        limit=limit + 1, after=after,
    )
    next_cursor = encode_cursor(docs[limit - 1]) if len(docs) > limit else None
    return json_response(
        {"documents": [document_json(d) for d in docs[:limit]], "next_cursor": next_cursor}
    )


# ---------------------------------------------------------------- download


@api.get("/documents/<document_id>/download")
async def download(document_id: str) -> Response:
    actor_raw = request.args.get("requestor_id")
    actor = identify(actor_raw)
    doc_id = parse_uuid(document_id, "path", "document_id")
    named = parse_uuid(actor_raw, "query", "requestor_id", required=False)
    st = state()
    expires_in = st.settings.presigned_url_expiration_seconds
    raw_expiry = request.args.get("expires_in")
    if raw_expiry is not None:
        try:
            expires_in = parse_integer(raw_expiry)
        except ValueError:
            raise InvalidRequest.field("query", "expires_in", "must be an integer") from None
    assert doc_id is not None
    doc = await st.vault.reads.document(doc_id)
    await authorize(actor, Action.DOWNLOAD, doc, "requestor_id", named)
    if not 1 <= expires_in <= MAX_URL_EXPIRY_SECONDS:
        raise InvalidExpiry(
            f"expires_in must be between 1 and {MAX_URL_EXPIRY_SECONDS} seconds"
        )
    refuse_disposed(doc)
    await st.vault.freezes.check(doc.entity_id)
    issued = await st.vault.reads.download_url(
        doc, actor, expires_in=expires_in, correlation_id=correlation_id()
    )
    return json_response({
        "document_id": str(doc.id),
        "download_url": issued.url,
        "expires_in_seconds": expires_in,
        "expires_at": iso_response(issued.expires_at),
    })


# ---------------------------------------------------------------- archive


@api.delete("/documents/<document_id>")
async def archive(document_id: str) -> Response:
    actor_raw = request.args.get("archived_by")
    actor = identify(actor_raw)
    doc_id = parse_uuid(document_id, "path", "document_id")
    named = parse_uuid(actor_raw, "query", "archived_by", required=False)
    assert doc_id is not None
    doc = await state().vault.reads.document(doc_id)
    await authorize(actor, Action.ARCHIVE, doc, "archived_by", named)
    refuse_disposed(doc)
    st = state()
    await st.vault.freezes.check(doc.entity_id)
    result = await ask(
        st.vault.archiver,
        lambda reply: ArchiveDocument(doc_id, actor, correlation_id(), reply),
        deadline=st.deadline(),
        returns=Archived,
    )
    return json_response({
        "document_id": str(result.document.id),
        "status": "archived",
        "archived_at": iso_response(result.document.archived_at),
    })
