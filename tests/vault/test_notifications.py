"""Incident notifications as the domain builds them: Slack-compatible, as the OpenAPI
document's ``webhooks.incidentNotification`` describes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.vault.store_helpers import make_document
from vault.domain.events import Destination, OutboxEvent
from vault.domain.models import Actor, EntityType, Role
from vault.domain.notifications import (
    Detection,
    freeze_changed,
    incident_detected,
    incident_resolved,
    slack_escape,
)

AT = datetime(2026, 12, 3, 9, 30, 15, 250000, tzinfo=UTC)
SPEC_URI = "urn:document-vault:openapi"
SPEC = yaml.safe_load((Path(__file__).parents[2] / "http" / "openapi.yaml").read_text("utf-8"))
OFFICER = Actor.user(uuid4(), Role.COMPLIANCE_OFFICER)


def conforms(body: dict[str, Any]) -> None:
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
    validator = OAS31Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/IncidentNotification"},
        registry=registry, format_checker=oas31_format_checker,
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors


def every_kind() -> list[OutboxEvent]:
    doc = make_document(filename="a&b.pdf")
    detection = Detection(doc, "0" * 64, AT)
    incident = uuid4()
    return [
        incident_detected(incident, detection, opened=True, documents=1),
        incident_detected(incident, Detection(doc, None, AT), opened=False, documents=2),
        incident_resolved(incident, doc.entity_id, EntityType.ISSUER, documents=2,
                          resolved_by=OFFICER.id, resolution="restored", at=AT),
        freeze_changed(doc.entity_id, frozen=True, actor=Actor.system(),
                       reason="integrity mismatch", incident_id=incident, at=AT),
        freeze_changed(doc.entity_id, frozen=False, actor=OFFICER, reason="checked",
                       incident_id=None, at=AT),
    ]


@pytest.mark.parametrize("event", every_kind(), ids=lambda e: e.body["event_type"])
def test_every_kind_is_what_the_openapi_document_says(event: OutboxEvent) -> None:
    conforms(event.body)
    assert event.destination is Destination.INCIDENT_NOTIFICATIONS
    assert event.body["event_id"] == str(event.event_id)
    assert event.body["occurred_at"] == "2026-12-03T09:30:15.250Z"
    assert event.group_id == event.body["entity_id"]  # one entity's, in order
    assert event.attributes == {"event_type": event.body["event_type"]}


def test_the_schema_would_refuse_a_wrong_body() -> None:
    body = dict(every_kind()[0].body, event_type="incident.deleted")
    with pytest.raises(AssertionError, match="event_type"):
        conforms(body)


class TestText:
    def test_slack_control_characters_are_escaped(self) -> None:
        assert slack_escape("<!channel> & <https://x|y>") == (
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        )

    def test_opened_names_the_incident_the_entity_and_the_file(self) -> None:
        opened = every_kind()[0].body
        doc_id = opened["document"]["document_id"]
        assert opened["text"] == (
            f"Integrity incident {opened['incident_id']} opened for issuer"
            f" {opened['entity_id']}: a&amp;b.pdf (document {doc_id}) does not match its"
            " recorded SHA-256."
        )
        assert opened["document"]["filename"] == "a&b.pdf"  # the field keeps the value

    def test_grown_counts_the_documents(self) -> None:
        assert "now holds 2 documents" in every_kind()[1].body["text"]

    def test_resolved_says_by_whom_and_how(self) -> None:
        text = every_kind()[2].body["text"]
        assert f"(2 documents) resolved by {OFFICER.id}: restored" in text

    def test_a_mismatch_freeze_is_the_vaults_and_says_what_it_blocks(self) -> None:
        body = every_kind()[3].body
        assert body["by"] is None
        assert body["text"].startswith(f"Entity {body['entity_id']} frozen by the vault:")
        assert f"(incident {body['incident_id']})" in body["text"]
        assert "answer 423" in body["text"]

    def test_an_unfreeze_names_who(self) -> None:
        body = every_kind()[4].body
        assert body["text"] == f"Entity {body['entity_id']} unfrozen by {OFFICER.id}: checked."
        assert (body["frozen"], body["incident_id"]) == (False, None)
