"""The RFC 3161 client against a local ``openssl ts`` TSA, and offline token checks."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tsa import LocalTsa, local_tsa
from vault.adapters.timestamps import (
    InvalidTimestamp,
    TimestampClient,
    TimestampRejected,
    TimestampUnavailable,
)
from vault.domain.errors import DependencyUnavailable
from vault.domain.timestamp import (
    check_response,
    load_certificates,
    timestamp_request,
    verify_token,
)

DIGEST = hashlib.sha256(b"example.com/vault\n42\nroot hash\n").digest()
OTHER = hashlib.sha256(b"another checkpoint").digest()


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path / "tsa") as running:
        yield running


def _client(tsa: LocalTsa, certs: list[bytes] | None = None) -> TimestampClient:
    return TimestampClient(
        tsa.url, certs=certs if certs is not None else [tsa.pki.tsa_pem, tsa.pki.ca_pem],
        timeout=10,
    )


def test_a_token_verifies_and_carries_the_digest(tsa: LocalTsa) -> None:
    with _client(tsa) as client:
        token = client.timestamp(DIGEST)
    assert abs(token.gen_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert token.gen_time.tzinfo is not None
    assert token.serial_number >= 1
    assert "Test TSA" in token.tsa_name
    assert verify_token(token.der, DIGEST, [tsa.pki.ca_pem]) == token.gen_time
    assert len(tsa.requests) == 1


def test_each_token_has_its_own_serial(tsa: LocalTsa) -> None:
    with _client(tsa, [tsa.pki.ca_pem]) as client:
        first, second = client.timestamp(DIGEST), client.timestamp(DIGEST)
    assert first.serial_number != second.serial_number
    assert tsa.requests[0] != tsa.requests[1]  # a fresh nonce each time


def test_openssl_verifies_the_token_against_the_digest(tsa: LocalTsa, tmp_path: Path) -> None:
    """The imprint is the digest itself, so standard tools check it against the note's hash."""
    with _client(tsa) as client:
        token = client.timestamp(DIGEST)
    token_file = tmp_path / "token.der"
    token_file.write_bytes(token.der)
    done = subprocess.run(
        [tsa.openssl, "ts", "-verify", "-token_in", "-in", str(token_file),
         "-digest", DIGEST.hex(), "-CAfile", str(tsa.pki.ca_path)],
        capture_output=True, check=False,
    )
    assert done.returncode == 0, done.stderr


def test_offline_verify_token_with_only_the_ca(tsa: LocalTsa, tmp_path: Path) -> None:
    with _client(tsa) as client:
        token = client.timestamp(DIGEST)
    saved = tmp_path / "token.der"
    saved.write_bytes(token.der)
    assert verify_token(saved.read_bytes(), DIGEST, [tsa.pki.ca_pem]) == token.gen_time


def test_a_token_for_another_digest_is_refused(tsa: LocalTsa) -> None:
    with _client(tsa) as client:
        token = client.timestamp(OTHER)
    with pytest.raises(InvalidTimestamp, match="another digest"):
        verify_token(token.der, DIGEST, [tsa.pki.ca_pem])


def test_an_answer_for_another_digest_is_refused(tsa: LocalTsa) -> None:
    """The TSA answers a query other than the one sent (same nonce, another imprint)."""
    forged = timestamp_request(OTHER, 12345)
    answer = tsa.reply(forged)
    certs = load_certificates([tsa.pki.ca_pem])
    assert check_response(answer, OTHER, 12345, certs).serial_number >= 1
    with pytest.raises(InvalidTimestamp, match="another digest"):
        check_response(answer, DIGEST, 12345, certs)


def test_a_replayed_answer_is_refused(tsa: LocalTsa) -> None:
    with _client(tsa) as client:
        client.timestamp(DIGEST)
        tsa.mode = "replay"
        with pytest.raises(InvalidTimestamp, match="nonce"):
            client.timestamp(DIGEST)


