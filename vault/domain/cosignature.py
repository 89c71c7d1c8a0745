"""Witness cosignatures (c2sp.org/tlog-cosignature), Ed25519 ``cosignature/v1``.

A cosignature is a signed-note signature line on a checkpoint, by a witness
(a *cosigner*) that verified the checkpoint is consistent with the largest
tree it has seen for that origin::

    — <witness name> base64(4-byte key id ‖ 8-byte big-endian timestamp ‖ 64-byte signature)

The key id is the first four bytes of ``SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public
key)`` (signature type ``0x04``), so a witness key never shares an id with
the same key used for plain Ed25519 notes. Verifier keys travel as
``<name>+<8 hex id>+<base64(0x04 ‖ public key)>``; signer keys as Go's
``PRIVATE+KEY+<name>+<hex id>+<base64(0x04 ‖ seed)>`` (a ``0x01`` seed is
read too, as transparency-dev/formats does). The signed message is::

    cosignature/v1
    time <POSIX seconds, decimal, no leading zeros>
    <the checkpoint note text: origin, size, root, extension lines>

Timestamps are arguments (this module reads no clock) and lie in
``[0, 2**63 - 1]``. As signed-note requires, lines by keys other than the
ones asked about are ignored, and a known key's bad cosignature rejects the
note. Errors are ``CosignatureError`` (a ``NoteError``, so ``ValueError``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vault.domain.checkpoint import Checkpoint
from vault.domain.note import (
    SIGNATURE_TYPE_ED25519,
    InvalidKey,
    NoteError,
    Signature,
    Verifier,
    _b64decode,
    _key_parts,
    _split,
    ed25519_verifies,
    is_valid_key_name,
    key_string,
)

SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
MAX_TIMESTAMP = 2**63 - 1
TIMESTAMP_SIZE = 8
ED25519_SIGNATURE_SIZE = 64
_KEY_SIZE = 32
_PRIVATE_PREFIX = "PRIVATE+KEY+"


class CosignatureError(NoteError):
    """A cosignature, or a cosigner key, that cannot be used."""


class MalformedCosignature(CosignatureError):
    """A cosignature line whose payload is not id ‖ timestamp ‖ signature."""


class InvalidCosignature(CosignatureError):
    """A line by the witness's name and key id that does not verify."""


class MissingCosignature(CosignatureError):
    """The note has no line by the witness's name and key id."""


