"""Backpressure at the edge: a full mailbox answers 503 SERVICE_BUSY with Retry-After."""

from __future__ import annotations

import pytest
import trio
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from actors.runtime import ActorState
from actors.system import Sizing, Vault
from tests.http.helpers import post_upload, problem, quiesce, uploaded, verify
from tests.polling import eventually
from vault_http.app import VaultApp


class TestFullMailbox:
    @pytest.fixture
    def sizing(self) -> Sizing:
        return Sizing(verifier_mailbox=1, verifier_concurrency=1)

    async def test_verify_is_503_once_the_verifier_mailbox_is_full(
        self, app: VaultApp, client: Client, vault: Vault
    ) -> None:
        """With the verifier stuck and its one mailbox slot taken, a verify answers 503 busy."""
        app.extensions["vault"].ask_deadline = 0.2
        doc = await uploaded(client)
        await quiesce(vault)
        limiter = vault.backends.blob_limiter
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        answers: list[Response] = []

        async def verify_in_background() -> None:
            answers.append(await verify(client, doc["id"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(verify_in_background)
            await eventually(lambda: vault.verifier.health.in_flight == 1,
                             "the first verify to be in the verifier's hands")
            nursery.start_soon(verify_in_background)
            await eventually(lambda: vault.verifier.depth() == 1,
                             "the second verify to wait in the mailbox")

            busy = await verify(client, doc["id"])
            body = await problem(busy, 503, "SERVICE_BUSY")
            assert busy.headers["Retry-After"] == "1"
            assert "verifier" in body["detail"]
            assert answers == []

            for holder in holders:
                limiter.release_on_behalf_of(holder)
        assert [answer.status_code for answer in answers] == [200, 200]


class TestFailedActor:
    async def test_upload_to_a_failed_actor_is_503_busy(
        self, client: Client, vault: Vault
    ) -> None:
        """An upload while the upload actor has failed for good answers 503 at once."""
        vault.upload.health.state = ActorState.FAILED
        response = await post_upload(client)
        await problem(response, 503, "SERVICE_BUSY")
        assert response.headers["Retry-After"]
