"""A document's life over real HTTP, and tampering caught by verification."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import httpx
import pytest

from tests.system.service import Server, actor, pdf, post_upload

pytestmark = pytest.mark.system


class TestLifecycle:
    def test_upload_list_verify_download_archive(self, server: Server) -> None:
        """A document goes through every route and comes back byte for byte."""
        entity, content, headers = uuid.uuid4(), pdf(300_000), actor("admin")
        with server.client() as client:
            created = post_upload(client, headers, entity, content)
            assert created.status_code == 201, created.text
            doc = created.json()
            assert doc["status"] == "uploaded"
            assert doc["size_bytes"] == len(content)

            listed = client.get(f"/api/v1/documents/{entity}", headers=headers)
            assert listed.status_code == 200, listed.text
            assert [d["id"] for d in listed.json()["documents"]] == [doc["id"]]

            verified = client.post(
                "/api/v1/documents/verify", headers=headers, json={"document_id": doc["id"]}
            )
            assert verified.status_code == 200, verified.text
            assert verified.json()["status"] == "verified"

            issued = client.get(f"/api/v1/documents/{doc['id']}/download", headers=headers)
            assert issued.status_code == 200, issued.text
            fetched = httpx.get(issued.json()["download_url"], timeout=30)
            assert fetched.status_code == 200, fetched.text
            assert fetched.content == content

            archived = client.delete(f"/api/v1/documents/{doc['id']}", headers=headers)
            assert archived.status_code == 200, archived.text
            assert archived.json()["status"] == "archived"

            hidden = client.get(f"/api/v1/documents/{entity}", headers=headers)
            assert hidden.json()["documents"] == []
            shown = client.get(
                f"/api/v1/documents/{entity}", headers=headers,
                params={"include_archived": "true"},
            )
            assert [(d["id"], d["status"]) for d in shown.json()["documents"]] == [
                (doc["id"], "archived")
            ]

            again = client.delete(f"/api/v1/documents/{doc['id']}", headers=headers)
            assert again.status_code == 200, again.text
            assert again.json() == archived.json()


class TestTampering:
    def test_flipped_byte_is_a_mismatch_and_an_alert(self, server: Server) -> None:
        """A byte changed in the stored object makes verification answer mismatch and alert."""
        entity, headers = uuid.uuid4(), actor("admin")
        with server.client() as client:
            created = post_upload(client, headers, entity, pdf(50_000))
            assert created.status_code == 201, created.text
            doc = created.json()
            stored = server.data_dir / "blobs" / "objects" / doc["storage_key"]
            raw = bytearray(stored.read_bytes())
            raw[len(raw) // 2] ^= 0x01
            stored.write_bytes(bytes(raw))

            verified = client.post(
                "/api/v1/documents/verify", headers=headers, json={"document_id": doc["id"]}
            )
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "mismatch"

        assert server.stop() == 0  # the alerter drains its outbox before exit
        alerts = [a for a in server.published("integrity_alerts") if a["document_id"] == doc["id"]]
        assert len(alerts) == 1, server.log_tail()
        assert alerts[0]["alert_type"] == "integrity_violation"
        assert alerts[0]["expected_hash"] == doc["sha256_hash"]


class TestDownloadUrls:
    def test_expired_url_is_refused(self, server: Server) -> None:
        """A download URL answers 403 once its expiry has passed."""
        headers = actor("admin")
        with server.client() as client:
            doc = post_upload(client, headers, uuid.uuid4(), pdf()).json()
            issued = client.get(
                f"/api/v1/documents/{doc['id']}/download", headers=headers,
                params={"expires_in": "1"},
            ).json()
            # Expiry is wall-clock by design, so the only way past it is to wait.
            expires_at = datetime.fromisoformat(issued["expires_at"]).timestamp()
            time.sleep(max(0.0, expires_at - time.time()) + 0.05)
            fetched = httpx.get(issued["download_url"], timeout=30)
        assert fetched.status_code == 403, fetched.text
        assert fetched.json()["error_code"] == "UNAUTHORIZED_ACCESS"

    def test_altered_url_is_refused(self, server: Server) -> None:
        """A download URL with one character of its token changed answers 403."""
        headers = actor("admin")
        with server.client() as client:
            doc = post_upload(client, headers, uuid.uuid4(), pdf()).json()
            url = client.get(
                f"/api/v1/documents/{doc['id']}/download", headers=headers
            ).json()["download_url"]
        position = url.rindex("/") + 10
        altered = url[:position] + ("B" if url[position] == "A" else "A") + url[position + 1:]
        assert httpx.get(url, timeout=30).status_code == 200
        fetched = httpx.get(altered, timeout=30)
        assert fetched.status_code == 403, fetched.text
        assert fetched.json()["error_code"] == "UNAUTHORIZED_ACCESS"
