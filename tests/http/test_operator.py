"""Operator routes: health, readiness, metrics and the API description (no identity)."""

from __future__ import annotations

from typing import Any, NoReturn
from uuid import uuid4

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from quart.typing import TestClientProtocol as Client

from actors.ledger import LogState, Publish
from actors.runtime import ActorState, ask
from actors.system import Vault
from tests.http.helpers import list_path, problem, quiesce, uploaded
from tests.polling import eventually
from tests.support import actor_headers
from vault.domain.errors import BlobStoreUnavailable

ACTOR_NAMES = {
    "upload", "verifier", "archiver", "audit_publisher", "alerter", "entity_deletion_poller",
    "ledger",
}
DESTINATIONS = ("document_events", "audit_events", "integrity_alerts", "incident_notifications")
OUTBOX_METRICS = (
    "vault_outbox_pending",
    "vault_outbox_parked",
    "vault_outbox_oldest_pending_age_seconds",
    "vault_outbox_delivered_total",
    "vault_outbox_failed_total",
    "vault_outbox_pruned_total",
)
SNAPSHOT_KEYS = {
    "name", "state", "mailbox", "in_flight", "processed", "failed", "restarts",
    "last_error", "last_activity_at", "started_at",
}


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


class TestHealth:
    async def test_healthz_lists_every_actor(self, client: Client) -> None:
        """/healthz answers 200 ok with all seven actors; the poller is disabled without a queue."""
        response = await client.get("/healthz")
        assert response.status_code == 200
        body = await response.get_json()
        assert body.keys() == {"status", "actors"}
        assert body["status"] == "ok"
        assert body["actors"] == {
            "upload": "running",
            "verifier": "running",
            "archiver": "running",
            "audit_publisher": "running",
            "alerter": "running",
            "entity_deletion_poller": "disabled",
            "ledger": "running",
        }

    async def test_failed_actor_degrades_healthz(self, client: Client, vault: Vault) -> None:
        """An actor in state failed turns /healthz into 503 degraded, naming its state."""
        vault.upload.health.state = ActorState.FAILED
        response = await client.get("/healthz")
        assert response.status_code == 503
        body = await response.get_json()
        assert body["status"] == "degraded"
        assert body["actors"]["upload"] == "failed"
        assert body["actors"]["verifier"] == "running"

    async def test_actors_route_gives_every_snapshot(self, client: Client, vault: Vault) -> None:
        """/healthz/actors answers one snapshot per actor with the contract's keys; the two
        publishers add their outbox backlog."""
        await quiesce(vault)
        response = await client.get("/healthz/actors")
        assert response.status_code == 200
        body = await response.get_json()
        assert body.keys() == {"actors"}
        assert {snapshot["name"] for snapshot in body["actors"]} == ACTOR_NAMES
        for snapshot in body["actors"]:
            extra = {"backlog"} if snapshot["name"] in ("audit_publisher", "alerter") else set()
            if snapshot["name"] == "verifier":
                extra = {"sweep", "coverage"}
            if snapshot["name"] == "archiver":
                extra = {"keeper"}
            if snapshot["name"] == "ledger":
                extra = {
                    "tree_size", "pending", "checkpoint_size", "last_checkpoint_at",
                    "published_size",
                }
            assert snapshot.keys() == SNAPSHOT_KEYS | extra, snapshot["name"]
            assert snapshot["mailbox"].keys() == {"depth", "capacity"}

    async def test_actor_route_gives_one_snapshot(self, client: Client) -> None:
        """/healthz/actors/upload answers 200 with the upload actor's snapshot."""
        response = await client.get("/healthz/actors/upload")
        assert response.status_code == 200
        snapshot = await response.get_json()
        assert snapshot.keys() == SNAPSHOT_KEYS
        assert snapshot["name"] == "upload"
        assert snapshot["state"] == "running"
        assert snapshot["mailbox"] == {"depth": 0, "capacity": 64}
        assert snapshot["restarts"] == 0
        assert snapshot["last_error"] is None
        assert snapshot["started_at"] is not None

    async def test_snapshot_counts_handled_messages(self, client: Client) -> None:
        """An accepted upload shows in the upload actor's ``processed`` count."""
        await uploaded(client)
        snapshot = await (await client.get("/healthz/actors/upload")).get_json()
        assert snapshot["processed"] == 1
        assert snapshot["failed"] == 0
        assert snapshot["last_activity_at"] is not None

    async def test_disabled_actor_is_healthy(self, client: Client) -> None:
        """The poller, disabled by configuration, answers 200 on its route."""
        response = await client.get("/healthz/actors/entity_deletion_poller")
        assert response.status_code == 200
        assert (await response.get_json())["state"] == "disabled"

    async def test_failed_actor_route_is_503(self, client: Client, vault: Vault) -> None:
        """An actor in state failed answers 503 on its own route."""
        vault.upload.health.state = ActorState.FAILED
        response = await client.get("/healthz/actors/upload")
        assert response.status_code == 503
        assert (await response.get_json())["state"] == "failed"

    async def test_unknown_actor_is_404(self, client: Client) -> None:
        """A name that is no actor answers 404 as problem JSON."""
        response = await client.get("/healthz/actors/janitor")
        await problem(response, 404, "NOT_FOUND")


