"""What the HTTP layer holds: the running vault, identity, authorization, metrics."""

from __future__ import annotations

import re
from collections.abc import Mapping
from uuid import UUID

import attrs
import trio
from quart import current_app, g, request

from actors.access import Authorizer
from actors.system import Vault
from vault.adapters.blobs.signing import UrlSigner
from vault.config import Settings
from vault.domain.errors import InvalidRequest
from vault.domain.models import Action, Actor, Document
from vault.domain.permissions import check_actor_field

from .identity import IdentityProvider
from .metrics import Metrics

ASK_DEADLINE_SECONDS = 10.0
"""How long a request waits for room in an actor's mailbox before 503 SERVICE_BUSY."""


@attrs.define
class AppState:
    vault: Vault
    identity: IdentityProvider
    authorizer: Authorizer
    metrics: Metrics
    signer: UrlSigner | None
    ask_deadline: float = ASK_DEADLINE_SECONDS

    @property
    def settings(self) -> Settings:
        return self.vault.backends.settings

    def deadline(self) -> float:
        return trio.current_time() + self.ask_deadline


def state() -> AppState:
    value: AppState = current_app.extensions["vault"]
    return value


def correlation_id() -> str | None:
    value: str | None = g.get("request_id")
    return value


def parse_uuid(raw: str | None, location: str, name: str, *, required: bool = True) -> UUID | None:
    if raw is None or raw == "":
        if required:
            raise InvalidRequest.field(location, name, "field required")
        return None
    try:
        value = UUID(raw)
    except ValueError:
        raise InvalidRequest.field(location, name, "not a valid UUID") from None
    return value


_INTEGER = re.compile(r"[+-]?[0-9]+")
INTEGER_DIGITS = 18
"""Digits an integer parameter is converted with: far past every bound a route has."""


def parse_integer(raw: str) -> int:
    """A decimal integer in ASCII digits with an optional sign, or ``ValueError``.

    Any length is taken, but one of more than ``INTEGER_DIGITS`` digits is
    clamped to ``±10**INTEGER_DIGITS`` instead of being converted: thousands
    of digits cost nothing, and read as out of range wherever a bound applies.
    """
    if not _INTEGER.fullmatch(raw):
        raise ValueError("not a decimal integer")
    if len(raw.lstrip("+-").lstrip("0")) > INTEGER_DIGITS:
        clamped: int = 10**INTEGER_DIGITS
        return -clamped if raw.startswith("-") else clamped
    return int(raw)


def identify(actor_field: str | None) -> Actor:
    headers: Mapping[str, str] = request.headers  # type: ignore[assignment]  # a str multidict
    return state().identity.identify(headers, actor_field)


async def authorize(actor: Actor, action: Action, doc_or_entity: Document | UUID,
                    field_name: str | None = None, named: UUID | None = None) -> None:
    """403 when the seed actor field names someone else, or the actor may not act."""
    if field_name is not None:
        check_actor_field(actor, field_name, named)
    entity_id = doc_or_entity.entity_id if isinstance(doc_or_entity, Document) else doc_or_entity
    await state().authorizer.authorize(actor, action, entity_id)
