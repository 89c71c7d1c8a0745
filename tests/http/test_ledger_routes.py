"""The verifiable ledger's routes: checkpoint, key, tiles, bundles, consistency, receipts.

The ledger here signs only when asked (``LEDGER_CHECKPOINT_INTERVAL_SECONDS``
is an hour and every test asks with ``Publish``), so which leaves a
checkpoint covers is decided by the test, never by the clock.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
from quart.typing import TestClientProtocol as Client

from actors.access import MatrixAuthorizer
from actors.ledger import LogState, Publish
from actors.runtime import ask
from actors.system import Vault
from tests.http.helpers import API, PROBLEM_JSON, problem, uploaded
from tests.support import actor_headers, test_settings
from vault.config import Settings
from vault.domain.checkpoint import Checkpoint, TlogProof, open_checkpoint
from vault.domain.errors import Forbidden
from vault.domain.log import SignedCheckpoint
from vault.domain.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from vault.domain.models import Action, Actor, Role
from vault.domain.note import Verifier
from vault.domain.tiles import decode_bundle, decode_tile
from vault.wiring import url_signer
from vault_http.app import VaultApp, create_app
from vault_http.identity import HeaderIdentity

LEDGER = f"{API}/ledger"
CHECKPOINT = f"{LEDGER}/checkpoint"
KEY = f"{LEDGER}/key"
CONSISTENCY = f"{LEDGER}/consistency"
INTERVAL = 3600
TEXT_PLAIN = "text/plain; charset=utf-8"


class DenyDownloads(MatrixAuthorizer):
    """The role matrix, except that the actors in ``denied`` may not download."""

    def __init__(self) -> None:
        self.denied: set[UUID] = set()

    async def authorize(self, actor: Actor, action: Action, entity_id: UUID) -> None:
        if action is Action.DOWNLOAD and actor.id in self.denied:
            raise Forbidden("this actor may not download this entity's documents")
        await super().authorize(actor, action, entity_id)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return test_settings(tmp_path / "data", ledger_checkpoint_interval_seconds=INTERVAL)


@pytest.fixture
def authorizer() -> DenyDownloads:
    return DenyDownloads()


@pytest.fixture
def app(vault: Vault, authorizer: DenyDownloads) -> VaultApp:
    settings = vault.backends.settings
    return create_app(
        vault,
        identity=HeaderIdentity(settings.epr_mock_roles),
        authorizer=authorizer,
        signer=url_signer(settings),
    )


@pytest.fixture
def admin() -> dict[str, str]:
    return actor_headers(Role.ADMIN)


async def publish(vault: Vault) -> SignedCheckpoint:
    """Have the ledger integrate everything pending and sign now; the checkpoint it signed."""
    state = await ask(vault.ledger, Publish, deadline=trio.current_time() + 5, returns=LogState)
    assert state.checkpoint is not None
    return state.checkpoint


async def upload_many(client: Client, headers: dict[str, str], count: int) -> list[str]:
    return [(await uploaded(client, headers=headers))["id"] for _ in range(count)]


def receipt_path(document_id: str | UUID) -> str:
    return f"{API}/documents/{document_id}/receipt"


def tile_path(path: str) -> str:
    return f"{LEDGER}/tile/{path}"


def decode_hashes(values: list[str]) -> list[bytes]:
    return [base64.b64decode(value, validate=True) for value in values]


async def verifier(client: Client) -> Verifier:
    response = await client.get(KEY)
    return Verifier.parse((await response.get_data(as_text=True)).removesuffix("\n"))


async def body_bytes(client: Client, path: str, headers: dict[str, str] | None = None) -> bytes:
    response = await client.get(path, headers=headers or {})
    data = await response.get_data()
    assert response.status_code == 200, data
    assert isinstance(data, bytes)
    assert response.content_type == "application/octet-stream"
    return data


# ---------------------------------------------------------------- key and checkpoint


class TestKey:
    async def test_is_the_verifier_key_and_one_newline(self, client: Client, vault: Vault) -> None:
        """``/key`` answers the log's verifier key string and a LF, with no identity sent."""
        response = await client.get(KEY)
        assert response.status_code == 200
        assert response.content_type == TEXT_PLAIN
        text = await response.get_data(as_text=True)
        assert text == vault.log.verifier.format() + "\n"
        assert Verifier.parse(text.removesuffix("\n")).name == vault.log.origin


