"""``GET /api/v1/integrity/status``, the verifier's health figures and /metrics for the sweep."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from quart.typing import TestClientProtocol as Client

from actors.access import MatrixAuthorizer
from actors.system import Sizing, Vault, run_vault
from tests.http.helpers import object_path, problem, uploaded, verify
from tests.http.test_openapi import assert_documented
from tests.polling import eventually
from tests.support import actor_headers, pdf_bytes, test_settings
from vault.adapters.blobs.local import HEADER_SIZE
from vault.adapters.stores.sqlite import encode_timestamp
from vault.config import Settings
from vault.domain.models import Role, utcnow
from vault.wiring import url_signer
from vault_http.app import create_app
from vault_http.identity import HeaderIdentity
from vault_http.serve import build_backends

STATUS = "/api/v1/integrity/status"


async def status(client: Client, role: Role = Role.AUDITOR) -> dict[str, Any]:
    response = await client.get(STATUS, headers=actor_headers(role))
    body: dict[str, Any] = await assert_documented(response, "GET", STATUS, 200)
    return body


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def metrics(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = await response.get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("vault_integrity_")
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def documents_gauge(found: Samples) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in found.items() if name == "vault_integrity_documents"
    }


def _execute(path: Path, sql: str, params: tuple[object, ...]) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


class TestAccess:
    @pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR, Role.COMPLIANCE_OFFICER])
    async def test_readers_get_the_status(self, client: Client, role: Role) -> None:
        body = await status(client, role)
        assert body["documents"] == 0

    @pytest.mark.parametrize("role", [Role.ISSUER, Role.INVESTOR])
    async def test_other_roles_are_forbidden(self, client: Client, role: Role) -> None:
        response = await client.get(STATUS, headers=actor_headers(role))
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
        await assert_documented(response, "GET", STATUS, 403)

    async def test_no_identity_is_401(self, client: Client) -> None:
        response = await client.get(STATUS)
        await problem(response, 401, "UNAUTHENTICATED")
        await assert_documented(response, "GET", STATUS, 401)


class TestFiguresWithTheSweepOff:
    async def test_never_verified_then_current_overdue_and_mismatched(
        self, client: Client, settings: Settings
    ) -> None:
        """Sweep off: measured against 168 h. Uploads count as never verified; an HTTP
        verification makes one current; an old verification is overdue; a tampered
        file verified is mismatched (and still verified within the period)."""
        admin = actor_headers(Role.ADMIN)
        docs = [await uploaded(client, headers=admin, content=pdf_bytes(1000)) for _ in range(3)]
        body = await status(client)
        assert body == {
            "period_hours": 168.0, "documents": 3, "verified_within_period": 0, "overdue": 0,
            "never_verified": 3, "mismatched": 0, "oldest_verification_at": None,
            "sweep": {"enabled": False, "bytes_per_second": 50_000_000.0,
                      "last_pass_completed_at": None},
        }

        first = await (await verify(client, docs[0]["id"])).get_json()
        body = await status(client)
        assert (body["verified_within_period"], body["never_verified"]) == (1, 2)
        assert parse_time(body["oldest_verification_at"]) == parse_time(
            first["hash_verified_at"]
        )

        long_ago = utcnow() - timedelta(hours=200)
        await trio.to_thread.run_sync(
            _execute, settings.vault_data_dir / "vault.sqlite3",
            "UPDATE documents SET hash_verified_at = ? WHERE id = ?",
            (encode_timestamp(long_ago), docs[0]["id"]),
        )
        body = await status(client)
        assert (body["verified_within_period"], body["overdue"], body["never_verified"]) == (
            0, 1, 2
        )
        assert parse_time(body["oldest_verification_at"]) == long_ago

        await trio.to_thread.run_sync(
            _flip_byte, object_path(settings, docs[1]["storage_key"]), HEADER_SIZE + 10
        )
        answered = await (await verify(client, docs[1]["id"])).get_json()
        assert answered["status"] == "mismatch"
        body = await status(client)
        assert body["documents"] == 3
        assert (body["verified_within_period"], body["overdue"], body["never_verified"],
                body["mismatched"]) == (1, 1, 1, 1)


@contextlib.asynccontextmanager
async def serving(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[tuple[Vault, Client]]:
    """A vault on ``settings`` and a test client of its app; stopped after."""
    backends, _ = await trio.to_thread.run_sync(build_backends, settings)
    vault: Vault = await nursery.start(run_vault, backends, Sizing())
    app = create_app(
        vault, identity=HeaderIdentity(settings.epr_mock_roles),
        authorizer=MatrixAuthorizer(), signer=url_signer(settings),
    )
    try:
        yield vault, app.test_client()
    finally:
        await vault.stop(5)
        await trio.to_thread.run_sync(backends.store.close)


class TestWithTheSweep:
    async def test_status_health_and_metrics_after_a_pass(
        self, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """Three uploads (sweep off), then a vault sweeping at a 2 h period: every figure
        moves from never verified to verified within the period, the pass is recorded, and
        /healthz and /metrics say the same."""
        off = test_settings(tmp_path / "data")
        sizes = [1000, 2000, 3000]
        async with serving(off, nursery) as (_, client):
            admin = actor_headers(Role.ADMIN)
            for size in sizes:
                await uploaded(client, headers=admin, content=pdf_bytes(size))
            before = await status(client)
            assert (before["never_verified"], before["verified_within_period"]) == (3, 0)

        on = test_settings(
            tmp_path / "data", integrity_sweep_period_hours=2.0,
            integrity_sweep_max_mb_per_second=500.0,
        )
        started = utcnow()
        async with serving(on, nursery) as (vault, client):

            async def after_the_pass() -> dict[str, Any] | None:
                body = await status(client)
                return body if body["sweep"]["last_pass_completed_at"] else None

            await eventually(cast(Callable[[], Awaitable[Any]], after_the_pass), "the pass")
            body = await status(client, Role.COMPLIANCE_OFFICER)
            assert body["period_hours"] == 2.0
            assert (body["documents"], body["verified_within_period"], body["overdue"],
                    body["never_verified"], body["mismatched"]) == (3, 3, 0, 0, 0)
            assert body["sweep"]["enabled"] is True
            assert body["sweep"]["bytes_per_second"] == 500_000_000.0
            assert parse_time(body["sweep"]["last_pass_completed_at"]) >= started
            assert parse_time(body["oldest_verification_at"]) >= started

            health = await client.get("/healthz/actors/verifier")
            snapshot = await assert_documented(health, "GET", "/healthz/actors/{name}", 200)
            assert snapshot["coverage"]["documents"] == snapshot["coverage"]["current"] == 3
            assert snapshot["sweep"]["documents"] == 3
            assert snapshot["sweep"]["bytes_read"] == sum(sizes)

            found = await metrics(client)
            assert documents_gauge(found) == {
                "current": 3, "overdue": 0, "never": 0, "mismatch": 0
            }
            assert found[("vault_integrity_sweep_documents_total", ())] == 3
            assert found[("vault_integrity_sweep_bytes_read_total", ())] == sum(sizes)
            age = found[("vault_integrity_oldest_verification_age_seconds", ())]
            assert 0 <= age < (utcnow() - started).total_seconds() + 1
            assert vault.verifier.health.snapshot()["coverage"]["never"] == 0


class TestCoverageFreshness:
    async def test_coverage_is_refreshed_with_the_sweep_off(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """Coverage read every 0.2 s (instead of 30 s): an upload shows in /metrics."""
        from actors.sweep import Sweep

        defaults = Sweep.__init__.__kwdefaults__
        assert defaults is not None and "coverage_every" in defaults
        monkeypatch.setitem(defaults, "coverage_every", 0.2)
        async with serving(test_settings(tmp_path / "data"), nursery) as (_, client):
            await uploaded(client, headers=actor_headers(Role.ADMIN), content=pdf_bytes(1000))

            async def counted() -> bool:
                return documents_gauge(await metrics(client)).get("never") == 1

            await eventually(cast(Callable[[], Awaitable[Any]], counted), "never 1", within=3)

    async def test_coverage_is_refreshed_with_the_sweep_on(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nursery: trio.Nursery
    ) -> None:
        """The same with the sweep on (and nothing due after its first, empty, pass)."""
        from actors.sweep import Sweep

        defaults = Sweep.__init__.__kwdefaults__
        assert defaults is not None
        monkeypatch.setitem(defaults, "coverage_every", 0.2)
        on = test_settings(tmp_path / "data", integrity_sweep_period_hours=1.0)
        async with serving(on, nursery) as (_, client):

            async def first_pass_done() -> bool:
                # Only then is the upload below left alone (the sweep idles until the next
                # document falls due, at most a minute); before, it might verify it.
                answer = await client.get("/healthz/actors/verifier")
                body = await answer.get_json()
                return body["sweep"]["last_pass_completed_at"] is not None

            await eventually(cast(Callable[[], Awaitable[Any]], first_pass_done),
                             "the sweep's first, empty, pass", within=3)
            await uploaded(client, headers=actor_headers(Role.ADMIN), content=pdf_bytes(1000))

            async def counted() -> bool:
                return documents_gauge(await metrics(client)).get("never") == 1

            await eventually(cast(Callable[[], Awaitable[Any]], counted), "never 1", within=3)
