"""A local RFC 3161 Time-Stamp Authority for tests: a CA, a TSA, ``openssl ts``.

``make_pki`` writes, into a folder, a self-signed CA certificate, a TSA
certificate it signs (extendedKeyUsage timeStamping, critical), the TSA's
key and an ``openssl ts`` configuration. ``LocalTsa`` serves it on
127.0.0.1 (a ``ThreadingHTTPServer`` in a thread): each POST body is
written to a file and answered by

    openssl ts -reply -config tsa.cnf [-section S] -queryfile Q \\
        -inkey tsa.key -signer tsa.pem -chain ca.pem -out R

as ``application/timestamp-reply``. ``LocalTsa.mode`` changes the answer:
``"reply"`` (the default), ``"reject"`` (openssl's own rejection, from a
section that accepts only SHA-384), ``"garbage"``, ``"replay"`` (the
previous answer again, its nonce stale) or ``"http500"``.

``require_openssl`` skips a test when there is no ``openssl`` binary, and
fails it under ``CI=true``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.55555.1.1"
REJECTING_SECTION = "tsa_sha384_only"

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
certs = {dir}/ca.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = {policy}
other_policies = {policy}
digests = sha256
accuracy = secs:1
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256

[ {rejecting} ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
certs = {dir}/ca.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha384
ess_cert_id_alg = sha256
"""


def require_openssl() -> str:
    """The ``openssl`` binary's path; skips the test without one (fails it under CI=true)."""
    found = shutil.which("openssl")
    if found is None:
        reason = "no openssl binary on PATH: the local TSA runs `openssl ts -reply`"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason} (CI=true: a missing openssl fails the run)", pytrace=False)
        pytest.skip(reason)
    return found


@attrs.frozen
class Pki:
    """One CA and the TSA it certified, written under ``folder``."""

    folder: Path
    ca_pem: bytes
    tsa_pem: bytes

    @property
    def config(self) -> Path:
        return self.folder / "tsa.cnf"

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def tsa_path(self) -> Path:
        return self.folder / "tsa.pem"

    @property
    def key_path(self) -> Path:
        return self.folder / "tsa.key"

    @property
    def ca_key_path(self) -> Path:
        return self.folder / "ca.key"


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Document Vault tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def make_pki(folder: Path, label: str = "Test", *, issuer: Pki | None = None) -> Pki:
    """A CA and a TSA certificate valid from yesterday to tomorrow, with the openssl config.

    With ``issuer``, the TSA certificate is another one from that PKI's CA.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    if issuer is not None:
        ca_key = serialization.load_pem_private_key(issuer.ca_key_path.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(issuer.ca_pem)
        ca_name = ca.subject
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name(f"{label} Root CA")
        ca = _ca_certificate(ca_key, ca_name, now)
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} TSA")).issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        folder=folder,
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        tsa_pem=tsa.public_bytes(serialization.Encoding.PEM),
    )
    pki.ca_path.write_bytes(pki.ca_pem)
    pki.tsa_path.write_bytes(pki.tsa_pem)
    pki.key_path.write_bytes(_pem_key(tsa_key))
    pki.ca_key_path.write_bytes(_pem_key(ca_key))
    (folder / "serial").write_text("01\n")
    pki.config.write_text(
        _CONFIG.format(dir=folder, policy=POLICY, rejecting=REJECTING_SECTION)
    )
    return pki


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, now: dt.datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


class LocalTsa:
    """An HTTP TSA on 127.0.0.1 answering with ``openssl ts -reply`` over ``pki``."""

    def __init__(self, pki: Pki, openssl: str) -> None:
        self.pki = pki
        self.openssl = openssl
        self.mode = "reply"
        self.requests: list[bytes] = []
        self.last_answer = b""
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"tsa": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}/tsa"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, query: bytes) -> tuple[int, bytes]:
        """The HTTP status and body for one POSTed query."""
        with self._lock:
            self.requests.append(query)
            if self.mode == "garbage":
                return 200, b"this is not a TimeStampResp"
            if self.mode == "http500":
                return 500, b"down for maintenance"
            if self.mode == "replay" and self.last_answer:
                return 200, self.last_answer
            section = REJECTING_SECTION if self.mode == "reject" else None
            self.last_answer = self.reply(query, section)
            return 200, self.last_answer

    def reply(self, query: bytes, section: str | None = None) -> bytes:
        """``openssl ts -reply`` to ``query``: a TimeStampResp DER."""
        with tempfile.TemporaryDirectory(dir=self.pki.folder) as work:
            query_file = Path(work) / "query.tsq"
            reply_file = Path(work) / "reply.tsr"
            query_file.write_bytes(query)
            command = [
                self.openssl, "ts", "-reply", "-config", str(self.pki.config),
                *(["-section", section] if section else []),
                "-queryfile", str(query_file),
                "-inkey", str(self.pki.key_path), "-signer", str(self.pki.tsa_path),
                "-chain", str(self.pki.ca_path), "-out", str(reply_file),
            ]
            done = subprocess.run(command, capture_output=True, check=False)
            if done.returncode != 0 or not reply_file.exists():
                said = done.stderr.decode(errors="replace")
                raise RuntimeError(f"openssl ts -reply failed: {said}")
            return reply_file.read_bytes()


class _Handler(BaseHTTPRequestHandler):
    tsa: LocalTsa

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        query = self.rfile.read(length)
        if self.headers.get("Content-Type") != "application/timestamp-query":
            status, body, kind = 415, b"want application/timestamp-query", "text/plain"
        else:
            try:
                status, body = self.tsa.answer(query)
            except RuntimeError as exc:
                status, body = 500, str(exc).encode()
            kind = "application/timestamp-reply" if status == 200 else "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_tsa(
    folder: Path, label: str = "Test", *, issuer: Pki | None = None
) -> Iterator[LocalTsa]:
    """A running ``LocalTsa`` over a fresh PKI in ``folder``; stopped on exit."""
    openssl = require_openssl()
    tsa = LocalTsa(make_pki(folder, label, issuer=issuer), openssl)
    tsa.start()
    try:
        yield tsa
    finally:
        tsa.stop()