class TestCheckpoint:
    async def test_empty_tree_is_not_found(self, client: Client) -> None:
        """Before anything is signed the checkpoint is a 404 ``NOT_FOUND`` problem."""
        await problem(await client.get(CHECKPOINT), 404, "NOT_FOUND")

    async def test_is_the_signed_note_verbatim(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """The checkpoint is the signed note as stored, it verifies with the key, no identity."""
        await upload_many(client, admin, 2)
        signed = await publish(vault)
        response = await client.get(CHECKPOINT)
        assert response.status_code == 200
        assert response.content_type == TEXT_PLAIN
        text = await response.get_data(as_text=True)
        assert text == signed.note
        assert text.endswith("\n")
        assert response.headers["Cache-Control"] == "no-cache"  # it moves on
        opened = open_checkpoint(text, await verifier(client))
        assert opened == Checkpoint(vault.log.origin, 2, signed.root_hash)

    async def test_is_the_latest(self, client: Client, vault: Vault, admin: dict[str, str]) -> None:
        """A later checkpoint replaces the earlier one."""
        await upload_many(client, admin, 1)
        await publish(vault)
        await upload_many(client, admin, 1)
        await publish(vault)
        text = await (await client.get(CHECKPOINT)).get_data(as_text=True)
        assert open_checkpoint(text, await verifier(client)).size == 2


# ---------------------------------------------------------------- receipts


class TestReceipt:
    async def test_pending_before_any_checkpoint(
        self, client: Client, admin: dict[str, str]
    ) -> None:
        """Asked at once after the upload, the receipt is 202 with ``Retry-After``."""
        (doc_id,) = await upload_many(client, admin, 1)
        response = await client.get(receipt_path(doc_id), headers=admin)
        assert response.status_code == 202, await response.get_data(as_text=True)
        assert response.headers["Retry-After"] == str(INTERVAL)
        assert await response.get_json() == {
            "document_id": doc_id, "status": "pending", "retry_after": INTERVAL,
        }

    async def test_pending_until_a_checkpoint_covers_it(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """A document uploaded after the latest checkpoint is pending until the next one."""
        await upload_many(client, admin, 1)
        await publish(vault)
        (doc_id,) = await upload_many(client, admin, 1)
        response = await client.get(receipt_path(doc_id), headers=admin)
        assert response.status_code == 202
        await publish(vault)
        response = await client.get(receipt_path(doc_id), headers=admin)
        assert response.status_code == 200, await response.get_data(as_text=True)

    async def test_proves_inclusion_under_the_checkpoint(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """The receipt's proof puts ``leaf_hash(leaf)`` under the signed checkpoint's root."""
        ids = await upload_many(client, admin, 5)
        await publish(vault)
        key = await verifier(client)
        for doc_id in ids:
            response = await client.get(receipt_path(doc_id), headers=admin)
            assert response.status_code == 200, await response.get_data(as_text=True)
            assert response.content_type == "application/json"
            body: dict[str, Any] = await response.get_json()
            assert set(body) == {
                "document_id", "leaf", "leaf_index", "tree_size", "inclusion_proof",
                "checkpoint", "tlog_proof", "anchors",
            }
            assert body["anchors"] == []  # nothing configured to anchor with
            assert body["document_id"] == doc_id
            assert body["leaf"].startswith("document-vault/leaf/v1\nkind registered\n")
            assert f"document {doc_id}\n" in body["leaf"]
            checkpoint = open_checkpoint(body["checkpoint"], key)
            assert checkpoint.size == body["tree_size"] == 5
            leaf = body["leaf"].encode()
            proof = decode_hashes(body["inclusion_proof"])
            verify_inclusion(
                leaf_hash(leaf), body["leaf_index"], body["tree_size"], proof,
                checkpoint.root_hash,
            )
            tlog = TlogProof.parse(body["tlog_proof"])
            assert tlog == TlogProof(
                extra=leaf, index=body["leaf_index"], hashes=tuple(proof),
                checkpoint=body["checkpoint"],
            )
            assert tlog.open(key) == checkpoint
        assert sorted(
            [(await (await client.get(receipt_path(d), headers=admin)).get_json())["leaf_index"]
             for d in ids]
        ) == list(range(5))

    async def test_against_an_earlier_checkpoint(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """``size=N`` proves against the checkpoint of that size; the default is the latest."""
        (first,) = await upload_many(client, admin, 1)
        earlier = await publish(vault)
        (second,) = await upload_many(client, admin, 1)
        latest = await publish(vault)
        key = await verifier(client)

        response = await client.get(
            receipt_path(first), query_string={"size": str(earlier.size)}, headers=admin
        )
        body = await response.get_json()
        assert response.status_code == 200, body
        assert body["tree_size"] == earlier.size
        assert body["checkpoint"] == earlier.note
        verify_inclusion(
            leaf_hash(body["leaf"].encode()), body["leaf_index"], earlier.size,
            decode_hashes(body["inclusion_proof"]), open_checkpoint(earlier.note, key).root_hash,
        )
        assert TlogProof.parse(body["tlog_proof"]).checkpoint == earlier.note

        default = await (await client.get(receipt_path(first), headers=admin)).get_json()
        assert default["tree_size"] == latest.size
        assert default["checkpoint"] == latest.note

        # The second document's leaf is not in the earlier tree; no checkpoint has size 99.
        for doc_id, size in ((second, earlier.size), (first, 99), (first, 2**64), (first, 10**30)):
            response = await client.get(
                receipt_path(doc_id), query_string={"size": str(size)}, headers=admin
            )
            body = await problem(response, 422, "VALIDATION_ERROR")
            assert body["errors"][0]["loc"] == ["query", "size"]

    @pytest.mark.parametrize("size", ["0", "-1", "x", "1.5"])
    async def test_malformed_size(
        self, client: Client, vault: Vault, admin: dict[str, str], size: str
    ) -> None:
        """A size that is not a positive integer is a 422 naming ``size``."""
        (doc_id,) = await upload_many(client, admin, 1)
        await publish(vault)
        response = await client.get(receipt_path(doc_id), query_string={"size": size},
                                    headers=admin)
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert body["errors"][0]["loc"] == ["query", "size"]

    async def test_without_identity(self, client: Client, vault: Vault,
                                    admin: dict[str, str]) -> None:
        """A receipt names a document: no identity is a 401."""
        (doc_id,) = await upload_many(client, admin, 1)
        await publish(vault)
        await problem(await client.get(receipt_path(doc_id)), 401, "UNAUTHENTICATED")

    async def test_identity_before_shape(self, client: Client) -> None:
        """With no identity even a malformed document id is a 401, not a 422."""
        await problem(await client.get(receipt_path("not-a-uuid")), 401, "UNAUTHENTICATED")

    async def test_without_download_permission(
        self, client: Client, vault: Vault, admin: dict[str, str], authorizer: DenyDownloads
    ) -> None:
        """An actor who may not download the document gets 403, not the receipt."""
        (doc_id,) = await upload_many(client, admin, 1)
        await publish(vault)
        auditor = uuid4()
        authorizer.denied.add(auditor)
        response = await client.get(
            receipt_path(doc_id), headers=actor_headers(Role.AUDITOR, auditor)
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
        allowed = await client.get(receipt_path(doc_id), headers=actor_headers(Role.INVESTOR))
        assert allowed.status_code == 200

    async def test_requestor_id_naming_someone_else(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """``requestor_id`` must be the actor, as for a download."""
        (doc_id,) = await upload_many(client, admin, 1)
        await publish(vault)
        response = await client.get(
            receipt_path(doc_id), query_string={"requestor_id": str(uuid4())}, headers=admin
        )
        await problem(response, 403, "UNAUTHORIZED_ACCESS")
        response = await client.get(
            receipt_path(doc_id), query_string={"requestor_id": admin["X-Actor-Id"]},
            headers=admin,
        )
        assert response.status_code == 200

    async def test_requestor_id_identifies(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """With header identity ``requestor_id`` names the actor when ``X-Actor-Id`` is absent."""
        (doc_id,) = await upload_many(client, admin, 1)
        await publish(vault)
        response = await client.get(
            receipt_path(doc_id), query_string={"requestor_id": str(uuid4())},
            headers={"X-Actor-Role": "auditor"},
        )
        assert response.status_code == 200, await response.get_data(as_text=True)

    async def test_unknown_document(self, client: Client, admin: dict[str, str]) -> None:
        """An id no document has is a 404 ``DOCUMENT_NOT_FOUND``."""
        response = await client.get(receipt_path(uuid4()), headers=admin)
        await problem(response, 404, "DOCUMENT_NOT_FOUND")

    async def test_malformed_document_id(self, client: Client, admin: dict[str, str]) -> None:
        """A document id that is not a UUID is a 422 naming it."""
        body = await problem(
            await client.get(receipt_path("nope"), headers=admin), 422, "VALIDATION_ERROR"
        )
        assert body["errors"][0]["loc"] == ["path", "document_id"]


# ---------------------------------------------------------------- tiles and bundles


class TestTiles:
    async def test_partial_level_zero_tile_holds_the_leaf_hashes(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """Tile ``0/000.p/W``: hash ``i`` is ``leaf_hash`` of bundle leaf ``i``; no identity."""
        await upload_many(client, admin, 3)
        signed = await publish(vault)
        hashes = decode_tile(await body_bytes(client, tile_path("0/000.p/3")), 3)
        leaves = decode_bundle(
            await body_bytes(client, tile_path("entries/000.p/3"), admin), 3
        )
        assert hashes == [leaf_hash(leaf) for leaf in leaves]
        assert all(leaf.startswith(b"document-vault/leaf/v1\n") for leaf in leaves)
        # The three leaf hashes make the checkpoint's root (RFC 6962: 2 + 1).
        assert node_hash(node_hash(hashes[0], hashes[1]), hashes[2]) == signed.root_hash
        # A narrower partial tile is the first W hashes of the same tile.
        assert await body_bytes(client, tile_path("0/000.p/2")) == b"".join(hashes[:2])
        # A tile path names fixed bytes: caches may keep it; a bundle only privately.
        tile = await client.get(tile_path("0/000.p/3"))
        assert tile.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        bundle = await client.get(tile_path("entries/000.p/3"), headers=admin)
        assert bundle.headers["Cache-Control"] == "private, max-age=31536000, immutable"
        assert decode_bundle(
            await body_bytes(client, tile_path("entries/000.p/1"), admin)
        ) == leaves[:1]

    @pytest.mark.parametrize(
        "path", ["0/000", "0/000.p/4", "0/001.p/1", "1/000.p/1", "0/x001/000"]
    )
    async def test_beyond_the_tree_is_not_found(
        self, client: Client, vault: Vault, admin: dict[str, str], path: str
    ) -> None:
        """A tile the tree of 3 leaves does not have is a 404 ``NOT_FOUND`` problem."""
        await upload_many(client, admin, 3)
        await publish(vault)
        await problem(await client.get(tile_path(path)), 404, "NOT_FOUND")

    async def test_empty_tree_has_no_tiles(self, client: Client) -> None:
        await problem(await client.get(tile_path("0/000.p/1")), 404, "NOT_FOUND")

    @pytest.mark.parametrize(
        "path", ["0/x789/x911/x044/x687/x760/460", "2/x000/x001/x000/000", "63/001", "7/001"]
    )
    async def test_past_any_tree_is_not_found(self, client: Client, path: str) -> None:
        """Coordinates no BIGINT-sized tree reaches are a 404, never a driver's error."""
        await problem(await client.get(tile_path(path)), 404, "NOT_FOUND")

    @pytest.mark.parametrize("path", [
        "0/0", "0/00", "0/0000", "00/000", "01/000", "64/000", "x/000", "0/x000/001",
        "0/000.p/0", "0/000.p/256", "0/000.p/01", "0/000.p", "0/000.p/", "0/000/", "0",
        "0/001.p/x", "0/-01", "entries", "a/b/c",
    ])
    async def test_non_canonical_path_is_not_found(self, client: Client, path: str) -> None:
        """A path that is not the canonical form of one tile names nothing: 404, not 422."""
        response = await client.get(tile_path(path))
        assert response.status_code == 404, await response.get_data(as_text=True)
        assert response.mimetype == PROBLEM_JSON
        assert (await response.get_json())["error_code"] == "NOT_FOUND"

    async def test_full_tiles_and_the_level_above(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """With 257 leaves tile ``0/000`` is full (256 hashes), ``0/001.p/1`` holds the last
        leaf, ``1/000.p/1`` holds the root of the full tile, and they make the checkpoint."""
        await upload_many(client, admin, 257)
        signed = await publish(vault)
        assert signed.size == 257
        full = decode_tile(await body_bytes(client, tile_path("0/000")), 256)
        (last,) = decode_tile(await body_bytes(client, tile_path("0/001.p/1")), 1)
        (above,) = decode_tile(await body_bytes(client, tile_path("1/000.p/1")), 1)
        leaves = decode_bundle(await body_bytes(client, tile_path("entries/000"), admin), 256)
        (leaf_256,) = decode_bundle(
            await body_bytes(client, tile_path("entries/001.p/1"), admin), 1
        )
        assert full == [leaf_hash(leaf) for leaf in leaves]
        assert last == leaf_hash(leaf_256)
        level = full
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        assert above == level[0]
        assert node_hash(above, last) == signed.root_hash
        # A partial path of a tile that has since filled up is still served, as its prefix.
        assert await body_bytes(client, tile_path("0/000.p/255")) == b"".join(full[:255])
        await problem(await client.get(tile_path("1/000")), 404, "NOT_FOUND")
        await problem(
            await client.get(tile_path("entries/001"), headers=admin), 404, "NOT_FOUND"
        )


class TestBundles:
    async def test_needs_an_identity(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """Leaves name documents: a bundle without identity is a 401, with any role a 200."""
        await upload_many(client, admin, 1)
        await publish(vault)
        await problem(await client.get(tile_path("entries/000.p/1")), 401, "UNAUTHENTICATED")
        for role in Role:
            await body_bytes(client, tile_path("entries/000.p/1"), actor_headers(role))

    async def test_identity_before_the_path(self, client: Client) -> None:
        """Without identity even a path that names nothing is a 401."""
        await problem(await client.get(tile_path("entries/0")), 401, "UNAUTHENTICATED")

    @pytest.mark.parametrize("path", ["0", "000.p/0", "x000/001", "000.p/256", "000/"])
    async def test_non_canonical_path_is_not_found(
        self, client: Client, admin: dict[str, str], path: str
    ) -> None:
        await problem(
            await client.get(tile_path(f"entries/{path}"), headers=admin), 404, "NOT_FOUND"
        )

    async def test_beyond_the_tree_is_not_found(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        await upload_many(client, admin, 2)
        await publish(vault)
        # The last two are past any tree a database can hold (the fuzzer's find: the
        # driver refused the integer, a 500); they are 404s without asking the store.
        for path in ("000", "000.p/3", "001.p/1", "x789/x911/x044/x687/x760/460",
                     "x036/x028/x797/x018/x963/967.p/255"):
            await problem(
                await client.get(tile_path(f"entries/{path}"), headers=admin), 404, "NOT_FOUND"
            )


# ---------------------------------------------------------------- consistency


class TestConsistency:
    async def test_proves_the_later_tree_extends_the_earlier(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        """The proof between two checkpoints verifies against their signed roots."""
        await upload_many(client, admin, 3)
        earlier = await publish(vault)
        await upload_many(client, admin, 4)
        latest = await publish(vault)
        key = await verifier(client)
        root1 = open_checkpoint(earlier.note, key).root_hash
        root2 = open_checkpoint(latest.note, key).root_hash
        response = await client.get(CONSISTENCY, query_string={"from": "3", "to": "7"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        body = await response.get_json()
        assert body["from"] == 3 and body["to"] == 7
        verify_consistency(3, 7, decode_hashes(body["hashes"]), root1, root2)
        # ``to`` defaults to the latest checkpoint's size.
        assert await (
            await client.get(CONSISTENCY, query_string={"from": "3"})
        ).get_json() == body

    async def test_equal_sizes_is_an_empty_proof(
        self, client: Client, vault: Vault, admin: dict[str, str]
    ) -> None:
        await upload_many(client, admin, 2)
        await publish(vault)
        response = await client.get(CONSISTENCY, query_string={"from": "2", "to": "2"})
        assert await response.get_json() == {"from": 2, "to": 2, "hashes": []}

    @pytest.mark.parametrize("query", [
        {"from": "0"}, {"from": "0", "to": "2"}, {"from": "3", "to": "2"}, {"from": "1", "to": "4"},
        {"from": "4"}, {"from": "-1"}, {"from": "x"}, {"from": "1", "to": "y"}, {"from": "1.0"},
        {}, {"to": "2"}, {"from": "9" * 40},
    ])
    async def test_bad_range_is_a_validation_error(
        self, client: Client, vault: Vault, admin: dict[str, str], query: dict[str, str]
    ) -> None:
        """422 unless 1 <= from <= to <= the latest checkpoint's size (3 here)."""
        await upload_many(client, admin, 3)
        await publish(vault)
        response = await client.get(CONSISTENCY, query_string=query)
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert body["errors"][0]["loc"][0] == "query"

    async def test_empty_tree(self, client: Client) -> None:
        """With no checkpoint no range is valid."""
        response = await client.get(CONSISTENCY, query_string={"from": "1"})
        await problem(response, 422, "VALIDATION_ERROR")
