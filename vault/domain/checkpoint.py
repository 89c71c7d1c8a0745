"""Checkpoints (c2sp.org/tlog-checkpoint) and offline proofs (c2sp.org/tlog-proof@v1).

A checkpoint is a signed note whose text is the log's origin, its tree size
(ASCII decimal, no leading zeros) and its RFC 6962 root hash (standard
base64 of 32 bytes), each line ending in a newline; any further non-empty
lines are extension lines, kept when read but never written by the vault.
The log's key name is its origin, so ``open_checkpoint`` refuses a verifier
named otherwise and ``signed_checkpoint`` a signer named otherwise.

A tlog-proof bundles an inclusion proof with the checkpoint it is against::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data; here the leaf>   (line omitted when absent)
    index <zero-based leaf index>
    <base64 hash>                                (zero or more, leaf side first)

    <the signed checkpoint, verbatim>

Parsing is strict (the text must be the one ``format`` writes for the same
values), so a proof or checkpoint read and written again is the same bytes.
Errors are ``CheckpointError`` subclasses (``NoteError``, so ``ValueError``).
Checking the inclusion hashes is the Merkle module's job, not this one's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

import attrs

from vault.domain.note import NoteError, Signer, Verifier, open_note, sign_note

HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_DIGITS = frozenset("0123456789")


class CheckpointError(NoteError):
    """A checkpoint or tlog-proof that cannot be used."""


class MalformedCheckpoint(CheckpointError):
    """The note text is not a checkpoint."""


class OriginMismatch(CheckpointError):
    """The key's name is not the checkpoint's origin."""


class MalformedProof(CheckpointError):
    """The text is not a c2sp.org/tlog-proof@v1 proof."""


def parse_decimal(text: str) -> int | None:
    """ASCII decimal, no sign, no leading zeros (``0`` itself allowed), at most 2**64 - 1."""
    if not text or any(c not in _DIGITS for c in text) or (text[0] == "0" and text != "0"):
        return None
    value = int(text)
    return value if value <= MAX_TREE_SIZE else None


def decode_hash(text: str) -> bytes | None:
    """Canonical standard base64 of exactly 32 bytes, else ``None``."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode() != text:
        return None
    return raw


def _str_tuple(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(lines)


def _bytes_tuple(hashes: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(hashes)


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _check_line(value: str, what: str) -> None:
    if not value:
        raise MalformedCheckpoint(f"checkpoint {what} is empty")
    if any(c < " " for c in value):
        raise MalformedCheckpoint(f"checkpoint {what} contains a control character")


def _check_checkpoint(cp: Checkpoint) -> None:
    _check_line(cp.origin, "origin")
    if not 0 <= cp.size <= MAX_TREE_SIZE:
        raise MalformedCheckpoint("checkpoint size is out of range")
    if len(cp.root_hash) != HASH_SIZE:
        raise MalformedCheckpoint("checkpoint root hash is not 32 bytes")
    for line in cp.extensions:
        _check_line(line, "extension line")


@attrs.frozen
class Checkpoint:
    """A tree head: origin, tree size, root hash, and any extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        _check_checkpoint(self)

    def format(self) -> str:
        """The note text: one LF-terminated line per field."""
        lines = [self.origin, str(self.size), _encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint's note text; ``MalformedCheckpoint`` naming the bad line."""
        if not text.endswith("\n"):
            raise MalformedCheckpoint("checkpoint text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpoint("checkpoint has fewer than three lines")
        origin, size_text, root_text, *extensions = lines
        size = parse_decimal(size_text)
        if size is None:
            raise MalformedCheckpoint("checkpoint size is not a decimal without leading zeros")
        root = decode_hash(root_text)
        if root is None:
            raise MalformedCheckpoint("checkpoint root hash is not base64 of 32 bytes")
        return cls(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))


def signed_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    """The checkpoint as a signed note; the signer's name must be the origin."""
    if signer.name != cp.origin:
        raise OriginMismatch("signing key name is not the checkpoint origin")
    return sign_note(cp.format(), signer)


def open_checkpoint(note_text: str | bytes, verifier: Verifier) -> Checkpoint:
    """The checkpoint of a note signed by ``verifier``, whose name is its origin."""
    note = open_note(note_text, [verifier])
    cp = Checkpoint.parse(note.text)
    if cp.origin != verifier.name:
        raise OriginMismatch("checkpoint origin is not the verifier key's name")
    return cp


def checkpoint_body(note_text: str) -> Checkpoint:
    """The unverified checkpoint of a signed note: layout only, not to be trusted."""
    split = note_text.rfind("\n\n")
    if split < 0:
        raise MalformedCheckpoint("signed checkpoint has no blank line before its signatures")
    return Checkpoint.parse(note_text[: split + 1])


def _check_proof(proof: TlogProof) -> None:
    if proof.extra is not None and not proof.extra:
        raise MalformedProof("tlog-proof extra data is empty (omit it instead)")
    if not 0 <= proof.index <= MAX_TREE_SIZE:
        raise MalformedProof("tlog-proof index is out of range")
    if any(len(h) != HASH_SIZE for h in proof.hashes):
        raise MalformedProof("tlog-proof hash is not 32 bytes")
    if not proof.checkpoint.endswith("\n") or proof.checkpoint.startswith("\n"):
        raise MalformedProof("tlog-proof checkpoint is empty or does not end in a newline")


@attrs.frozen
class TlogProof:
    """An inclusion proof with its extra data (the leaf) and its signed checkpoint."""

    extra: bytes | None
    index: int
    hashes: tuple[bytes, ...] = attrs.field(converter=_bytes_tuple)
    checkpoint: str
    """The signed checkpoint note, verbatim."""

    def __attrs_post_init__(self) -> None:
        _check_proof(self)

    def format(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_encode(h) for h in self.hashes)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        """A tlog-proof; the checkpoint's layout is checked, its signatures are not."""
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise MalformedProof("tlog-proof has no blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise MalformedProof(f"tlog-proof does not start with {TLOG_PROOF_HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra_text = rest.pop(0)[len("extra "):]
            try:
                extra = base64.b64decode(extra_text.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise MalformedProof("tlog-proof extra line is not base64") from None
            if not extra or _encode(extra) != extra_text:
                raise MalformedProof("tlog-proof extra line is not canonical base64 data")
        if not rest or not rest[0].startswith("index "):
            raise MalformedProof("tlog-proof has no index line")
        index = parse_decimal(rest.pop(0)[len("index "):])
        if index is None:
            raise MalformedProof("tlog-proof index is not a decimal without leading zeros")
        hashes = []
        for line in rest:
            value = decode_hash(line)
            if value is None:
                raise MalformedProof("tlog-proof hash line is not base64 of 32 bytes")
            hashes.append(value)
        try:
            size = checkpoint_body(checkpoint).size
        except CheckpointError as exc:
            raise MalformedProof(f"tlog-proof checkpoint: {exc}") from None
        if index >= size:
            raise MalformedProof("tlog-proof index is not below the checkpoint's tree size")
        return cls(extra=extra, index=index, hashes=tuple(hashes), checkpoint=checkpoint)

    def open(self, verifier: Verifier) -> Checkpoint:
        """The proof's checkpoint, once its signature by ``verifier`` is checked."""
        cp = open_checkpoint(self.checkpoint, verifier)
        if self.index >= cp.size:
            raise MalformedProof("tlog-proof index is not below the checkpoint's tree size")
        return cp
