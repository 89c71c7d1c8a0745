"""RFC 3161 time-stamp requests, answers and tokens, checked without I/O.

The vault asks a Time-Stamp Authority to timestamp the SHA-256 of a signed
checkpoint note. The request's message imprint is that digest itself (so
``openssl ts -verify -digest <hex> -CAfile <root>`` checks a token against
the note's hash); rfc3161-client's request builder hashes whatever it is
given, so ``timestamp_request`` writes the short TimeStampReq DER here:

    TimeStampReq ::= SEQUENCE {
        version 1, messageImprint { sha256, digest }, nonce INTEGER, certReq TRUE }

An answer (``check_response``) or a token saved on its own
(``verify_token``) is accepted only when:

- the status is granted (0); granted-with-modifications is refused too;
- the imprint is SHA-256 over the expected digest, and for an answer the
  nonce is the one sent;
- the CMS signature verifies at the token's genTime, through the
  configured certificates, to a configured self-signed root, and the
  signing certificate has the critical timeStamping extended key usage (when
  exactly one configured certificate carries that usage it is pinned: the
  token must be signed by it).

The configured certificates are PEM: the TSA's own, its intermediates and
its root, in any order, several to an entry if need be. Every refusal is an
``InvalidTimestamp`` (a ``ValueError``) whose detail says which check failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
DIGEST_SIZE = 32

# AlgorithmIdentifier { id-sha256, NULL }, DER.
_SHA256_ALGORITHM = bytes.fromhex("300d06096086480165030402010500")
_GRANTED_STATUS = bytes.fromhex("3003020100")  # PKIStatusInfo { status granted }


class InvalidTimestamp(ValueError):
    """A time-stamp answer or token failed a check; the message says which."""


class TimestampRejected(InvalidTimestamp):
    """The TSA answered with a status other than granted."""

    def __init__(self, status: int, texts: Iterable[str]) -> None:
        self.status = status
        self.texts = tuple(texts)
        try:
            name = PKIStatus(status).name.lower()
        except ValueError:
            name = "unknown"
        said = f": {'; '.join(self.texts)}" if self.texts else ""
        super().__init__(f"the TSA answered status {status} ({name}){said}")


@attrs.frozen
class TimestampToken:
    """A verified token: its DER (a CMS ContentInfo) and what it says.

    ``der`` is the TSA's token with its certificates in DER order (see
    ``_certificates_sorted``); the signature covers neither order.
    """

    der: bytes = attrs.field(repr=False)
    gen_time: datetime
    serial_number: int
    tsa_name: str
    """The token's TSA name if it carries one, else the signing certificate's subject."""


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _der_integer(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != DIGEST_SIZE:
        raise ValueError(f"a SHA-256 digest is {DIGEST_SIZE} bytes")


def timestamp_request(digest: bytes, nonce: int) -> bytes:
    """The TimeStampReq DER asking for a token over ``digest``, with certReq set."""
    _check_digest(digest)
    if nonce <= 0:
        raise ValueError("the nonce must be positive")
    imprint = _tlv(0x30, _SHA256_ALGORITHM + _tlv(0x04, digest))
    return _tlv(0x30, _der_integer(1) + imprint + _der_integer(nonce) + b"\x01\x01\xff")


def load_certificates(certs: Iterable[bytes]) -> list[x509.Certificate]:
    """Every certificate in the PEM entries; refused without one, or without a root."""
    loaded: list[x509.Certificate] = []
    for entry in certs:
        try:
            loaded.extend(x509.load_pem_x509_certificates(entry))
        except ValueError as exc:
            raise ValueError(f"not PEM certificates: {exc}") from None
    if not loaded:
        raise ValueError("no TSA certificates configured")
    if not any(_is_self_signed(c) for c in loaded):
        raise ValueError("the TSA certificates include no self-signed root")
    return loaded


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_tsa(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in usage.value


def _verifier(certs: list[x509.Certificate], nonce: int | None) -> VerifierBuilder:
    roots = [c for c in certs if _is_self_signed(c)]
    if not roots:
        raise ValueError("the TSA certificates include no self-signed root")
    others = [c for c in certs if c not in roots]
    tsa = [c for c in others if _is_tsa(c)]
    return VerifierBuilder(
        roots=roots,
        intermediates=[c for c in others if c not in tsa],
        tsa_certificate=tsa[0] if len(tsa) == 1 else None,
        nonce=nonce,
    )


def _signer_subject(response: TimeStampResponse) -> str:
    infos = list(response.signed_data.signer_infos)
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if any(cert.issuer == i.issuer and cert.serial_number == i.serial_number for i in infos):
            return cert.subject.rfc4514_string()
    return infos[0].issuer.rfc4514_string() if infos else ""


def _tsa_name(response: TimeStampResponse) -> str:
    name = response.tst_info.name
    if name is None:
        return _signer_subject(response)
    if isinstance(name, x509.DirectoryName):
        return name.value.rfc4514_string()
    return str(name.value)


def _check(
    response: TimeStampResponse, digest: bytes, certs: list[x509.Certificate], nonce: int | None
) -> TimestampToken:
    if response.status != PKIStatus.GRANTED:
        raise TimestampRejected(response.status, response.status_string)
    try:
        info = response.tst_info
        algorithm = info.message_imprint.hash_algorithm
        if algorithm != SHA256_OID:
            raise InvalidTimestamp(
                f"the token's imprint is not SHA-256 but {algorithm.dotted_string}"
            )
        if info.message_imprint.message != digest:
            raise InvalidTimestamp("the token is over another digest")
        if nonce is not None and info.nonce != nonce:
            raise InvalidTimestamp("the answer's nonce is not the request's (a replayed answer?)")
        _verifier(certs, nonce).build().verify(response, digest)
        gen_time = info.gen_time
        token = TimestampToken(
            der=response.time_stamp_token(),
            gen_time=gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC),
            serial_number=info.serial_number,
            tsa_name=_tsa_name(response),
        )
    except InvalidTimestamp:
        raise
    except VerificationError as exc:
        raise InvalidTimestamp(f"the token does not verify: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidTimestamp(f"the token is malformed: {exc}") from None
    return token


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The tag, content start and end of the DER element at ``at``."""
    tag, first = der[at], der[at + 1]
    start = at + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        length = int.from_bytes(der[start:start + count], "big")
        start += count
    if start + length > len(der):
        raise IndexError("element runs past the end")
    return tag, start, start + length


