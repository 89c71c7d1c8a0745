"""The witness side of c2sp.org/tlog-witness ``add-checkpoint``, without the I/O.

A log asks a witness to cosign its new checkpoint by POSTing::

    old <size of the checkpoint the witness last cosigned, decimal, no leading zeros>
    <base64 consistency proof hash>        (zero to 63 lines)

    <the signed checkpoint note, verbatim>

``AddCheckpointRequest`` builds and strictly parses that body (the text
must be the one ``format`` writes). ``decide`` is the witness's answer,
given the log keys it trusts for the origin and the size and root it last
cosigned there (``None``: never), as the spec orders the checks:

* ``Rejected(400)`` malformed body, or old size above the checkpoint's;
* ``Rejected(404)`` unknown origin;
* ``Rejected(403)`` no trusted log key signed it, or one's signature fails;
* ``Conflict`` (409, ``text/x.tlog.size``, body ``<size>\\n``) old size is
  not the size last cosigned (zero if none);
* ``Rejected(422)`` a size-0 checkpoint whose root is not the empty tree's,
  a proof from size 0 that is not empty, the same size with another root,
  or a consistency proof that does not verify;
* ``Accepted`` (200): the ``cosignature/v1`` lines, the state to persist
  and the checkpoint cosigned, for ``GET <origin hash>/checkpoint``.

Checking the stored size and persisting the new state must be one atomic
step, which is the caller's job; so is reading the clock for ``timestamp``.
A ``Rejected`` after the log's signature verified carries the checkpoint,
which the spec lets a witness keep as possible evidence of misbehaviour.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable, Mapping, Sequence

import attrs

from vault.domain.checkpoint import (
    HASH_SIZE,
    Checkpoint,
    CheckpointError,
    checkpoint_body,
    decode_hash,
    parse_decimal,
)
from vault.domain.cosignature import CosignerKey, cosign
from vault.domain.merkle import EMPTY_ROOT, ProofError, verify_consistency
from vault.domain.note import (
    InvalidSignature,
    MalformedNote,
    NoteError,
    UnverifiedNote,
    Verifier,
    open_note,
    parse_note,
)

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
_OLD_PREFIX = "old "


class MalformedRequest(ValueError):
    """An ``add-checkpoint`` body that does not follow the protocol's format."""


class Status(enum.IntEnum):
    """The HTTP status codes ``add-checkpoint`` answers with."""

    OK = 200
    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    UNPROCESSABLE_ENTITY = 422


