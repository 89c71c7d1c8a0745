"""``POST /api/v1/documents/upload``: the multipart body, streamed to the upload actor.

The body is parsed incrementally; the file's bytes go to the upload actor
through a small bounded channel as they arrive, so the actor's pace is the
client's (down to TCP), and the form fields are checked as soon as they
are known. Order of checks, as the contract fixes it: identity (401),
fields (422), permission (403), then the file's own (400 empty or wrong
type, 413 too large, 409 duplicate).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any
from uuid import UUID, uuid4

import trio
from quart import Blueprint, Response, request

from actors.runtime import ActorCrashed
from actors.upload import StoreDocument, UploadAbandoned
from vault.domain.errors import FileTooLarge, InvalidRequest, VaultError
from vault.domain.models import Action, Actor, Document, DocumentType, EntityType, document_json
from vault.domain.uploads import UploadForm
from vault.domain.validation import clean_filename, normalize_mime, parse_metadata

from .multipart import PartData, PartEnd, PartStart, boundary_of, parse_multipart
from .responses import json_response
from .state import authorize, correlation_id, identify, parse_integer, state

uploads = Blueprint("uploads", __name__, url_prefix="/api/v1")

FORM_ROOM = 64 * 1024
"""Bytes allowed beyond the file's limit for the other form fields."""
CHUNK_QUEUE = 8
"""Body chunks in flight between the HTTP handler and the upload actor."""
REQUIRED_UPLOAD_FIELDS = ("entity_id", "entity_type", "document_type")
MAX_TOKEN_ID = 2**31 - 1


