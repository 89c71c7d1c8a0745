"""SIGTERM: in-flight requests finish, the outbox drains, the process exits 0."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from tests.polling import eventually_sync
from tests.system.service import (
    POLL_INTERVAL,
    UPLOAD,
    Server,
    StartServer,
    StreamedUpload,
    actor,
    upload_form,
)

pytestmark = pytest.mark.system

FILE_SIZE = 4 * 1024 * 1024


class TestSigterm:
    def test_idle_server_exits_promptly(self, server: Server) -> None:
        """An idle server exits 0 within a couple of seconds of SIGTERM."""
        started = time.monotonic()
        assert server.stop(timeout=5) == 0
        assert time.monotonic() - started < 3
        assert server.logged("vault_stopped")

    def test_upload_in_flight_completes(self, start_server: StartServer) -> None:
        """An upload half sent at SIGTERM completes with 201, its events are published
        before the process exits 0, and a restart on the same data lists it."""
        server = start_server(SHUTDOWN_GRACE_SECONDS="15")
        entity, headers = uuid.uuid4(), actor("admin")
        paused, resume = threading.Event(), threading.Event()
        body = StreamedUpload(
            upload_form(entity), FILE_SIZE, pause_after=FILE_SIZE // 2,
            paused=paused, resume=resume,
        )
        result: list[httpx.Response | BaseException] = []

        def send() -> None:
            try:
                with server.client() as client:
                    result.append(client.post(
                        UPLOAD, content=iter(body),
                        headers={**headers, "Content-Type": body.content_type},
                    ))
            except BaseException as exc:  # handed to the test thread below
                result.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            assert paused.wait(10), "the upload never got half way"
            # Across processes nothing can be awaited: poll the actor's snapshot, then the log.
            eventually_sync(
                lambda: server.actor_health("upload")["in_flight"] >= 1,
                "the upload to reach the upload actor",
                within=10, interval=POLL_INTERVAL, describe=server.log_tail,
            )
            server.terminate()
            # The signal is received while the request is in flight; only then resume.
            eventually_sync(
                lambda: server.logged("shutdown_started"), "the server to start shutting down",
                within=10, interval=POLL_INTERVAL, describe=server.log_tail,
            )
        finally:
            resume.set()
            sender.join(30)

        assert len(result) == 1
        response = result[0]
        assert isinstance(response, httpx.Response), repr(response)
        assert response.status_code == 201, response.text
        doc = response.json()
        assert doc["size_bytes"] == FILE_SIZE

        assert server.wait() == 0
        events = [
            e for e in server.published("document_events")
            if e["payload"]["document_id"] == doc["id"]
        ]
        assert [e["event_type"] for e in events] == ["document.uploaded"], server.log_tail()

        restarted = start_server(data=server.data_dir)
        with restarted.client() as client:
            listed = client.get(f"/api/v1/documents/{entity}", headers=headers).json()
            fetched = client.get(
                f"/api/v1/documents/{doc['id']}/download", headers=headers
            ).json()
            content = httpx.get(fetched["download_url"], timeout=30).content
        assert [d["id"] for d in listed["documents"]] == [doc["id"]]
        assert content == bytes(body.content)