class TestReadiness:
    async def test_ready_when_everything_answers(self, client: Client) -> None:
        """/readyz answers 200 with database, blob_store and queues all ok."""
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert await response.get_json() == {
            "status": "ok",
            "checks": {"database": "ok", "blob_store": "ok", "object_lock": "ok",
                       "versioning": "ok", "queues": "ok"},
        }

    async def test_unreachable_blob_store_is_503(
        self, client: Client, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A blob store that fails its probe makes /readyz 503 unavailable, with the reason."""

        def down(*args: Any, **kwargs: Any) -> NoReturn:
            raise BlobStoreUnavailable("blob folder is not writable")

        monkeypatch.setattr(vault.backends.blobs, "ping", down)
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = await response.get_json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["blob_store"] == "blob folder is not writable"

    async def test_failed_publisher_is_503(self, client: Client, vault: Vault) -> None:
        """A publisher that failed for good makes the queues check, and /readyz, fail."""
        vault.alerter.mailbox.health.state = ActorState.FAILED
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = await response.get_json()
        assert body["status"] == "unavailable"
        assert body["checks"]["queues"] != "ok"
        assert "alerter" in body["checks"]["queues"]


class TestMetrics:
    async def test_prometheus_text_with_actor_figures(self, client: Client) -> None:
        """/metrics is Prometheus text with mailbox depth, processed and restarts per actor."""
        await uploaded(client)
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        samples = _samples(await response.get_data(as_text=True))
        by_actor = {
            (name, labels.get("actor")): value for name, labels, value in samples
        }
        for actor in ACTOR_NAMES:
            assert ("vault_actor_mailbox_depth", actor) in by_actor
            assert ("vault_actor_restarts_total", actor) in by_actor
        assert by_actor[("vault_actor_processed_total", "upload")] == 1
        assert by_actor[("vault_actor_restarts_total", "upload")] == 0
        assert by_actor[("vault_actor_mailbox_depth", "verifier")] == 0

    async def test_outbox_figures_per_destination(self, client: Client, vault: Vault) -> None:
        """Every destination has its outbox gauges and counters; an upload's two events
        count as delivered and leave nothing pending."""
        await uploaded(client)
        publisher = vault.audit_publisher.mailbox.health

        def both_delivered() -> bool:
            backlog = publisher.extra.get("backlog", {})
            return all(
                backlog.get(name, {}).get("delivered") == 1
                for name in ("document_events", "audit_events")
            )

        await eventually(both_delivered, "both events of the upload to be delivered")
        response = await client.get("/metrics")
        samples = _samples(await response.get_data(as_text=True))
        by_destination = {
            (name, labels["destination"]): value
            for name, labels, value in samples
            if "destination" in labels
        }
        assert by_destination.keys() == {
            (name, destination) for name in OUTBOX_METRICS for destination in DESTINATIONS
        }
        for destination in ("document_events", "audit_events"):
            assert by_destination[("vault_outbox_delivered_total", destination)] == 1
            assert by_destination[("vault_outbox_failed_total", destination)] == 0
            assert by_destination[("vault_outbox_pruned_total", destination)] == 0
            assert by_destination[("vault_outbox_pending", destination)] == 0
            assert by_destination[("vault_outbox_parked", destination)] == 0
            assert by_destination[("vault_outbox_oldest_pending_age_seconds", destination)] == 0
        assert by_destination[("vault_outbox_delivered_total", "integrity_alerts")] == 0

    async def test_ledger_figures(self, client: Client, vault: Vault) -> None:
        """The tree's size, what waits to be integrated and what no checkpoint covers yet."""
        await uploaded(client)
        await uploaded(client)
        await ask(vault.ledger, Publish, deadline=trio.current_time() + 5, returns=LogState)
        await uploaded(client)

        def integrated() -> bool:
            return vault.ledger.health.extra.get("tree_size") == 3

        await eventually(integrated, "the third leaf to be integrated")
        samples = _samples(await (await client.get("/metrics")).get_data(as_text=True))
        ledger = {name: value for name, _, value in samples if name.startswith("vault_ledger_")}
        assert ledger == {
            "vault_ledger_tree_size": 3,
            "vault_ledger_pending_leaves": 0,
            "vault_ledger_checkpoint_size": 2,
            "vault_ledger_unsigned_leaves": 1,
            "vault_ledger_published_size": 2,
        }

    async def test_witness_anchor_and_mirror_figures(self, client: Client, vault: Vault) -> None:
        """Each witness, anchor type and the mirror, as the ledger's parts report them."""
        await uploaded(client)
        await ask(vault.ledger, Publish, deadline=trio.current_time() + 5, returns=LogState)
        witness = {
            "url": "http://w", "cosigned_size": 1, "cosignatures": 3, "failures": 2,
            "latency_ms": 12.5, "last_error": None, "last_cosigned_at": None,
        }
        anchor = {
            "anchors": 4, "failures": 1, "last_size": 1, "last_anchored_at": None,
            "last_error": None, "age_seconds": 30.0,
        }
        live = {
            "published_size": 1,
            "witnesses": {"w1.example": witness, "w2.example": {**witness, "latency_ms": None}},
            "anchors": {"rfc3161": anchor, "evm": {**anchor, "age_seconds": None}},
            "mirror": {"size": 1, "objects": 3, "failures": 5, "last_mirrored_at": None,
                       "last_error": None},
        }
        vault.ledger.health.live = lambda: live
        samples = _samples(await (await client.get("/metrics")).get_data(as_text=True))
        found = {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
        w1, w2 = (("witness", "w1.example"),), (("witness", "w2.example"),)
        assert found[("vault_ledger_witness_cosigned_size", w1)] == 1
        assert found[("vault_ledger_witness_latency_seconds", w1)] == 0.0125
        assert ("vault_ledger_witness_latency_seconds", w2) not in found
        assert found[("vault_ledger_witness_cosignatures_total", w2)] == 3
        assert found[("vault_ledger_witness_failures_total", w1)] == 2
        rfc, evm = (("type", "rfc3161"),), (("type", "evm"),)
        assert found[("vault_ledger_anchor_age_seconds", rfc)] == 30
        assert ("vault_ledger_anchor_age_seconds", evm) not in found
        assert found[("vault_ledger_anchors_total", evm)] == 4
        assert found[("vault_ledger_anchor_failures_total", rfc)] == 1
        assert found[("vault_ledger_mirror_size", ())] == 1
        assert found[("vault_ledger_mirror_failures_total", ())] == 5
        assert found[("vault_ledger_published_size", ())] == 1

    async def test_request_latency_by_route_and_status(self, client: Client) -> None:
        """Each answered request is counted under its route template and status."""
        await client.get(list_path(uuid4()), headers=actor_headers())
        await client.get(list_path(uuid4()))
        response = await client.get("/metrics")
        samples = _samples(await response.get_data(as_text=True))
        counts = {
            (labels["route"], labels["status"]): value
            for name, labels, value in samples
            if name == "vault_http_request_duration_seconds_count"
        }
        assert counts[("/api/v1/documents/<entity_id>", "200")] == 1
        assert counts[("/api/v1/documents/<entity_id>", "401")] == 1


class TestApiDescription:
    async def test_openapi_json_is_served(self, client: Client) -> None:
        """/openapi.json answers 200 JSON."""
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        assert response.mimetype == "application/json"

    async def test_docs_page_is_served(self, client: Client) -> None:
        """/docs answers 200 HTML."""
        response = await client.get("/docs")
        assert response.status_code == 200
        assert response.mimetype == "text/html"
