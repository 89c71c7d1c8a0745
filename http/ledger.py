"""The verifiable ledger's routes: ``/api/v1/ledger/...`` and a document's receipt.

The log is served as C2SP tlog-tiles plus two JSON proofs:

- ``GET /ledger/checkpoint``: the latest signed checkpoint note, verbatim
  (404 ``NOT_FOUND`` while the tree is empty);
- ``GET /ledger/key``: the verifier key string the checkpoints are signed with;
- ``GET /ledger/tile/<L>/<N>[.p/<W>]``: a hash tile;
- ``GET /ledger/tile/entries/<N>[.p/<W>]``: an entry bundle (the leaves);
- ``GET /ledger/consistency?from=M&to=N``: a consistency proof between two
  checkpoints' trees;
- ``GET /documents/<id>/receipt``: a document's ``registered`` leaf with its
  inclusion proof under a signed checkpoint, also as a C2SP tlog-proof.

Checkpoint, key, hash tiles and consistency proofs carry hashes only and
need no identity: no identity header is read. Entry bundles and receipts
reveal document ids: a bundle needs an authenticated actor (any role), a
receipt download permission on its document.

Order of checks, as in ``http/documents.py``: identity (401), request shape
(422), the thing exists (404), permission (403). A tile path that is not
the canonical form of one tile (``vault.domain.tiles.parse_path``) names no
resource, so it is a 404, not a 422; so is a tile or bundle beyond the tree.
Everything is read through ``actors.log_reads``; nothing here changes the log.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from quart import Blueprint, Response, request

from actors.log_reads import Receipt, ReceiptAnchor, ReceiptPending
from vault.domain.errors import InvalidRequest, LedgerNotFound
from vault.domain.models import Action
from vault.domain.publication import AnchorKind
from vault.domain.tiles import ENTRIES_PREFIX, TILE_PREFIX, BundleId, TileId, parse_path

from .responses import json_response
from .state import authorize, identify, parse_integer, parse_uuid, state

ledger_api = Blueprint("ledger", __name__, url_prefix="/api/v1")

TEXT_PLAIN = "text/plain; charset=utf-8"
OCTET_STREAM = "application/octet-stream"
# A tile or bundle path names fixed bytes (a partial one is a prefix of the
# fuller tile, which only grows), so caches may keep them; the checkpoint
# moves on and is always revalidated.
IMMUTABLE = "max-age=31536000, immutable"


def _b64(hashes: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(value).decode("ascii") for value in hashes]


def _query_integer(name: str, *, required: bool) -> int | None:
    """Query parameter ``name`` as a decimal integer; 422 naming it otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidRequest.field("query", name, "field required")
        return None
    try:
        return parse_integer(raw)
    except ValueError:
        raise InvalidRequest.field("query", name, "must be an integer") from None


def _parsed(path: str) -> TileId | BundleId:
    """What a ``tile/...`` path names; 404 when it is not the canonical path of one."""
    try:
        return parse_path(path)
    except ValueError as exc:  # TilePathError, or coordinates out of range
        raise LedgerNotFound(f"{path!r} names no tile: {exc}") from None


# ---------------------------------------------------------------- no identity


@ledger_api.get("/ledger/checkpoint")
async def checkpoint() -> Response:
    latest = await state().vault.log_reads.checkpoint()
    if latest is None:
        if state().vault.log_reads.witnessed:
            raise LedgerNotFound("No checkpoint is published yet: none has its witness quorum")
        raise LedgerNotFound("No checkpoint is signed yet: the log is empty")
    return Response(latest.note, content_type=TEXT_PLAIN, headers={"Cache-Control": "no-cache"})


@ledger_api.get("/ledger/key")
async def key() -> Response:
    return Response(state().vault.log.verifier.format() + "\n", content_type=TEXT_PLAIN)


@ledger_api.get("/ledger/tile/<path:tile_path>")
async def tile(tile_path: str) -> Response:
    named = _parsed(TILE_PREFIX + tile_path)
    if not isinstance(named, TileId):
        # ``tile/entries/...`` is the bundle route's; only a path it cannot take gets here.
        raise LedgerNotFound(f"{tile_path!r} names no hash tile")
    data = await state().vault.log_reads.tile(named.level, named.index, named.width)
    return Response(
        data, content_type=OCTET_STREAM, headers={"Cache-Control": f"public, {IMMUTABLE}"}
    )


@ledger_api.get("/ledger/consistency")
async def consistency() -> Response:
    size1 = _query_integer("from", required=True)
    size2 = _query_integer("to", required=False)
    assert size1 is not None
    proof = await state().vault.log_reads.consistency(size1, size2)
    return json_response({"from": proof.size1, "to": proof.size2, "hashes": _b64(proof.hashes)})


# ---------------------------------------------------------------- identity required


@ledger_api.get("/ledger/tile/entries/<path:bundle_path>")
async def bundle(bundle_path: str) -> Response:
    identify(None)
    named = _parsed(ENTRIES_PREFIX + bundle_path)
    assert isinstance(named, BundleId)  # the entries prefix always parses to a bundle
    data = await state().vault.log_reads.bundle(named.index, named.width)
    # Behind identity: a shared cache must not hand it to someone else.
    return Response(
        data, content_type=OCTET_STREAM, headers={"Cache-Control": f"private, {IMMUTABLE}"}
    )


@ledger_api.get("/documents/<document_id>/receipt")
async def receipt(document_id: str) -> Response:
    actor_raw = request.args.get("requestor_id")
    actor = identify(actor_raw)
    doc_id = parse_uuid(document_id, "path", "document_id")
    named = parse_uuid(actor_raw, "query", "requestor_id", required=False)
    size = _query_integer("size", required=False)
    if size is not None and size < 1:
        raise InvalidRequest.field("query", "size", "must be at least 1")
    assert doc_id is not None
    st = state()
    doc = await st.vault.reads.document(doc_id)
    await authorize(actor, Action.DOWNLOAD, doc, "requestor_id", named)
    found = await st.vault.log_reads.receipt(doc.id, size)
    if isinstance(found, ReceiptPending):
        response = json_response(
            {"document_id": str(doc.id), "status": "pending", "retry_after": found.retry_after},
            202,
        )
        response.headers["Retry-After"] = str(found.retry_after)
        return response
    return json_response(receipt_json(found))


def receipt_json(found: Receipt) -> dict[str, object]:
    return {
        "document_id": str(found.document_id),
        "leaf": found.leaf.decode("utf-8"),
        "leaf_index": found.leaf_index,
        "tree_size": found.tree_size,
        "inclusion_proof": _b64(found.inclusion_proof),
        "checkpoint": found.checkpoint,
        "tlog_proof": found.tlog_proof(),
        "anchors": [_anchor_json(item) for item in found.anchors],
    }


def _anchor_json(item: ReceiptAnchor) -> dict[str, object]:
    anchor, proof = item.anchor, item.consistency
    out: dict[str, object] = {
        "type": anchor.kind.value,
        "checkpoint": anchor.note,
        "consistency": {"from": proof.size1, "to": proof.size2, "hashes": _b64(proof.hashes)},
    }
    if anchor.kind is AnchorKind.RFC3161:
        assert anchor.token is not None
        out["token"] = base64.b64encode(anchor.token).decode("ascii")
    else:
        out.update(chain_id=anchor.chain_id, tx_hash=anchor.tx_hash,
                   block_number=anchor.block_number)
    return out
