"""Signed notes (c2sp.org/signed-note): text that one or more keys vouch for.

A note is its text (ending in a newline), a blank line, then one signature
line per key: ``— <key name> <base64(4-byte key id ‖ signature)>``. Only
Ed25519 keys (signature type ``0x01``) are known here; a key's id is the
first four bytes of ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)``. Verifier
keys travel as ``<name>+<8 hex id>+<base64(0x01 ‖ public key)>`` and signer
keys in Go's ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`` form, so
``golang.org/x/mod/sumdb/note`` and its kin read what this module writes.

Opening follows the spec and the Go reference: the note must be UTF-8 with
no control characters but newline; the text ends at the last blank line;
signatures by unknown keys are kept as unverified and otherwise ignored; a
known key's bad signature rejects the whole note, and so does a note that no
known key signed. At most ``MAX_SIGNATURES`` signature lines are read.

Errors are ``NoteError`` (a ``ValueError``) subclasses whose message names
the check that failed and never repeats key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

import attrs
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vault.domain.errors import ConfigError

SIGNATURE_TYPE_ED25519 = 0x01
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "
"""Em dash (U+2014) and a space open every signature line."""

_ED25519_KEY_SIZE = 32
_HEX_DIGITS = frozenset("0123456789abcdef")
_PRIVATE_PREFIX = "PRIVATE+KEY+"


class NoteError(ValueError):
    """A note, a key or a signature that cannot be used."""


class MalformedNote(NoteError):
    """The note's bytes do not follow the signed-note format."""


class InvalidKey(NoteError):
    """A verifier or signer key string (or key name) is not usable."""


class InvalidSignature(NoteError):
    """A known key's signature does not verify: the note is rejected."""


class UnverifiedNote(NoteError):
    """No known key signed the note."""


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no ``+``, no whitespace or Unicode spaces, no control characters."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or c < " " for c in name)
    )