def test_a_tsa_certified_by_another_ca_is_refused(tsa: LocalTsa, tmp_path: Path) -> None:
    with local_tsa(tmp_path / "rogue", "Rogue") as rogue:
        with (
            TimestampClient(rogue.url, certs=[tsa.pki.ca_pem]) as client,
            pytest.raises(InvalidTimestamp, match="does not verify"),
        ):
            client.timestamp(DIGEST)
        with _client(rogue) as trusting_rogue:
            token = trusting_rogue.timestamp(DIGEST)
    with pytest.raises(InvalidTimestamp, match="does not verify"):
        verify_token(token.der, DIGEST, [tsa.pki.ca_pem])


def test_a_pinned_tsa_certificate_refuses_another_signer_of_the_same_ca(
    tsa: LocalTsa, tmp_path: Path
) -> None:
    with local_tsa(tmp_path / "sibling", "Sibling", issuer=tsa.pki) as sibling:
        assert sibling.pki.ca_pem == tsa.pki.ca_pem
        with _client(sibling, [sibling.pki.ca_pem]) as trusting_the_ca:
            assert "Sibling TSA" in trusting_the_ca.timestamp(DIGEST).tsa_name
        with (
            _client(sibling, [tsa.pki.tsa_pem, tsa.pki.ca_pem]) as pinned,
            pytest.raises(InvalidTimestamp, match="does not match"),
        ):
            pinned.timestamp(DIGEST)


def test_a_rejection_is_a_clear_error(tsa: LocalTsa) -> None:
    tsa.mode = "reject"
    with _client(tsa) as client, pytest.raises(TimestampRejected) as caught:
        client.timestamp(DIGEST)
    assert caught.value.status == 2
    assert "status 2 (rejection)" in str(caught.value)
    assert isinstance(caught.value, InvalidTimestamp)


def test_a_garbage_answer_is_a_clear_error(tsa: LocalTsa) -> None:
    tsa.mode = "garbage"
    with _client(tsa) as client, pytest.raises(InvalidTimestamp, match="not DER"):
        client.timestamp(DIGEST)


def test_an_http_error_is_dependency_unavailable(tsa: LocalTsa) -> None:
    tsa.mode = "http500"
    with _client(tsa) as client, pytest.raises(TimestampUnavailable, match="HTTP 500"):
        client.timestamp(DIGEST)


def test_server_down_is_dependency_unavailable(tmp_path: Path) -> None:
    with local_tsa(tmp_path / "gone") as gone:
        certs = [gone.pki.ca_pem]
        url = gone.url
    with (
        TimestampClient(url, certs=certs, timeout=5) as client,
        pytest.raises(DependencyUnavailable, match="cannot reach"),
    ):
        client.timestamp(DIGEST)


def test_nothing_listening_is_dependency_unavailable(tsa: LocalTsa) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        TimestampClient(f"http://127.0.0.1:{port}/", certs=[tsa.pki.ca_pem]) as client,
        pytest.raises(TimestampUnavailable),
    ):
        client.timestamp(DIGEST)


def test_bad_configuration_is_refused(tsa: LocalTsa) -> None:
    with pytest.raises(ValueError, match="PEM"):
        TimestampClient(tsa.url, certs=[b"not a certificate"])
    with pytest.raises(ValueError, match="no TSA certificates"):
        TimestampClient(tsa.url, certs=[])
    with pytest.raises(ValueError, match="http"):
        TimestampClient("ftp://example.com/", certs=[tsa.pki.ca_pem])
    with pytest.raises(ValueError, match="self-signed root"):
        TimestampClient(tsa.url, certs=[tsa.pki.tsa_pem])
    with _client(tsa) as client, pytest.raises(ValueError, match="32 bytes"):
        client.timestamp(b"short")


def test_verify_token_refuses_garbage(tsa: LocalTsa) -> None:
    with pytest.raises(InvalidTimestamp):
        verify_token(b"\x30\x03\x02\x01\x00", DIGEST, [tsa.pki.ca_pem])
