"""``GET /api/v1/documents/{entity_id}``: order, filters and cursor pagination."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from quart.typing import TestClientProtocol as Client

from tests.http.helpers import DOCUMENT_FIELDS, archive_path, list_path, problem, uploaded
from tests.support import actor_headers
from vault.domain.models import Role

READER = actor_headers(Role.INVESTOR)


async def _page(client: Client, entity: UUID, **query: str) -> dict[str, Any]:
    response = await client.get(list_path(entity), headers=READER, query_string=query)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page: dict[str, Any] = await response.get_json()
    return page


async def _ids(client: Client, entity: UUID, **query: str) -> list[str]:
    return [doc["id"] for doc in (await _page(client, entity, **query))["documents"]]


class TestListing:
    async def test_answers_exactly_documents_and_next_cursor(self, client: Client) -> None:
        """The answer holds ``documents`` (each a full Document) and ``next_cursor``, no more."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity)
        page = await _page(client, entity)
        assert page.keys() == {"documents", "next_cursor"}
        assert page["next_cursor"] is None
        assert page["documents"] == [doc]
        assert page["documents"][0].keys() == DOCUMENT_FIELDS

    async def test_newest_first(self, client: Client) -> None:
        """Documents come newest first."""
        entity = uuid4()
        ids = [(await uploaded(client, entity_id=entity))["id"] for _ in range(3)]
        assert await _ids(client, entity) == ids[::-1]

    async def test_only_the_entitys_documents(self, client: Client) -> None:
        """Another entity's documents are not listed."""
        entity = uuid4()
        mine = await uploaded(client, entity_id=entity)
        await uploaded(client)
        assert await _ids(client, entity) == [mine["id"]]

    async def test_unknown_entity_is_an_empty_list(self, client: Client) -> None:
        """An entity with no documents answers 200 with an empty list."""
        page = await _page(client, uuid4())
        assert page == {"documents": [], "next_cursor": None}

    async def test_entity_type_filter(self, client: Client) -> None:
        """``entity_type`` keeps only documents filed under that type."""
        entity = uuid4()
        deal = await uploaded(client, entity_id=entity, entity_type="deal")
        await uploaded(client, entity_id=entity, entity_type="issuer")
        assert await _ids(client, entity, entity_type="deal") == [deal["id"]]

    async def test_archived_documents_are_hidden_by_default(self, client: Client) -> None:
        """An archived document is left out unless ``include_archived`` is true."""
        entity = uuid4()
        kept = await uploaded(client, entity_id=entity)
        gone = await uploaded(client, entity_id=entity)
        response = await client.delete(archive_path(gone["id"]), headers=actor_headers(Role.ADMIN))
        assert response.status_code == 200
        assert await _ids(client, entity) == [kept["id"]]
        assert await _ids(client, entity, include_archived="false") == [kept["id"]]

    async def test_include_archived_lists_them(self, client: Client) -> None:
        """``include_archived=true`` lists archived documents with their archived status."""
        entity = uuid4()
        kept = await uploaded(client, entity_id=entity)
        gone = await uploaded(client, entity_id=entity)
        response = await client.delete(archive_path(gone["id"]), headers=actor_headers(Role.ADMIN))
        assert response.status_code == 200
        page = await _page(client, entity, include_archived="true")
        assert [doc["id"] for doc in page["documents"]] == [gone["id"], kept["id"]]
        assert page["documents"][0]["status"] == "archived"

    @pytest.mark.parametrize("role", list(Role))
    async def test_every_role_may_list(self, client: Client, role: Role) -> None:
        """Listing is open to all five roles."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity)
        response = await client.get(list_path(entity), headers=actor_headers(role))
        assert response.status_code == 200
        assert [d["id"] for d in (await response.get_json())["documents"]] == [doc["id"]]

    async def test_no_identity_is_401(self, client: Client) -> None:
        """Listing without an identity answers 401."""
        response = await client.get(list_path(uuid4()))
        await problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["WWW-Authenticate"] == "Bearer"


class TestQuery:
    @pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
    async def test_limit_out_of_bounds_is_422(self, client: Client, limit: str) -> None:
        """``limit`` outside 1 to 1000, or not an integer, answers 422 naming it."""
        response = await client.get(
            list_path(uuid4()), headers=READER, query_string={"limit": limit}
        )
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert body["errors"][0]["loc"] == ["query", "limit"]

    @pytest.mark.parametrize("limit", ["1", "1000"])
    async def test_limit_bounds_are_inclusive(self, client: Client, limit: str) -> None:
        """``limit`` of 1 and of 1000 are accepted."""
        entity = uuid4()
        doc = await uploaded(client, entity_id=entity)
        assert await _ids(client, entity, limit=limit) == [doc["id"]]

    async def test_limit_caps_the_page(self, client: Client) -> None:
        """A page holds at most ``limit`` documents, the newest ones."""
        entity = uuid4()
        ids = [(await uploaded(client, entity_id=entity))["id"] for _ in range(3)]
        assert await _ids(client, entity, limit="2") == ids[:0:-1]

    async def test_unknown_entity_type_is_422(self, client: Client) -> None:
        """An ``entity_type`` outside the enum answers 422."""
        response = await client.get(
            list_path(uuid4()), headers=READER, query_string={"entity_type": "planet"}
        )
        await problem(response, 422, "VALIDATION_ERROR")

    async def test_malformed_entity_id_is_422(self, client: Client) -> None:
        """An entity id that is not a UUID answers 422."""
        response = await client.get(list_path("not-a-uuid"), headers=READER)
        await problem(response, 422, "VALIDATION_ERROR")

    @pytest.mark.parametrize("cursor", ["%%%", "bm90LWpzb24", "WzEsIDJd", "WyJ4IiwgInkiXQ"])
    async def test_malformed_cursor_is_422(self, client: Client, cursor: str) -> None:
        """A cursor that is not one this service issued answers 422 naming it."""
        response = await client.get(
            list_path(uuid4()), headers=READER, query_string={"cursor": cursor}
        )
        body = await problem(response, 422, "VALIDATION_ERROR")
        assert body["errors"][0]["loc"] == ["query", "cursor"]


class TestPagination:
    async def test_cursor_walks_every_document_once(self, client: Client) -> None:
        """Following ``next_cursor`` over 7 documents by 3 visits each once, newest first."""
        entity = uuid4()
        uploaded_ids = [(await uploaded(client, entity_id=entity))["id"] for _ in range(7)]
        pages: list[list[str]] = []
        query = {"limit": "3"}
        while True:
            page = await _page(client, entity, **query)
            pages.append([doc["id"] for doc in page["documents"]])
            if page["next_cursor"] is None:
                break
            assert len(pages) < 5, "pagination does not end"
            query = {"limit": "3", "cursor": page["next_cursor"]}
        assert [len(ids) for ids in pages] == [3, 3, 1]
        assert [doc_id for ids in pages for doc_id in ids] == uploaded_ids[::-1]

    async def test_exact_multiple_ends_without_an_empty_page(self, client: Client) -> None:
        """When the last page is full, its ``next_cursor`` is already null."""
        entity = uuid4()
        for _ in range(2):
            await uploaded(client, entity_id=entity)
        page = await _page(client, entity, limit="2")
        assert len(page["documents"]) == 2
        assert page["next_cursor"] is None

    async def test_cursor_keeps_the_filters(self, client: Client) -> None:
        """A cursor page still honours ``entity_type``."""
        entity = uuid4()
        deals = [(await uploaded(client, entity_id=entity, entity_type="deal"))["id"]
                 for _ in range(3)]
        await uploaded(client, entity_id=entity, entity_type="issuer")
        first = await _page(client, entity, entity_type="deal", limit="2")
        second = await _page(
            client, entity, entity_type="deal", limit="2", cursor=first["next_cursor"]
        )
        assert [d["id"] for d in first["documents"] + second["documents"]] == deals[::-1]
        assert second["next_cursor"] is None