def key_id(name: str, public_key: bytes) -> int:
    """The Ed25519 key id: ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``, big-endian."""
    material = name.encode() + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    return int.from_bytes(hashlib.sha256(material).digest()[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None



def _key_parts(parts: list[str], what: str) -> tuple[str, int, bytes]:
    """A key string's name, declared id and decoded material, each checked for form."""
    name, id_hex, key_b64 = parts
    if not is_valid_key_name(name):
        raise InvalidKey(f"{what} key name must be non-empty, without '+' or spaces")
    declared = _parse_key_id(id_hex)
    if declared is None:
        raise InvalidKey(f"{what} key id is not 8 lowercase hex digits")
    material = _b64decode(key_b64)
    if not material:
        raise InvalidKey(f"{what} key material is not base64")
    return name, declared, material


def _ed25519_bytes(material: bytes, what: str) -> bytes:
    """The 32 key bytes after the signature type byte, which must say Ed25519."""
    if material[0] != SIGNATURE_TYPE_ED25519:
        raise InvalidKey(f"{what} key has unknown signature type 0x{material[0]:02x}")
    if len(material) != 1 + _ED25519_KEY_SIZE:
        raise InvalidKey(f"{what} key has the wrong length for Ed25519")
    return material[1:]

def _parse_key_id(text: str) -> int | None:
    if len(text) != 8 or any(c not in _HEX_DIGITS for c in text):
        return None
    return int(text, 16)


def key_string(name: str, key_id: int, signature_type: int, public_key: bytes) -> str:
    """``<name>+<8 hex id>+<base64(type ‖ key)>``: a verifier key string of any type."""
    material = bytes([signature_type]) + public_key
    return f"{name}+{key_id:08x}+{base64.b64encode(material).decode()}"


def ed25519_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the raw Ed25519 key's signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (_CryptoInvalidSignature, ValueError):
        return False
    return True


@attrs.frozen
class Verifier:
    """An Ed25519 verifier key: name, key id and the 32-byte public key."""

    name: str
    key_id: int
    public_key: bytes = attrs.field(repr=False)

    @classmethod
    def from_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        if not is_valid_key_name(name):
            raise InvalidKey("key name must be non-empty, without '+' or spaces")
        raw = _raw_public(public_key)
        return cls(name=name, key_id=key_id(name, raw), public_key=raw)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A verifier key string; ``InvalidKey`` naming the part that is wrong."""
        parts = vkey.strip().split("+", 2) if vkey.strip() == vkey else []
        if len(parts) != 3:
            raise InvalidKey("verifier key is not <name>+<hex id>+<base64 key>")
        name, declared, material = _key_parts(parts, "verifier")
        digest = hashlib.sha256(name.encode() + b"\n" + material).digest()
        if int.from_bytes(digest[:4], "big") != declared:
            raise InvalidKey("verifier key id does not match its name and key")
        return cls(name=name, key_id=declared, public_key=_ed25519_bytes(material, "verifier"))

    def format(self) -> str:
        return key_string(self.name, self.key_id, SIGNATURE_TYPE_ED25519, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519_verifies(self.public_key, message, signature)


@attrs.frozen
class Signer:
    """An Ed25519 signing key under a key name."""

    name: str
    key_id: int
    private_key: Ed25519PrivateKey = attrs.field(repr=False, eq=False)

    @classmethod
    def from_key(cls, name: str, private_key: Ed25519PrivateKey) -> Signer:
        if not is_valid_key_name(name):
            raise InvalidKey("key name must be non-empty, without '+' or spaces")
        raw = _raw_public(private_key.public_key())
        return cls(name=name, key_id=key_id(name, raw), private_key=private_key)

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Go's ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`` form."""
        if not skey.startswith(_PRIVATE_PREFIX):
            raise InvalidKey("signer key does not start with PRIVATE+KEY+")
        parts = skey[len(_PRIVATE_PREFIX):].split("+", 2)
        if len(parts) != 3:
            raise InvalidKey("signer key is not PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        name, declared, material = _key_parts(parts, "signer")
        seed = _ed25519_bytes(material, "signer")
        signer = cls.from_key(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.key_id != declared:
            raise InvalidKey("signer key id does not match its name and key")
        return signer

    def format(self) -> str:
        """The Go private key string; it holds the secret seed."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        material = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id:08x}+{material}"

    def verifier(self) -> Verifier:
        return Verifier.from_key(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


@attrs.frozen
class Signature:
    """One signature line: key name, key id and the line's base64 text."""

    name: str
    key_id: int
    base64: str

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {self.base64}\n"


@attrs.frozen
class Note:
    """An opened note: its text, the signatures verified, and those by unknown keys."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_chars(text: str) -> None:
    for c in text:
        if c < " " and c != "\n":
            raise MalformedNote(f"note contains control character U+{ord(c):04X}")


def sign_note(text: str, *signers: Signer) -> str:
    """The note: ``text`` (ending in a newline), a blank line, one line per signer."""
    if not signers:
        raise NoteError("a note needs at least one signer")
    if not text.endswith("\n"):
        raise MalformedNote("note text does not end in a newline")
    try:
        message = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedNote("note text is not valid UTF-8") from None
    _check_chars(text)
    lines = []
    for signer in signers:
        if not is_valid_key_name(signer.name):
            raise InvalidKey("signer key name must be non-empty, without '+' or spaces")
        raw = signer.key_id.to_bytes(4, "big") + signer.sign(message)
        lines.append(Signature(signer.name, signer.key_id, base64.b64encode(raw).decode()).line())
    return text + "\n" + "".join(lines)


def _split(note: str | bytes) -> tuple[str, list[tuple[Signature, bytes]]]:
    """The note's text and its signature lines (with the raw signatures), unchecked."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    else:
        try:
            note.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    _check_chars(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block or not block.endswith("\n"):
        raise MalformedNote("note's signature block is empty or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    found = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedNote("signature line does not start with an em dash and a space")
        name, _, b64 = line[len(SIGNATURE_PREFIX):].partition(" ")
        raw = _b64decode(b64) if b64 else None
        if not is_valid_key_name(name) or raw is None or len(raw) < 5:
            raise MalformedNote("signature line is not '— <key name> <base64 signature>'")
        found.append((Signature(name, int.from_bytes(raw[:4], "big"), b64), raw[4:]))
    return text, found


def parse_note(note: str | bytes) -> Note:
    """The note's layout checked, no signature verified: its text must not be trusted."""
    text, found = _split(note)
    unverified: dict[Signature, None] = {}
    for signature, _ in found:
        unverified.setdefault(signature)
    return Note(text=text, signatures=(), unverified=tuple(unverified))


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """The note with its signatures checked against the known ``verifiers``."""
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if known.setdefault(slot, verifier) != verifier:
            raise InvalidKey(f"two verifier keys share name and id {verifier.name}+"
                             f"{verifier.key_id:08x}")
    text, found = _split(note)
    message = text.encode("utf-8")
    verified: dict[tuple[str, int], Signature] = {}
    unverified: dict[Signature, None] = {}
    for signature, raw in found:
        slot = (signature.name, signature.key_id)
        key = known.get(slot)
        if key is None:
            unverified.setdefault(signature)
            continue
        if slot in verified:
            continue
        if not key.verify(message, raw):
            raise InvalidSignature(
                f"invalid signature for key {signature.name}+{signature.key_id:08x}"
            )
        verified[slot] = signature
    if not verified:
        raise UnverifiedNote("note has no signature by a known key")
    return Note(text=text, signatures=tuple(verified.values()), unverified=tuple(unverified))


def load_signing_key(pem: str, variable: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem`` (PKCS#8, unencrypted).

    A PEM pasted into one line with literal ``\\n`` separators is accepted.
    Raises ``ConfigError`` naming ``variable`` for anything else.
    """
    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(variable, "not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(variable, "not an Ed25519 private key")
    return key
