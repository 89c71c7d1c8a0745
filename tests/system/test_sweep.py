"""The integrity sweep in the real service: a file changed on disk is found with no one asking."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.polling import eventually_sync
from tests.system.service import Server, StartServer, actor, pdf, post_upload
from tests.webhook_receiver import WebhookReceiver

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

    def verification_audits() -> list[dict[str, Any]] | None:
        audits = [
            b for b in server.published("audit_events")
            if b["action"] in ("document.verified", "document.mismatch")
        ]
        both = {b["entity_id"] for b in audits} == {target["id"], intact["id"]}
        return audits if both else None

    audits = eventually_sync(verification_audits, "both verifications' audit events",
                             describe=server.log_tail)
    for audit in audits:
        assert (audit["actor_type"], audit["actor_id"]) == ("system", None)
        assert audit["details"]["reason"] == "scheduled_sweep"
    paths = {line.get("path") for line in server.log_lines()}
    assert STATUS in paths  # requests are logged with their path ...
    assert "/api/v1/documents/verify" not in paths  # ... and no one asked for a verification


def test_a_tampered_file_freezes_its_entity_and_pages_the_webhook(
    start_server: StartServer, data_dir: Path
) -> None:
    """The sweep finds a file changed on disk: the entity freezes, the incident lists the
    document, the webhook (failing once, then accepting) hears of both, the download URL
    answers 423; unfreezing restores it, and the webhook hears of that too."""
    admin, officer = actor("admin"), actor("compliance_officer")
    entity = uuid.uuid4()
    first = start_server()
    with first.client() as client:
        created = post_upload(client, admin, entity, pdf(20_000))
    assert created.status_code == 201, created.text
    doc = created.json()
    assert first.stop() == 0
    _flip_byte(data_dir / "blobs" / "objects" / doc["storage_key"])

    with WebhookReceiver.running([500]) as receiver:
        server = start_server(INTEGRITY_SWEEP_PERIOD_HOURS="0.001",
                              INCIDENT_WEBHOOK_URL=receiver.url)
        with server.client() as client:
            freeze = f"/api/v1/entities/{entity}/freeze"
            state = eventually_sync(
                lambda: (body := client.get(freeze, headers=officer).json())["frozen"] and body,
                "the sweep to freeze the entity", within=10, describe=server.log_tail,
            )
            incidents = client.get(f"/api/v1/incidents?entity_id={entity}", headers=officer)
            (incident,) = incidents.json()["incidents"]
            assert [d["document_id"] for d in incident["documents"]] == [doc["id"]]
            assert state["incident_id"] == incident["incident_id"]
            assert (state["reason"], state["by"]) == ("integrity mismatch", None)

            paged = eventually_sync(
                lambda: len(receiver.answered(200)) >= 2 and receiver.answered(200),
                "the webhook to accept both", within=10, describe=server.log_tail,
            )
            assert [b["event_type"] for b in paged] == ["incident.opened", "entity.frozen"]
            assert receiver.answered(500)[0]["event_type"] == "incident.opened"
            assert paged[0]["incident_id"] == incident["incident_id"]

            download = f"/api/v1/documents/{doc['id']}/download"
            refused = client.get(download, headers=admin)
            assert refused.status_code == 423
            assert refused.json()["error_code"] == "ENTITY_FROZEN"
            assert refused.json()["incident_id"] == incident["incident_id"]

            lifted = client.post(f"/api/v1/entities/{entity}/unfreeze", headers=officer,
                                 json={"reason": "restored from the signed original"})
            assert lifted.status_code == 200, lifted.text
            assert client.get(download, headers=admin).status_code == 200
            unfrozen = eventually_sync(
                lambda: len(receiver.answered(200)) >= 3 and receiver.answered(200)[2],
                "the webhook to hear of the unfreeze", within=10, describe=server.log_tail,
            )
            assert unfrozen["event_type"] == "entity.unfrozen"
            assert unfrozen["by"] == officer["X-Actor-Id"]
        assert server.stop() == 0
    assert "s3cr3t" not in server.log_path.read_text()  # the webhook URL's secret part
