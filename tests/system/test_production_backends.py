"""The real service on its production backends: PostgreSQL and S3 (on moto's server)."""

from __future__ import annotations

import hashlib
import selectors
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
import trio

from tests.polling import eventually
from tests.system.service import (
    UPLOAD,
    Production,
    Server,
    StartServer,
    actor,
    assert_one_winner,
    pdf,
    post_upload,
    race,
    upload_form,
)

pytestmark = pytest.mark.system

OUTAGE_TIMEOUT = 15.0
"""Longest a request may take to answer 503 while the database is gone."""
RECOVERY_TIMEOUT = 20.0
"""Longest the service may take to serve again once the database is back."""
RECOVERY_POLL = 0.2


class TcpProxy:
    """A loopback TCP forwarder to ``target`` that can be stopped, dropping every
    connection it carries, and started again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        assert not self.running, "already running"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        wake_in, self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=self._run, args=(listener, wake_in), name="pg-proxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every forwarded connection; returns once all are closed."""
        assert self._thread is not None and self._wake is not None, "not running"
        try:
            self._wake.send(b"x")
        except OSError:
            pass  # the proxy thread is gone already; its end of the pair is closed
        self._thread.join(10)
        assert not self._thread.is_alive(), "proxy thread did not stop"
        self._wake.close()
        self._thread = self._wake = None

    def _run(self, listener: socket.socket, wake: socket.socket) -> None:
        peers: dict[socket.socket, socket.socket] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select():
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if sock is wake:
                            return
                        if sock is listener:
                            self._accept(listener, selector, peers)
                        else:
                            self._forward(sock, selector, peers)
            finally:
                for sock in [*peers, listener, wake]:
                    sock.close()

    def _accept(
        self,
        listener: socket.socket,
        selector: selectors.BaseSelector,
        peers: dict[socket.socket, socket.socket],
    ) -> None:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        peers[client], peers[upstream] = upstream, client
        selector.register(client, selectors.EVENT_READ)
        selector.register(upstream, selectors.EVENT_READ)

    def _forward(
        self,
        sock: socket.socket,
        selector: selectors.BaseSelector,
        peers: dict[socket.socket, socket.socket],
    ) -> None:
        other = peers.get(sock)
        if other is None:
            return  # closed earlier in this same round of events, with its peer
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, other):
            selector.unregister(end)
            del peers[end]
            end.close()


def through_proxy(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's loopback address."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


@pytest.fixture
def prod_server(start_server: StartServer, production: Production) -> Server:
    """One server on PostgreSQL and S3."""
    return start_server(**production.env())


@pytest.fixture
def pg_proxy(production: Production) -> Iterator[TcpProxy]:
    """A proxy to the test database's server, started."""
    parts = urlsplit(production.database.url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.start()
    yield proxy
    if proxy.running:
        proxy.stop()


@pytest.fixture
def proxied_server(
    pg_proxy: TcpProxy, start_server: StartServer, production: Production
) -> Server:
    """One server reaching PostgreSQL through ``pg_proxy`` (which outlives it)."""
    return start_server(
        **production.env(database_url=through_proxy(production.database.url, pg_proxy.port))
    )


def verify(client: httpx.Client, headers: dict[str, str], document_id: str) -> httpx.Response:
    return client.post(
        "/api/v1/documents/verify", headers=headers, json={"document_id": document_id}
    )


class TestLifecycle:
    def test_upload_list_verify_download_archive(
        self, prod_server: Server, production: Production
    ) -> None:
        """A document goes through every route and downloads byte for byte from a presigned
        S3 URL that names the file."""
        entity, content, headers = uuid.uuid4(), pdf(300_000), actor("admin")
        with prod_server.client() as client:
            created = post_upload(client, headers, entity, content, filename="Q3 report.pdf")
            assert created.status_code == 201, created.text
            doc = created.json()
            assert doc["storage_bucket"] == production.bucket
            assert doc["sha256_hash"] == hashlib.sha256(content).hexdigest()

            listed = client.get(f"/api/v1/documents/{entity}", headers=headers)
            assert listed.status_code == 200, listed.text
            assert [d["id"] for d in listed.json()["documents"]] == [doc["id"]]

            verified = verify(client, headers, doc["id"])
            assert verified.status_code == 200, verified.text
            assert verified.json()["status"] == "verified"

            issued = client.get(f"/api/v1/documents/{doc['id']}/download", headers=headers)
            assert issued.status_code == 200, issued.text
            url = issued.json()["download_url"]
            assert url.startswith(f"{production.endpoint}/{production.bucket}/"), url
            query = parse_qs(urlsplit(url).query)
            assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
            assert query["X-Amz-Signature"], url
            fetched = httpx.get(url, timeout=30)
            assert fetched.status_code == 200, fetched.text
            assert fetched.content == content
            assert 'filename="Q3 report.pdf"' in fetched.headers["content-disposition"]

            archived = client.delete(f"/api/v1/documents/{doc['id']}", headers=headers)
            assert archived.status_code == 200, archived.text
            assert archived.json()["status"] == "archived"
            again = client.delete(f"/api/v1/documents/{doc['id']}", headers=headers)
            assert again.status_code == 200, again.text
            assert again.json() == archived.json()

    def test_document_is_a_row_in_postgres_and_an_encrypted_object_in_the_bucket(
        self, prod_server: Server, production: Production
    ) -> None:
        """An upload is a row in PostgreSQL pointing at the object version it wrote to the
        bucket, encrypted with the KMS key."""
        content, headers = pdf(50_000), actor("admin")
        with prod_server.client() as client:
            created = post_upload(client, headers, uuid.uuid4(), content)
        assert created.status_code == 201, created.text
        doc = created.json()

        rows = production.database.query(
            "SELECT storage_bucket, storage_key, storage_version_id, sha256_hash, status"
            " FROM documents WHERE id = %s",
            (uuid.UUID(doc["id"]),),
        )
        assert len(rows) == 1
        bucket, key, version_id, sha256_hash, status = rows[0]
        assert (bucket, key, sha256_hash, status) == (
            production.bucket, doc["storage_key"], doc["sha256_hash"], "uploaded"
        )

        head = production.s3.head_object(Bucket=production.bucket, Key=key)
        assert head["ContentLength"] == len(content)
        assert head["VersionId"] == version_id
        assert head["ServerSideEncryption"] == "aws:kms"
        assert production.kms_key_id in head["SSEKMSKeyId"]


def overwrite(production: Production, key: str) -> None:
    production.s3.put_object(Bucket=production.bucket, Key=key, Body=pdf(50_000))


def delete(production: Production, key: str) -> None:
    production.s3.delete_object(Bucket=production.bucket, Key=key)


class TestTampering:
    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param(overwrite, id="overwritten-object-is-a-mismatch"),
            pytest.param(delete, id="deleted-object-is-a-mismatch"),
        ],
    )
    def test_a_tampered_object_is_a_mismatch(
        self, prod_server: Server, production: Production,
        tamper: Callable[[Production, str], None],
    ) -> None:
        """Other bytes written over the document's key, or the object deleted from the
        bucket, make verification answer mismatch."""
        headers = actor("admin")
        with prod_server.client() as client:
            created = post_upload(client, headers, uuid.uuid4(), pdf(50_000))
            assert created.status_code == 201, created.text
            doc = created.json()
            tamper(production, doc["storage_key"])
            verified = verify(client, headers, doc["id"])
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "mismatch"


