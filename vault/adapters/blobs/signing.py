"""Signed download tokens for the embedded blob store.

A token is ``base64url(claims JSON) + "." + base64url(HMAC-SHA256)``, both
without padding, so it fits in a URL path segment unescaped. The MAC covers
the encoded claims exactly as they appear in the token, and only canonical
base64 is accepted, so a token has a single spelling.

Errors: ``verify`` raises ``InvalidToken`` whose ``reason`` is
``"malformed"`` (not a token at all), ``"tampered"`` (the MAC does not match)
or ``"expired"``. Expiry is checked only after the MAC, so an expired answer
is never given for a forged token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Any, Literal
from uuid import UUID

import attrs

Reason = Literal["malformed", "tampered", "expired"]

_MAC_CONTEXT = b"document-vault download token v1\x00"
_MAC_SIZE = hashlib.sha256().digest_size
_MAX_TOKEN_LENGTH = 8192
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@attrs.frozen
class DownloadClaims:
    """What a download token grants: one object, served under this name and type."""

    document_id: UUID
    key: str
    version_id: str | None
    filename: str
    mime_type: str
    expires_at: int
    """Unix seconds; the token is refused from this instant on."""


class InvalidToken(ValueError):
    """A download token that must not be honoured."""

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        super().__init__(f"download token is {reason}")


class UrlSigner:
    """Signs and checks download tokens with one HMAC secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._secret = secret

    def sign(self, claims: DownloadClaims) -> str:
        payload = _b64encode(_encode_claims(claims))
        return f"{payload}.{_b64encode(self._mac(payload.encode('ascii')))}"

    def verify(self, token: str, now: float) -> DownloadClaims:
        """The token's claims, or ``InvalidToken`` when it is malformed, altered or expired."""
        payload_text, mac = _split(token)
        if not hmac.compare_digest(mac, self._mac(payload_text.encode("ascii"))):
            raise InvalidToken("tampered")
        claims = _decode_claims(_b64decode(payload_text))
        if now >= claims.expires_at:
            raise InvalidToken("expired")
        return claims

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _MAC_CONTEXT + payload, hashlib.sha256).digest()


def _split(token: str) -> tuple[str, bytes]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed")
    parts = token.split(".")
    if len(parts) != 2:
        raise InvalidToken("malformed")
    payload_text, mac_text = parts
    mac = _b64decode(mac_text)
    if len(mac) != _MAC_SIZE:
        raise InvalidToken("malformed")
    _b64decode(payload_text)
    return payload_text, mac


def _encode_claims(claims: DownloadClaims) -> bytes:
    body = {
        "d": str(claims.document_id),
        "k": claims.key,
        "v": claims.version_id,
        "f": claims.filename,
        "m": claims.mime_type,
        "e": claims.expires_at,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode_claims(raw: bytes) -> DownloadClaims:
    try:
        body: Any = json.loads(raw)
        if not isinstance(body, dict):
            raise InvalidToken("malformed")
        document_id = UUID(body["d"])
        key, version_id = body["k"], body["v"]
        filename, mime_type, expires_at = body["f"], body["m"], body["e"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidToken("malformed") from None
    if not (
        isinstance(key, str)
        and (version_id is None or isinstance(version_id, str))
        and isinstance(filename, str)
        and isinstance(mime_type, str)
        and isinstance(expires_at, int)
        and not isinstance(expires_at, bool)
    ):
        raise InvalidToken("malformed")
    return DownloadClaims(
        document_id=document_id,
        key=key,
        version_id=version_id,
        filename=filename,
        mime_type=mime_type,
        expires_at=expires_at,
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict, canonical unpadded base64url; anything else is malformed."""
    if not _SEGMENT.fullmatch(text):
        raise InvalidToken("malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None
    if _b64encode(data) != text:
        raise InvalidToken("malformed")
    return data
