"""Holds and dispositions across two ``vault serve`` processes sharing one PostgreSQL
database and one S3 bucket with Object Lock (moto): what one process decides, the other
sees and enforces, and a disposition proposed in one, approved and executed in the other
destroys every version of its object."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.polling import eventually_sync
from tests.system.service import Production, Server, StartServer, actor, pdf, post_upload

pytestmark = pytest.mark.system

API = "/api/v1"


def ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def versions(production: Production, key: str) -> list[str]:
    listed = production.s3.list_object_versions(Bucket=production.bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])
            if v["Key"] == key]


def test_holds_and_dispositions_agree_across_processes(
    start_server: StartServer, production: Production
) -> None:
    one: Server = start_server(**production.env())
    two: Server = start_server(**production.env())
    admin, other_admin, officer = actor("admin"), actor("admin"), actor("compliance_officer")
    with one.client() as first, two.client() as second:
        held_doc = ok(post_upload(first, admin, uuid.uuid4(), pdf(4_000)), 201)
        gone_doc = ok(post_upload(first, admin, uuid.uuid4(), pdf(4_000)), 201)
        hold = ok(second.post(f"{API}/legal-holds", headers=officer, json={
            "name": "SEC inquiry", "matter": "In re Token Co.", "reason": "subpoena",
            "custodian": "legal@example.com", "entity_ids": [held_doc["entity_id"]],
        }), 201)

        def flagged() -> bool:  # either process's keeper may set it
            seen = ok(first.get(f"{API}/documents/{held_doc['id']}/retention", headers=admin))
            return bool(seen["storage"]["legal_hold"]) and seen["holds"] == [hold["hold_id"]]

        eventually_sync(flagged, "the hold placed by the second process on the object")
        refused = first.post(f"{API}/dispositions", headers=admin, json={
            "document_ids": [held_doc["id"]], "reason": "schedule 4.2"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["blocked"] == {held_doc["id"]: [f"hold:{hold['hold_id']}"]}

        made = ok(first.post(f"{API}/dispositions", headers=admin, json={
            "document_ids": [gone_doc["id"]], "reason": "schedule 4.2"}), 201)
        path = f"{API}/dispositions/{made['disposition_id']}"
        again = second.post(f"{API}/dispositions", headers=other_admin, json={
            "document_ids": [gone_doc["id"]], "reason": "twice"})
        assert again.status_code == 409
        assert again.json()["blocked"] == {
            gone_doc["id"]: [f"disposition:{made['disposition_id']}"]}
        ok(second.post(f"{path}/approve", headers=officer))
        key = f"documents/{gone_doc['id']}"
        assert len(versions(production, key)) == 1
        done = ok(second.post(f"{path}/execute", headers=other_admin))
        assert done["status"] == "executed"
        (item,) = done["documents"]
        assert len(item["storage"]["versions"]) == 1 and item["storage"]["bucket"] == (
            production.bucket)
        assert versions(production, key) == []
        seen = ok(first.get(path, headers=admin))
        assert (seen["status"], seen["executed_at"], seen["documents"][0]["storage"]) == (
            "executed", done["executed_at"], item["storage"])
        listed = ok(first.get(f"{API}/documents/{gone_doc['entity_id']}",
                              params={"include_archived": "true"}, headers=admin))
        assert [d["status"] for d in listed["documents"]] == ["disposed"]
        assert first.get(f"{API}/documents/{gone_doc['id']}/download",
                         headers=admin).status_code == 410
        assert len(versions(production, f"documents/{held_doc['id']}")) == 1