class TestDuplicateRace:
    async def test_two_processes_sharing_database_and_bucket(
        self, start_server: StartServer, production: Production
    ) -> None:
        """Identical uploads spread over two processes on one database and bucket give one
        201 and 409s naming it."""
        first = start_server(**production.env())
        second = start_server(**production.env())
        assert_one_winner(await race([first, second], uuid.uuid4(), pdf(200_000)))


class TestDatabaseOutage:
    async def test_unavailable_while_down_then_recovers_by_itself(
        self, proxied_server: Server, pg_proxy: TcpProxy
    ) -> None:
        """With the database unreachable requests answer 503 DEPENDENCY_UNAVAILABLE and
        /readyz 503; once it is back the same process serves again."""
        entity, headers = uuid.uuid4(), actor("admin")
        documents = f"/api/v1/documents/{entity}"
        async with proxied_server.async_client() as client:
            created = await client.post(
                UPLOAD, headers=headers, data=upload_form(entity),
                files={"file": ("before.pdf", pdf(), "application/pdf")},
            )
            assert created.status_code == 201, created.text

            pg_proxy.stop()
            answers: dict[str, httpx.Response] = {}

            async def call(name: str, method: str, url: str, **kwargs: Any) -> None:
                answers[name] = await client.request(method, url, timeout=OUTAGE_TIMEOUT, **kwargs)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(call, "list", "GET", documents, headers=headers))
                nursery.start_soon(partial(
                    call, "upload", "POST", UPLOAD, headers=headers, data=upload_form(entity),
                    files={"file": ("during.pdf", pdf(), "application/pdf")},
                ))
                nursery.start_soon(call, "readyz", "GET", "/readyz")
            for name in ("list", "upload"):
                assert answers[name].status_code == 503, (name, answers[name].text)
                assert answers[name].json()["error_code"] == "DEPENDENCY_UNAVAILABLE", name
            ready = answers["readyz"]
            assert ready.status_code == 503, ready.text
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["checks"]["database"] != "ok"
            assert ready.json()["checks"]["blob_store"] == "ok"

            pg_proxy.start()

            answered: list[httpx.Response] = []

            async def listing() -> httpx.Response | None:
                answered.append(await client.get(documents, headers=headers,
                                                 timeout=OUTAGE_TIMEOUT))
                return answered[-1] if answered[-1].status_code == 200 else None

            # Across processes there is nothing to await: poll, briefly and boundedly.
            listed = await eventually(
                listing, "the listing to answer 200 again",
                within=RECOVERY_TIMEOUT, interval=RECOVERY_POLL,
                describe=lambda: answered[-1].text if answered else "(no answer)",
            )
            assert [d["id"] for d in listed.json()["documents"]] == [created.json()["id"]]
            ready_again = await client.get("/readyz")
            assert ready_again.status_code == 200, ready_again.text
