"""The integrity sweep in the real service: a file changed on disk is found with no one asking."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.polling import eventually_sync
from tests.system.service import Server, StartServer, actor, pdf, post_upload

pytestmark = pytest.mark.system

STATUS = "/api/v1/integrity/status"


def _flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_the_sweep_finds_a_tampered_file(start_server: StartServer, data_dir: Path) -> None:
    """Two documents stored (sweep off), one file changed on disk, the service restarted
    with a 3.6 s period: the sweep verifies both on its own, finds the mismatch, alerts,
    and the status route counts it."""
    headers = actor("admin")
    first = start_server()
    with first.client() as client:
        created = [post_upload(client, headers, uuid.uuid4(), pdf(20_000)) for _ in range(2)]
    assert [r.status_code for r in created] == [201, 201], [r.text for r in created]
    docs = [r.json() for r in created]
    assert first.stop() == 0
    target, intact = docs
    _flip_byte(data_dir / "blobs" / "objects" / target["storage_key"])

    server: Server = start_server(INTEGRITY_SWEEP_PERIOD_HOURS="0.001")
    auditor = actor("auditor")
    with server.client() as client:

        def swept() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(STATUS, headers=auditor).json()
            return body if body["never_verified"] == 0 and body["mismatched"] == 1 else None

        body = eventually_sync(swept, "the sweep to verify both", within=10,
                               describe=server.log_tail)
        assert (body["documents"], body["verified_within_period"], body["mismatched"]) == (2, 2, 1)
        assert body["period_hours"] == 0.001
        assert body["sweep"]["enabled"] is True

        answered = {
            doc["id"]: client.get(
                f"/api/v1/documents/{doc['entity_id']}", headers=headers,
            ).json()["documents"][0]["status"]
            for doc in docs
        }
    assert answered == {target["id"]: "mismatch", intact["id"]: "verified"}
    alerts = eventually_sync(
        lambda: server.published("integrity_alerts"), "the integrity alert",
        describe=server.log_tail,
    )
    (alert,) = alerts
    assert alert["document_id"] == target["id"]
    assert alert["verified_by"] is None
    audits = [
        b for b in server.published("audit_events")
        if b["action"] in ("document.verified", "document.mismatch")
    ]
    assert {b["entity_id"] for b in audits} == {target["id"], intact["id"]}
    for audit in audits:
        assert (audit["actor_type"], audit["actor_id"]) == ("system", None)
        assert audit["details"]["reason"] == "scheduled_sweep"
    paths = {line.get("path") for line in server.log_lines()}
    assert STATUS in paths  # requests are logged with their path ...
    assert "/api/v1/documents/verify" not in paths  # ... and no one asked for a verification