def _children(der: bytes, start: int, end: int) -> list[bytes]:
    parts = []
    while start < end:
        _, _, stop = _element(der, start)
        parts.append(der[start:stop])
        start = stop
    return parts


def _content(der: bytes) -> bytes:
    _, start, end = _element(der, 0)
    return der[start:end]


def _certificates_sorted(answer: bytes) -> bytes:
    """``answer`` with its SignedData certificates in DER SET OF order.

    OpenSSL writes them in the order it was given them (signer first), which
    rfc3161-client's strict parser refuses; they are outside the signature,
    so putting them in order changes nothing it covers. Anything unexpected
    is left as it is, for the parser to report.
    """
    try:
        response = _children(answer, *_element(answer, 0)[1:])
        if len(response) != 2:
            return answer
        oid, explicit = _children(response[1], *_element(response[1], 0)[1:])
        signed = _content(explicit)
        fields = _children(signed, *_element(signed, 0)[1:])
        at = next((i for i, f in enumerate(fields) if f[0] == 0xA0), None)
        if at is None:
            return answer
        certs = _children(fields[at], *_element(fields[at], 0)[1:])
        if certs == sorted(certs):
            return answer
        fields[at] = _tlv(0xA0, b"".join(sorted(certs)))
        signed = _tlv(0x30, b"".join(fields))
        token = _tlv(0x30, oid + _tlv(explicit[0], signed))
        return _tlv(0x30, response[0] + token)
    except (IndexError, ValueError):
        return answer


def _decode(der: bytes, what: str) -> TimeStampResponse:
    try:
        return decode_timestamp_response(_certificates_sorted(der))
    except ValueError as exc:
        raise InvalidTimestamp(f"{what} is not DER: {exc}") from None


def check_response(
    answer: bytes, digest: bytes, nonce: int, certs: list[x509.Certificate]
) -> TimestampToken:
    """The token in a TimeStampResp DER answering ``timestamp_request(digest, nonce)``."""
    _check_digest(digest)
    return _check(_decode(answer, "the answer"), digest, certs, nonce)


def verify_token(token_der: bytes, digest: bytes, certs: Iterable[bytes]) -> datetime:
    """The genTime of a saved token over ``digest``, checked against the PEM ``certs``.

    ``certs`` needs only the root when the token embeds the TSA's certificate
    (the vault asks for it with certReq).
    """
    _check_digest(digest)
    wrapped = _tlv(0x30, _GRANTED_STATUS + token_der)  # a TimeStampResp around it
    token = _check(_decode(wrapped, "the token"), digest, load_certificates(certs), None)
    return token.gen_time