def _bytes_tuple(hashes: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(hashes)


def _check_request(request: AddCheckpointRequest) -> None:
    if not 0 <= request.old_size < 2**64:
        raise MalformedRequest("old size is out of range")
    if len(request.proof) > MAX_PROOF_LINES:
        raise MalformedRequest(f"consistency proof has more than {MAX_PROOF_LINES} lines")
    if any(len(h) != HASH_SIZE for h in request.proof):
        raise MalformedRequest("consistency proof hash is not 32 bytes")
    try:
        parse_note(request.checkpoint)
        checkpoint_body(request.checkpoint)
    except NoteError as exc:
        raise MalformedRequest(f"signed checkpoint: {exc}") from None


@attrs.frozen
class AddCheckpointRequest:
    """An ``add-checkpoint`` body: old size, consistency proof, signed checkpoint."""

    old_size: int
    proof: tuple[bytes, ...] = attrs.field(converter=_bytes_tuple)
    checkpoint: str
    """The signed checkpoint note, verbatim (its layout is checked, not its signatures)."""

    def __attrs_post_init__(self) -> None:
        _check_request(self)

    @property
    def origin(self) -> str:
        """The checkpoint's origin line, not yet vouched for by any key."""
        return checkpoint_body(self.checkpoint).origin

    def format(self) -> str:
        lines = [f"{_OLD_PREFIX}{self.old_size}"]
        lines.extend(base64.b64encode(h).decode() for h in self.proof)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint

    @classmethod
    def parse(cls, body: str | bytes) -> AddCheckpointRequest:
        """A request body; ``MalformedRequest`` naming the part that is wrong."""
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedRequest("request body is not valid UTF-8") from None
        head, sep, checkpoint = body.partition("\n\n")
        if not sep:
            raise MalformedRequest("request has no empty line before its checkpoint")
        old_line, *proof_lines = head.split("\n")
        if not old_line.startswith(_OLD_PREFIX):
            raise MalformedRequest("request does not start with an 'old <size>' line")
        old_size = parse_decimal(old_line[len(_OLD_PREFIX):])
        if old_size is None:
            raise MalformedRequest("old size is not a decimal without leading zeros")
        if len(proof_lines) > MAX_PROOF_LINES:
            raise MalformedRequest(f"consistency proof has more than {MAX_PROOF_LINES} lines")
        proof = []
        for line in proof_lines:
            value = decode_hash(line)
            if value is None:
                raise MalformedRequest("consistency proof line is not base64 of 32 bytes")
            proof.append(value)
        return cls(old_size=old_size, proof=tuple(proof), checkpoint=checkpoint)


@attrs.frozen
class WitnessedState:
    """The size and root hash of the latest checkpoint cosigned for an origin."""

    size: int
    root_hash: bytes

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.size < 2**64 or len(self.root_hash) != HASH_SIZE:
            raise ValueError("witnessed state needs a tree size and a 32-byte root hash")


@attrs.frozen
class Accepted:
    """200: the checkpoint is cosigned and ``state`` is to be persisted."""

    checkpoint: Checkpoint
    signatures: str
    """The witness's cosignature lines: the response body."""
    note: str
    """The checkpoint with the verified log signatures and the witness's cosignatures."""
    state: WitnessedState
    status: Status = Status.OK
    content_type: str = TEXT_CONTENT_TYPE

    @property
    def body(self) -> str:
        return self.signatures


@attrs.frozen
class Conflict:
    """409: the old size is not the size the witness last cosigned, which is ``size``."""

    size: int
    status: Status = Status.CONFLICT
    content_type: str = SIZE_CONTENT_TYPE

    @property
    def body(self) -> str:
        return f"{self.size}\n"


@attrs.frozen
class Rejected:
    """400, 403, 404 or 422, with the reason (never key material) as plain text."""

    status: Status
    reason: str
    checkpoint: Checkpoint | None = None
    """The checkpoint, when the log's signature on it verified."""
    content_type: str = TEXT_CONTENT_TYPE

    @property
    def body(self) -> str:
        return self.reason + "\n"


Outcome = Accepted | Conflict | Rejected


def _consistency(
    request: AddCheckpointRequest, state: WitnessedState | None, cp: Checkpoint
) -> str | None:
    """Why the checkpoint is not consistent with ``state`` (422), or ``None``."""
    if cp.size == 0 and cp.root_hash != EMPTY_ROOT:
        return "a checkpoint of size 0 must have the empty tree's root hash"
    if request.old_size == 0:
        return "the consistency proof from size 0 must be empty" if request.proof else None
    if state is None:  # unreachable: old_size == 0 when nothing was cosigned
        raise ValueError("old size is not zero, yet nothing was cosigned")
    if cp.size == state.size and cp.root_hash != state.root_hash:
        return "the root hash differs from the one cosigned at this size"
    try:
        verify_consistency(state.size, cp.size, request.proof, state.root_hash, cp.root_hash)
    except ProofError as exc:
        return f"the consistency proof does not verify: {exc}"
    return None


def decide(
    request: AddCheckpointRequest,
    log_keys: Sequence[Verifier] | None,
    state: WitnessedState | None,
    cosigners: Sequence[CosignerKey],
    timestamp: int,
) -> Outcome:
    """The witness's answer to ``request`` for the origin's keys and last cosigned state.

    ``log_keys`` are the keys trusted for ``request.origin`` (``None`` or
    empty: unknown origin); ``timestamp`` is now in POSIX seconds, at least 1.
    Configuration faults raise instead of answering: no cosigner, a zero
    timestamp (``ValueError``), two log keys sharing name and id (``InvalidKey``).
    """
    if not cosigners:
        raise ValueError("a witness needs at least one cosigner key")
    if timestamp < 1:
        raise ValueError("a witness's cosignature timestamp must not be zero")
    if not log_keys:
        return Rejected(Status.NOT_FOUND, "unknown log origin")
    try:
        note = open_note(request.checkpoint, log_keys)
    except (InvalidSignature, UnverifiedNote):
        return Rejected(Status.FORBIDDEN, "checkpoint is not signed by a trusted log key")
    except MalformedNote as exc:
        return Rejected(Status.BAD_REQUEST, f"signed checkpoint: {exc}")
    try:
        cp = Checkpoint.parse(note.text)
    except CheckpointError as exc:
        return Rejected(Status.BAD_REQUEST, f"signed checkpoint: {exc}")
    if request.old_size > cp.size:
        return Rejected(Status.BAD_REQUEST, "old size is above the checkpoint size", cp)
    witnessed = state.size if state is not None else 0
    if request.old_size != witnessed:
        return Conflict(witnessed)
    problem = _consistency(request, state, cp)
    if problem is not None:
        return Rejected(Status.UNPROCESSABLE_ENTITY, problem, cp)
    signatures = "".join(cosign(note.text, key, timestamp) for key in cosigners)
    log_lines = "".join(signature.line() for signature in note.signatures)
    return Accepted(
        checkpoint=cp,
        signatures=signatures,
        note=note.text + "\n" + log_lines + signatures,
        state=WitnessedState(cp.size, cp.root_hash),
    )


def add_checkpoint(
    body: str | bytes,
    logs: Mapping[str, Sequence[Verifier]],
    states: Mapping[str, WitnessedState],
    cosigners: Sequence[CosignerKey],
    timestamp: int,
) -> Outcome:
    """Parse ``body`` and ``decide`` it with the keys and state kept for its origin."""
    try:
        request = AddCheckpointRequest.parse(body)
    except MalformedRequest as exc:
        return Rejected(Status.BAD_REQUEST, str(exc))
    origin = request.origin
    return decide(request, logs.get(origin), states.get(origin), cosigners, timestamp)
