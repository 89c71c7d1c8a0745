"""Signed download tokens: what they carry and when they are refused."""

from __future__ import annotations

import base64
import json
import re
from uuid import UUID, uuid4

import pytest

from vault.adapters.blobs.signing import DownloadClaims, InvalidToken, UrlSigner

SECRET = b"s" * 32
NOW = 1_760_000_000


def _claims(**changes: object) -> DownloadClaims:
    values: dict[str, object] = {
        "document_id": UUID("3f1c9a52-8a4e-4c55-9d7e-0c1d2b3a4f5e"),
        "key": "documents/3f1c9a52-8a4e-4c55-9d7e-0c1d2b3a4f5e",
        "version_id": None,
        "filename": "contract.pdf",
        "mime_type": "application/pdf",
        "expires_at": NOW + 900,
    }
    values.update(changes)
    return DownloadClaims(**values)  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _reason(signer: UrlSigner, token: str, now: float = NOW) -> str:
    with pytest.raises(InvalidToken) as caught:
        signer.verify(token, now)
    return caught.value.reason


class TestRoundTrip:
    def test_verify_returns_the_signed_claims(self) -> None:
        """A fresh token verifies to exactly the claims it was made from."""
        signer = UrlSigner(SECRET)
        claims = _claims()

        assert signer.verify(signer.sign(claims), NOW) == claims

    def test_version_unicode_and_long_names_survive(self) -> None:
        """A version id and a non-ASCII 255-character filename come back intact."""
        signer = UrlSigner(SECRET)
        claims = _claims(version_id="3HL4kqtJlcpXroDTD+rmSpXd3", filename="é" * 251 + ".pdf")

        assert signer.verify(signer.sign(claims), NOW) == claims

    def test_token_is_url_safe_without_padding(self) -> None:
        """The token uses only base64url characters and one dot."""
        token = UrlSigner(SECRET).sign(_claims(filename="a b/c?d=é.pdf"))

        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)

    def test_token_does_not_depend_on_time_of_signing(self) -> None:
        """Signing the same claims twice gives the same token."""
        signer = UrlSigner(SECRET)

        assert signer.sign(_claims()) == signer.sign(_claims())

    def test_short_secret_is_refused(self) -> None:
        """A secret under 16 bytes is a programming error."""
        with pytest.raises(ValueError, match="16 bytes"):
            UrlSigner(b"short")


class TestExpiry:
    def test_valid_until_just_before_expiry(self) -> None:
        """A token still verifies a moment before ``expires_at``."""
        signer = UrlSigner(SECRET)

        assert signer.verify(signer.sign(_claims()), NOW + 899.999).expires_at == NOW + 900

    def test_refused_at_expiry(self) -> None:
        """At ``expires_at`` the token is expired."""
        signer = UrlSigner(SECRET)

        assert _reason(signer, signer.sign(_claims()), NOW + 900) == "expired"

    def test_refused_long_after_expiry(self) -> None:
        """An old token stays expired."""
        signer = UrlSigner(SECRET)

        assert _reason(signer, signer.sign(_claims()), NOW + 86_400) == "expired"

    def test_forged_expired_token_is_tampered_not_expired(self) -> None:
        """The MAC is checked before expiry, so a forgery never reads as merely expired."""
        signer = UrlSigner(SECRET)
        forged = UrlSigner(b"o" * 32).sign(_claims(expires_at=NOW - 10))

        assert _reason(signer, forged) == "tampered"


class TestTampering:
    def test_altered_claims_are_tampered(self) -> None:
        """Changing the claims under the original MAC is detected."""
        signer = UrlSigner(SECRET)
        payload, mac = signer.sign(_claims()).split(".")
        body = json.loads(_unb64(payload))
        body["k"] = "documents/" + str(uuid4())
        altered = _b64(json.dumps(body, separators=(",", ":")).encode())

        assert _reason(signer, f"{altered}.{mac}") == "tampered"

    def test_extended_expiry_is_tampered(self) -> None:
        """Pushing ``expires_at`` later under the original MAC is detected."""
        signer = UrlSigner(SECRET)
        payload, mac = signer.sign(_claims(expires_at=NOW - 1)).split(".")
        body = json.loads(_unb64(payload))
        body["e"] = NOW + 10_000
        altered = _b64(json.dumps(body, separators=(",", ":")).encode())

        assert _reason(signer, f"{altered}.{mac}") == "tampered"

    def test_altered_mac_is_tampered(self) -> None:
        """Flipping one bit of the MAC is detected."""
        signer = UrlSigner(SECRET)
        payload, mac = signer.sign(_claims()).split(".")
        raw = bytearray(_unb64(mac))
        raw[10] ^= 0x01

        assert _reason(signer, f"{payload}.{_b64(bytes(raw))}") == "tampered"

    def test_other_secret_is_tampered(self) -> None:
        """A token made with another secret is refused."""
        token = UrlSigner(b"o" * 32).sign(_claims())

        assert _reason(UrlSigner(SECRET), token) == "tampered"

    def test_non_canonical_mac_spelling_is_refused(self) -> None:
        """Changing only the unused low bits of the last MAC character is refused."""
        signer = UrlSigner(SECRET)
        token = signer.sign(_claims())
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(token[-1])
        respelled = token[:-1] + alphabet[last ^ 0x01]

        assert _unb64(respelled.split(".")[1]) == _unb64(token.split(".")[1])
        with pytest.raises(InvalidToken):
            signer.verify(respelled, NOW)

    def test_invalid_token_is_a_value_error(self) -> None:
        """Callers that catch ValueError also catch a bad token."""
        with pytest.raises(ValueError):
            UrlSigner(SECRET).verify("garbage", NOW)


class TestGarbage:
    @pytest.mark.parametrize(
        "token",
        [
            "",
            ".",
            "abc",
            "a.b.c",
            "!!!.###",
            "eyJ9.",
            ".AAAA",
            "eyJ9.AAAA",
            "payload.mac\n",
            "x" * 10_000 + "." + "y" * 43,
        ],
    )
    def test_garbage_is_malformed(self, token: str) -> None:
        """Strings that are not tokens at all are refused as malformed."""
        assert _reason(UrlSigner(SECRET), token) == "malformed"

    def test_signed_non_object_claims_are_malformed(self) -> None:
        """Correctly signed bytes that are not our claims are still refused."""
        signer = UrlSigner(SECRET)
        payload = _b64(b"[1,2,3]")
        mac = _b64(signer._mac(payload.encode()))

        assert _reason(signer, f"{payload}.{mac}") == "malformed"
