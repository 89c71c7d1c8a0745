"""Disposition over HTTP on the embedded default (SQLite, encrypted local files).

Time is moved, not waited for: the records' clock (``Backends.clock``) and the blob store's
clock are each a ``Clock`` the test sets. Moving both past a P1D retention makes a document
disposable; moving only the records' clock leaves the blob store still locking the object,
which is the storage's own refusal (409 ``STORAGE_LOCKED``). Every answer is checked against
``http/openapi.yaml``; the checks come in the documented order (401, 422, 404, 403, 409).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import attrs
import pytest
import trio
from quart.typing import TestClientProtocol as Client

from actors.system import Vault, run_vault
from tests.http.helpers import (
    API,
    archive_path,
    audit_rows,
    download_path,
    object_path,
    outbox,
    problem,
    uploaded,
    verify,
)
from tests.http.test_openapi import assert_documented
from tests.http.test_records import ADMIN, OFFICER, new_hold, put_policy, retention, send
from tests.polling import eventually
from tests.support import Clock, actor_headers
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.key_files import load_or_create_key
from vault.config import Settings
from vault.domain.models import Role
from vault.wiring import url_signer
from vault_http.serve import build_backends

ONE_DAY = {"period": "P1D", "mode": "compliance", "on_expiry": "dispose"}
DISPOSITIONS = f"{API}/dispositions"
ONE = "/api/v1/dispositions/{disposition_id}"
OTHER_ADMIN = actor_headers(Role.ADMIN)


@pytest.fixture
def records_clock() -> Clock:
    return Clock()


@pytest.fixture
def blob_clock() -> Clock:
    return Clock()


@pytest.fixture
async def vault(
    nursery: trio.Nursery, settings: Settings, records_clock: Clock, blob_clock: Clock
) -> AsyncIterator[Vault]:
    built, _signer = await trio.to_thread.run_sync(build_backends, settings)
    blobs = LocalBlobStore(
        settings.vault_data_dir / "blobs",
        load_or_create_key(settings.vault_data_dir / "keys" / "blob-master.key"),
        url_signer(settings), settings.effective_public_base_url, clock=blob_clock,
    )
    backends = attrs.evolve(built, blobs=blobs, clock=records_clock)
    running: Vault = await nursery.start(run_vault, backends)
    yield running
    await running.stop(5)
    await trio.to_thread.run_sync(backends.store.close)


async def locked_document(client: Client) -> dict[str, Any]:
    """A document uploaded under a P1D compliance policy, once its object carries the lock."""
    assert (await put_policy(client, ONE_DAY)).status_code == 201
    doc = await uploaded(client)

    async def locked() -> bool:
        return (await retention(client, doc["id"]))["storage"]["lock_mode"] == "compliance"

    await eventually(locked, "the keeper to lock the object")
    return doc


async def propose(client: Client, *ids: str, headers: dict[str, str] = ADMIN) -> Any:
    return await send(client, "POST", DISPOSITIONS, {"document_ids": list(ids),
                                                     "reason": "retention ended"}, headers)


async def proposed(client: Client, *ids: str) -> dict[str, Any]:
    body: dict[str, Any] = await assert_documented(await propose(client, *ids), "POST",
                                                   "/api/v1/dispositions", 201)
    return body


async def step(client: Client, disposition_id: str, action: str,
               headers: dict[str, str] = OFFICER) -> Any:
    return await send(client, "POST", f"{DISPOSITIONS}/{disposition_id}/{action}", None,
                      headers)


class TestLifecycle:
    async def test_expired_document_is_destroyed_with_a_certificate(
        self, client: Client, settings: Settings, records_clock: Clock, blob_clock: Clock
    ) -> None:
        doc = await locked_document(client)
        path = object_path(settings, f"documents/{doc['id']}")
        assert path.exists()
        refused = await problem(await propose(client, doc["id"]), 409, "DOCUMENT_NOT_DISPOSABLE")
        assert refused["blocked"] == {doc["id"]: ["retention"]}
        listed = await assert_documented(
            await client.get(f"{DISPOSITIONS}/eligible", headers=OFFICER),
            "GET", "/api/v1/dispositions/eligible", 200)
        assert listed["documents"] == []

        records_clock.ahead = blob_clock.ahead = timedelta(days=2)
        listed = await assert_documented(
            await client.get(f"{DISPOSITIONS}/eligible", headers=OFFICER),
            "GET", "/api/v1/dispositions/eligible", 200)
        assert [d["document_id"] for d in listed["documents"]] == [doc["id"]]
        assert listed["documents"][0]["on_expiry"] == "dispose"
        made = await proposed(client, doc["id"])
        assert made["status"] == "proposed" and made["documents"][0]["storage"]["versions"] is None
        disposition = made["disposition_id"]

        await problem(await step(client, disposition, "execute"), 409, "DISPOSITION_OUT_OF_TURN")
        await problem(await step(client, disposition, "approve", ADMIN), 403,
                      "UNAUTHORIZED_ACCESS")  # the proposer
        ok = await assert_documented(await step(client, disposition, "approve"),
                                     "POST", ONE + "/approve", 200)
        assert ok["approved_role"] == "compliance_officer"
        done = await assert_documented(await step(client, disposition, "execute", OTHER_ADMIN),
                                       "POST", ONE + "/execute", 200)
        assert done["status"] == "executed" and done["executed_role"] == "admin"
        (item,) = done["documents"]
        assert (item["document_id"], item["sha256_hash"]) == (doc["id"], doc["sha256_hash"])
        assert item["policy"] == {"document_type": "kyc", "version": 1}
        assert item["storage"]["versions"] == [{"version_id": None, "delete_marker": False}]
        assert len(item["ledger"]["leaf_hash"]) == 64

        async def indexed() -> Any:
            got = await client.get(f"{DISPOSITIONS}/{disposition}", headers=ADMIN)
            return (await got.get_json())["documents"][0]["ledger"]["index"] is not None

        await eventually(indexed, "the disposed leaf to be integrated")
        certificate = await assert_documented(
            await client.get(f"{DISPOSITIONS}/{disposition}", headers=ADMIN),
            "GET", ONE, 200)
        assert certificate["holds_checked_at"] == certificate["executed_at"]

        tombstone = await client.get(f"{API}/documents/{doc['entity_id']}?include_archived=true",
                                     headers=ADMIN)
        assert [d["status"] for d in (await tombstone.get_json())["documents"]] == ["disposed"]
        await problem(await client.get(download_path(doc["id"]), headers=ADMIN), 410,
                      "DOCUMENT_DISPOSED")
        await problem(await verify(client, doc["id"]), 410, "DOCUMENT_DISPOSED")
        await problem(await client.delete(archive_path(doc["id"]), headers=ADMIN), 410,
                      "DOCUMENT_DISPOSED")
        assert not path.exists()
        actions = [r["action"] for r in await audit_rows(settings)
                   if r["entity_type"] == "disposition" or r["action"] == "document.disposed"]
        assert sorted(actions) == ["disposition.approved", "disposition.executed",
                                   "disposition.proposed", "document.disposed"]
        kinds = [r["event_type"] for r in await outbox(settings) if "event_type" in r]
        assert "document.disposed" in kinds

    async def test_a_hold_blocks_until_released(
        self, client: Client, records_clock: Clock, blob_clock: Clock
    ) -> None:
        doc = await locked_document(client)
        held = await new_hold(client, entity_ids=[doc["entity_id"]])
        records_clock.ahead = blob_clock.ahead = timedelta(days=2)
        refused = await problem(await propose(client, doc["id"]), 409, "DOCUMENT_NOT_DISPOSABLE")
        assert refused["blocked"] == {doc["id"]: [f"hold:{held['hold_id']}"]}
        await send(client, "POST", f"{API}/legal-holds/{held['hold_id']}/release",
                   {"reason": "matter closed"}, OFFICER)

        async def unflagged() -> bool:  # until then the storage itself refuses (STORAGE_LOCKED)
            return (await retention(client, doc["id"]))["storage"]["legal_hold"] is False

        await eventually(unflagged, "the keeper to lift the object's legal hold")
        made = await proposed(client, doc["id"])
        await step(client, made["disposition_id"], "approve")
        done = await assert_documented(await step(client, made["disposition_id"], "execute"),
                                       "POST", ONE + "/execute", 200)
        assert done["status"] == "executed"

    async def test_the_storage_still_locking_the_object_is_storage_locked(
        self, client: Client, settings: Settings, records_clock: Clock
    ) -> None:
        doc = await locked_document(client)
        records_clock.ahead = timedelta(days=2)  # the records say expired; the store does not
        made = await proposed(client, doc["id"])
        await step(client, made["disposition_id"], "approve")
        await problem(await step(client, made["disposition_id"], "execute"), 409,
                      "STORAGE_LOCKED")
        after = await assert_documented(
            await client.get(f"{DISPOSITIONS}/{made['disposition_id']}", headers=ADMIN),
            "GET", ONE, 200)
        assert after["status"] == "approved" and after["executed_at"] is None
        body = await client.get(f"{API}/documents/{doc['entity_id']}", headers=ADMIN)
        assert [d["status"] for d in (await body.get_json())["documents"]] == ["uploaded"]
        assert (await verify(client, doc["id"])).status_code == 200  # its bytes are all there


class TestErrors:
    async def test_order_of_checks(self, client: Client) -> None:
        doc = await uploaded(client)
        no_identity = await client.post(DISPOSITIONS, json={"document_ids": "x"})
        await problem(no_identity, 401, "UNAUTHENTICATED")
        await problem(await send(client, "POST", DISPOSITIONS, {"document_ids": []}), 422,
                      "VALIDATION_ERROR")
        await problem(await send(client, "POST", DISPOSITIONS,
                                 {"document_ids": [doc["id"]], "reason": "x", "extra": 1}),
                      422, "VALIDATION_ERROR")
        await problem(await propose(client, str(uuid4())), 404, "DOCUMENT_NOT_FOUND")
        await problem(await propose(client, doc["id"], headers=OFFICER), 403,
                      "UNAUTHORIZED_ACCESS")  # only an admin proposes
        await problem(await step(client, "not-a-uuid", "approve"), 422, "VALIDATION_ERROR")
        await problem(await step(client, str(uuid4()), "approve"), 404, "DISPOSITION_NOT_FOUND")
        made = await proposed(client, doc["id"])  # no policy: nothing keeps it
        await problem(await step(client, made["disposition_id"], "approve",
                                 actor_headers(Role.INVESTOR)), 403, "UNAUTHORIZED_ACCESS")
        await problem(await client.get(f"{DISPOSITIONS}/{made['disposition_id']}",
                                       headers=actor_headers(Role.ISSUER)),
                      403, "UNAUTHORIZED_ACCESS")
        listed = await assert_documented(
            await client.get(f"{DISPOSITIONS}?status=proposed",
                             headers=actor_headers(Role.AUDITOR)),
            "GET", "/api/v1/dispositions", 200)
        assert [d["disposition_id"] for d in listed["dispositions"]] == [made["disposition_id"]]
        await problem(await client.get(f"{DISPOSITIONS}?status=gone", headers=ADMIN), 422,
                      "VALIDATION_ERROR")
        again = await problem(await propose(client, doc["id"]), 409, "DOCUMENT_NOT_DISPOSABLE")
        assert again["blocked"] == {doc["id"]: [f"disposition:{made['disposition_id']}"]}