class _UploadRequest:
    """One upload in progress: fields seen so far, and the file's trip to the actor."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.fields: dict[str, str] = {}
        self.field_bytes = 0
        self.actor: Actor | None = None
        self.form: UploadForm | None = None
        self.file_seen = False
        self.in_file = False
        self.file_bytes = 0
        self.refusal: VaultError | None = None
        self.filename = "document"
        self.chunks_send: trio.MemorySendChannel[bytes] | None = None
        self.form_send: trio.MemorySendChannel[UploadForm] | None = None
        self.reply_recv: trio.MemoryReceiveChannel[Document | VaultError] | None = None

    async def forward(self, data: bytes) -> bool:
        """Pass file bytes to the actor; False when reading should stop now."""
        self.file_bytes += len(data)
        if self.refusal is not None:  # dropping the rest of a refused file
            return self.file_bytes <= self.limit
        assert self.chunks_send is not None
        try:
            await self.chunks_send.send(data)
        except trio.BrokenResourceError:
            # The actor answers before it lets go of the file, so its reason
            # is waiting in the reply channel.
            self.refusal = self._refusal_reason()
            return not isinstance(self.refusal, FileTooLarge)
        return True

    def _refusal_reason(self) -> VaultError:
        assert self.reply_recv is not None
        try:
            reason = self.reply_recv.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return ActorCrashed("upload")
        return reason if isinstance(reason, VaultError) else ActorCrashed("upload")

    def close_chunks(self) -> None:
        if self.chunks_send is not None:
            self.chunks_send.close()
            self.chunks_send = None

    def can_resolve_early(self) -> bool:
        """Every required field arrived before the file, and the actor is known."""
        known_actor = any(
            (
                "uploaded_by" in self.fields,
                "X-Actor-Id" in request.headers,
                "Authorization" in request.headers,
            )
        )
        return known_actor and all(self.fields.get(n) for n in REQUIRED_UPLOAD_FIELDS)

    async def resolve_form(self) -> UploadForm:
        """Identity, then field shape, then permission, then metadata."""
        actor = identify(self.fields.get("uploaded_by"))
        errors = []
        for name in REQUIRED_UPLOAD_FIELDS:
            if not self.fields.get(name):
                errors.append({"loc": ["body", name], "msg": "field required"})
        if not self.file_seen:
            errors.append({"loc": ["body", "file"], "msg": "field required"})
        entity_id = _collect(errors, "entity_id", self.fields.get("entity_id"), UUID)
        entity_type = _collect(errors, "entity_type", self.fields.get("entity_type"), EntityType)
        document_type = _collect(
            errors, "document_type", self.fields.get("document_type"), DocumentType
        )
        uploaded_by = _collect(errors, "uploaded_by", self.fields.get("uploaded_by"), UUID)
        token_id = _collect(errors, "token_id", self.fields.get("token_id"), _token_id)
        if errors:
            raise InvalidRequest(errors)
        assert entity_id is not None and entity_type is not None and document_type is not None
        await authorize(actor, Action.UPLOAD, entity_id, "uploaded_by", uploaded_by)
        metadata = parse_metadata(self.fields.get("metadata"))
        await state().vault.freezes.check(entity_id)
        return UploadForm(
            entity_id=entity_id,
            entity_type=entity_type,
            document_type=document_type,
            token_id=token_id,
            metadata=metadata,
            filename=self.filename,
            actor=actor,
        )


def _token_id(raw: str) -> int:
    value = parse_integer(raw)
    if not 0 <= value <= MAX_TOKEN_ID:
        raise ValueError(raw)
    return value


def _collect(errors: list[dict[str, Any]], name: str, raw: str | None, parse: Any) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return parse(raw)
    except ValueError:
        message = {
            UUID: "not a valid UUID",
            EntityType: f"must be one of {', '.join(EntityType)}",
            DocumentType: f"must be one of {', '.join(DocumentType)}",
        }.get(parse, "not a valid value")
        errors.append({"loc": ["body", name], "msg": message})
        return None


@uploads.post("/documents/upload")
async def upload() -> Response:
    limit = state().settings.max_upload_file_size_bytes
    declared = request.content_length
    if declared is not None and declared > limit + FORM_ROOM:
        raise FileTooLarge(limit)
    boundary = boundary_of(request.headers.get("Content-Type"))
    up = _UploadRequest(limit)
    try:
        await _read_form(up, boundary)
        if not isinstance(up.refusal, FileTooLarge):
            # Identity, field and permission errors outrank the file's own.
            up.form = await up.resolve_form()
    finally:
        # The actor waits for exactly one form, or for the channel to close
        # empty (abandon): both happen here, on every path out.
        up.close_chunks()
        if up.form_send is not None:
            if up.form is not None and up.refusal is None:
                try:
                    up.form_send.send_nowait(up.form)
                except trio.BrokenResourceError:
                    pass  # the actor refused the file already; its reply says why
            up.form_send.close()
    result = up.refusal or await _await_store(up)
    if isinstance(result, VaultError):
        raise result
    if result is None:
        raise UploadAbandoned("the upload ended without a file")
    return json_response(document_json(result), 201)


async def _read_form(up: _UploadRequest, boundary: bytes) -> None:
    """Read the multipart body, forwarding the file's bytes to the upload actor.

    Fields sent before the file are checked before any of its bytes are
    read (401, 422, 403 come first); fields after it are checked once the
    body is complete. When the actor refuses the file mid-stream for its
    size, reading stops at once (413 for chunked bodies too). Refused for
    its content (wrong type), the rest of the file is read and dropped so
    the fields after it still get their say, up to the size limit.
    """
    current_field = ""
    value = bytearray()
    async with (
        aclosing(_body_chunks()) as body,
        aclosing(parse_multipart(boundary, body)) as events,
    ):
        async for event in events:
            match event:
                case PartStart(name="file", filename=filename, content_type=content_type):
                    if up.file_seen:
                        raise InvalidRequest.field("body", "file", "only one file per upload")
                    up.file_seen = up.in_file = True
                    up.filename = clean_filename(filename)
                    if up.can_resolve_early():
                        await up.resolve_form()  # fail fast; resolved again at the end
                    up.chunks_send = await _start_store(up, normalize_mime(content_type))
                case PartData(data=data) if up.in_file:
                    if not await up.forward(data):
                        return
                case PartEnd() if up.in_file:
                    up.in_file = False
                    up.close_chunks()
                case PartStart(name=name):
                    current_field = name
                    up.fields[name] = ""
                    value.clear()
                case PartData(data=data):
                    up.field_bytes += len(data)
                    if up.field_bytes > FORM_ROOM:
                        raise InvalidRequest.field("body", current_field, "form fields too large")
                    value += data
                case PartEnd():
                    # Decoded whole, so a character split between two chunks stays one.
                    # Bytes that are not UTF-8 become lone surrogates, which every field
                    # refuses in its own check, in the contract's order (a UUID or enum
                    # that does not parse, metadata that is not valid JSON); no field is
                    # kept as text unchecked.
                    up.fields[current_field] = value.decode("utf-8", "surrogateescape")


async def _body_chunks() -> AsyncGenerator[bytes, None]:
    async for chunk in request.body:
        if chunk:
            yield chunk


async def _start_store(up: _UploadRequest, mime: str) -> trio.MemorySendChannel[bytes]:
    """Hand the upload actor a new StoreDocument; from here on it reads the file."""
    st = state()
    chunks_send, chunks_recv = trio.open_memory_channel[bytes](CHUNK_QUEUE)
    form_send, form_recv = trio.open_memory_channel[UploadForm](1)
    reply_send, reply_recv = trio.open_memory_channel[Document | VaultError](1)
    up.form_send, up.reply_recv = form_send, reply_recv
    await st.vault.upload.send(
        StoreDocument(
            document_id=uuid4(),
            declared_mime=mime,
            chunks=chunks_recv,
            form=form_recv,
            correlation_id=correlation_id(),
            reply=reply_send,
        ),
        deadline=st.deadline(),
    )
    return chunks_send


async def _await_store(up: _UploadRequest) -> Document | VaultError | None:
    if up.reply_recv is None:
        return None
    with up.reply_recv:
        try:
            result: Document | VaultError = await up.reply_recv.receive()
        except trio.EndOfChannel:
            return ActorCrashed("upload")
    if isinstance(result, UploadAbandoned):
        return None
    return result