def cosigner_key_id(name: str, public_key: bytes) -> int:
    """``SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]``, big-endian."""
    material = name.encode() + b"\n" + bytes([SIGNATURE_TYPE_COSIGNATURE_V1]) + public_key
    return int.from_bytes(hashlib.sha256(material).digest()[:4], "big")


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise InvalidKey("cosigner key name must be non-empty, without '+' or spaces")


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CosignatureError("cosignature timestamp is not in [0, 2**63 - 1]")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@attrs.frozen
class CosignerVerifier:
    """A witness's public key: name, ``0x04`` key id and 32-byte Ed25519 key."""

    name: str
    key_id: int
    public_key: bytes = attrs.field(repr=False)

    @classmethod
    def from_key(cls, name: str, public_key: Ed25519PublicKey) -> CosignerVerifier:
        _check_name(name)
        raw = _raw_public(public_key)
        return cls(name=name, key_id=cosigner_key_id(name, raw), public_key=raw)

    @classmethod
    def parse(cls, vkey: str) -> CosignerVerifier:
        """A ``0x04`` verifier key string; ``InvalidKey`` naming the part that is wrong."""
        parts = vkey.split("+", 2) if vkey.strip() == vkey else []
        if len(parts) != 3:
            raise InvalidKey("cosigner key is not <name>+<hex id>+<base64 key>")
        name, declared, material = _key_parts(parts, "cosigner")
        if material[0] != SIGNATURE_TYPE_COSIGNATURE_V1:
            raise InvalidKey(f"cosigner key has signature type 0x{material[0]:02x}, not 0x04")
        if len(material) != 1 + _KEY_SIZE:
            raise InvalidKey("cosigner key has the wrong length for Ed25519")
        verifier = cls(name=name, key_id=declared, public_key=material[1:])
        if cosigner_key_id(name, verifier.public_key) != declared:
            raise InvalidKey("cosigner key id does not match its name and key")
        return verifier

    @classmethod
    def from_note_verifier(cls, verifier: Verifier) -> CosignerVerifier:
        """The same Ed25519 key and name as a ``0x01`` note key, with its ``0x04`` id."""
        return cls(
            name=verifier.name,
            key_id=cosigner_key_id(verifier.name, verifier.public_key),
            public_key=verifier.public_key,
        )

    def format(self) -> str:
        return key_string(self.name, self.key_id, SIGNATURE_TYPE_COSIGNATURE_V1, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519_verifies(self.public_key, message, signature)


@attrs.frozen
class CosignerKey:
    """A witness's Ed25519 signing key under its name."""

    name: str
    key_id: int
    private_key: Ed25519PrivateKey = attrs.field(repr=False, eq=False)

    @classmethod
    def generate(cls, name: str) -> CosignerKey:
        return cls.from_key(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_key(cls, name: str, private_key: Ed25519PrivateKey) -> CosignerKey:
        _check_name(name)
        raw = _raw_public(private_key.public_key())
        return cls(name=name, key_id=cosigner_key_id(name, raw), private_key=private_key)

    @classmethod
    def parse(cls, skey: str) -> CosignerKey:
        """``PRIVATE+KEY+<name>+<hex id>+<base64(0x04 or 0x01 ‖ seed)>``.

        The declared id must be the one the type byte implies: the ``0x04``
        id for a ``0x04`` key, the plain note id for a ``0x01`` key.
        """
        if not skey.startswith(_PRIVATE_PREFIX):
            raise InvalidKey("cosigner key does not start with PRIVATE+KEY+")
        parts = skey[len(_PRIVATE_PREFIX):].split("+", 2)
        if len(parts) != 3:
            raise InvalidKey("cosigner key is not PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        name, declared, material = _key_parts(parts, "cosigner")
        kind = material[0]
        if kind not in (SIGNATURE_TYPE_COSIGNATURE_V1, SIGNATURE_TYPE_ED25519):
            raise InvalidKey(f"cosigner key has unknown signature type 0x{kind:02x}")
        if len(material) != 1 + _KEY_SIZE:
            raise InvalidKey("cosigner key has the wrong length for Ed25519")
        key = cls.from_key(name, Ed25519PrivateKey.from_private_bytes(material[1:]))
        raw = key.verifier().public_key
        expected = hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + raw).digest()[:4]
        if int.from_bytes(expected, "big") != declared:
            raise InvalidKey("cosigner key id does not match its name and key")
        return key

    def format(self) -> str:
        """The ``0x04`` private key string; it holds the secret seed."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        material = base64.b64encode(bytes([SIGNATURE_TYPE_COSIGNATURE_V1]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{material}"

    def verifier(self) -> CosignerVerifier:
        return CosignerVerifier.from_key(self.name, self.private_key.public_key())


def cosigned_message(checkpoint_note_body: str, timestamp: int) -> bytes:
    """The bytes signed: header line, ``time`` line, then the note text verbatim."""
    _check_timestamp(timestamp)
    Checkpoint.parse(checkpoint_note_body)
    header = f"{COSIGNATURE_HEADER}\ntime {timestamp}\n"
    return (header + checkpoint_note_body).encode("utf-8")


def cosign(checkpoint_note_body: str, signer: CosignerKey, timestamp: int) -> str:
    """The cosignature line (ending in a newline) on a checkpoint's note text."""
    signature = signer.private_key.sign(cosigned_message(checkpoint_note_body, timestamp))
    raw = signer.key_id.to_bytes(4, "big") + timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature
    return Signature(signer.name, signer.key_id, base64.b64encode(raw).decode()).line()


def cosignature_timestamp(signature_b64: str) -> int:
    """The timestamp a cosignature line's base64 payload carries; its signature is not checked."""
    raw = _b64decode(signature_b64)
    if raw is None or len(raw) != 4 + TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
        raise MalformedCosignature(
            "cosignature is not base64 of key id, 8-byte timestamp and 64-byte signature"
        )
    timestamp = int.from_bytes(raw[4 : 4 + TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise MalformedCosignature("cosignature timestamp exceeds 2**63 - 1")
    return timestamp


def _verify_lines(
    note_text: str | bytes, witnesses: Iterable[CosignerVerifier]
) -> tuple[Checkpoint, dict[tuple[str, int], int]]:
    """The note's checkpoint and, per known witness that cosigned it, the timestamp."""
    known: dict[tuple[str, int], CosignerVerifier] = {}
    for witness in witnesses:
        slot = (witness.name, witness.key_id)
        if slot in known:
            raise InvalidKey(f"two cosigner keys share name and id {witness.name}+"
                             f"{witness.key_id:08x}")
        known[slot] = witness
    text, found = _split(note_text)
    checkpoint = Checkpoint.parse(text)
    seen: dict[tuple[str, int], int] = {}
    for line, raw in found:
        slot = (line.name, line.key_id)
        key = known.get(slot)
        if key is None:
            continue
        label = f"{line.name}+{line.key_id:08x}"
        if len(raw) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            raise InvalidCosignature(f"cosignature by {label} has the wrong length")
        timestamp = int.from_bytes(raw[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            raise InvalidCosignature(f"cosignature by {label} has a timestamp beyond 2**63 - 1")
        message = cosigned_message(text, timestamp)
        if not key.verify(message, raw[TIMESTAMP_SIZE:]):
            raise InvalidCosignature(f"invalid cosignature by {label}")
        seen.setdefault(slot, timestamp)
    return checkpoint, seen


def verify_cosignature(note_text: str | bytes, witness: CosignerVerifier) -> int:
    """The timestamp of ``witness``'s cosignature on the signed checkpoint ``note_text``.

    The log's own signature is not checked here (``open_checkpoint`` does
    that). ``MissingCosignature`` when the witness did not cosign,
    ``InvalidCosignature`` when its line does not verify.
    """
    _, seen = _verify_lines(note_text, [witness])
    timestamp = seen.get((witness.name, witness.key_id))
    if timestamp is None:
        raise MissingCosignature(f"no cosignature by {witness.name}+{witness.key_id:08x}")
    return timestamp


@attrs.frozen
class Cosigned:
    """One witness's valid cosignature and the time it carries."""

    witness: CosignerVerifier
    timestamp: int


@attrs.frozen
class QuorumResult:
    """Which of the configured witnesses cosigned, and whether ``quorum`` of them did."""

    checkpoint: Checkpoint
    cosigned: tuple[Cosigned, ...]
    missing: tuple[CosignerVerifier, ...]
    quorum: int

    @property
    def met(self) -> bool:
        return len(self.cosigned) >= self.quorum


def check_quorum(
    note_text: str | bytes, witnesses: Iterable[CosignerVerifier], quorum: int
) -> QuorumResult:
    """Count the valid cosignatures among ``witnesses`` (in their order) on the note.

    Lines by other keys are ignored; a configured witness's line that does
    not verify raises ``InvalidCosignature``, as signed-note rejects such a
    note. ``quorum`` must be between 1 and the number of witnesses.
    """
    listed = tuple(witnesses)
    if not 1 <= quorum <= len(listed):
        raise ValueError(f"quorum {quorum} is not between 1 and {len(listed)} witnesses")
    checkpoint, seen = _verify_lines(note_text, listed)
    cosigned = []
    missing = []
    for witness in listed:
        timestamp = seen.get((witness.name, witness.key_id))
        if timestamp is None:
            missing.append(witness)
        else:
            cosigned.append(Cosigned(witness, timestamp))
    return QuorumResult(
        checkpoint=checkpoint, cosigned=tuple(cosigned), missing=tuple(missing), quorum=quorum
    )
