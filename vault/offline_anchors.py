"""A receipt's witness cosignatures and anchors, checked offline by ``vault receipt verify``.

The receipt route's JSON may carry ``anchors``, one per anchored checkpoint
at or after the leaf: ``{"type": "rfc3161", "checkpoint", "consistency",
"token"}`` or ``{"type": "evm", "checkpoint", "consistency", "chain_id",
"tx_hash", "block_number"}``. ``consistency`` is ``{"from", "to", "hashes"}``
between the receipt's checkpoint and the anchored one, from the smaller size
to the larger (no hashes for equal sizes, whose roots must then be equal).
The anchored digest is SHA-256 of the ``checkpoint`` text's UTF-8 bytes.

Every anchor is checked: its checkpoint signed by the log's key (origin the
receipt's), its size above the leaf's index, its consistency proof. Its
authority is asked only on request: an rfc3161 token with ``--tsa-cert``
(``verify_token``, genTime reported), an evm transaction with ``--rpc``
(``vault.adapters.evm.check_anchor``, its block must be the anchor's).
Asking an authority the receipt has no anchor for fails; the success line
names the anchors whose authority was not asked. With ``--witness`` (and
``--quorum``, all of them by default) the checkpoint must carry valid
cosignatures by a quorum; a listed witness's bad line fails.

Exit codes are ``vault.offline``'s. Malformed ``anchors`` (not a list, an
unknown type, a missing, extra or ill-typed field, bad base64, a checkpoint
that is not a signed note) make the receipt **invalid** (1), the line naming
the anchor's index and field: the JSON was read, and a claim in it does not
hold, so the receipt is refused rather than reported as uncheckable. Bad
options (an unreadable ``--tsa-cert``, a bad ``--witness`` key, a
``--quorum`` out of range) and a chain that cannot be asked are **unusable** (2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from vault.domain.checkpoint import (
    Checkpoint,
    CheckpointError,
    OriginMismatch,
    decode_hash,
    open_checkpoint,
)
from vault.domain.cosignature import CosignatureError, CosignerVerifier, check_quorum
from vault.domain.merkle import ProofError, verify_consistency
from vault.domain.note import InvalidSignature, NoteError, UnverifiedNote, Verifier
from vault.domain.timestamp import InvalidTimestamp, load_certificates, verify_token
from vault.offline import ConsistencyProof, invalid, key_or_file, read_text, unusable

RFC3161 = "rfc3161"
EVM = "evm"
DEFAULT_CONFIRMATIONS = 1
_COMMON = ("type", "checkpoint", "consistency")
_FIELDS = {
    RFC3161: frozenset((*_COMMON, "token")),
    EVM: frozenset((*_COMMON, "chain_id", "tx_hash", "block_number")),
}
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


# ----------------------------------------------------------------- options


@attrs.frozen
class ReceiptOptions:
    """What ``vault receipt verify`` was asked to check beyond the log's signature."""

    tsa_certs: tuple[bytes, ...] = ()
    """PEM certificates (a root, and any intermediates) for rfc3161 tokens."""
    witnesses: tuple[CosignerVerifier, ...] = ()
    quorum: int = 0
    """How many of ``witnesses`` must have cosigned (all of them when not given)."""
    rpc: str | None = None
    """The EVM JSON-RPC URL to ask about evm anchors."""
    confirmations: int = DEFAULT_CONFIRMATIONS


def load_options(
    *,
    tsa_certs: Sequence[Path] = (),
    witnesses: Sequence[str] = (),
    quorum: int | None = None,
    rpc: str | None = None,
    confirmations: int | None = None,
) -> ReceiptOptions:
    """The command line's options, read and checked; ``CheckFailed`` (exit 2) if unusable."""
    pems = tuple(read_text(path, "TSA certificate").encode("utf-8") for path in tsa_certs)
    if pems:
        try:
            load_certificates(pems)
        except ValueError as exc:
            raise unusable(f"--tsa-cert: {exc}") from None
    keys = tuple(_witness_key(key) for key in witnesses)
    slots = {(key.name, key.key_id) for key in keys}
    if len(slots) != len(keys):
        raise unusable("--witness: the same witness key is given twice")
    if quorum is not None and not keys:
        raise unusable("--quorum needs at least one --witness")
    wanted = len(keys) if quorum is None else quorum
    if keys and not 1 <= wanted <= len(keys):
        raise unusable(f"--quorum {wanted} is not between 1 and {len(keys)} (the witnesses given)")
    if rpc is not None:
        parts = urlsplit(rpc)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise unusable(f"--rpc {rpc!r} is not an http(s) URL")
    elif confirmations is not None:
        raise unusable("--confirmations needs --rpc")
    if confirmations is not None and confirmations < 1:
        raise unusable(f"--confirmations {confirmations} is not a positive number")
    return ReceiptOptions(
        tsa_certs=pems, witnesses=keys, quorum=wanted if keys else 0, rpc=rpc,
        confirmations=DEFAULT_CONFIRMATIONS if confirmations is None else confirmations,
    )


def _witness_key(key: str) -> CosignerVerifier:
    """A cosigner verifier key string, or the name of a file holding one."""
    return key_or_file(key, CosignerVerifier.parse, "--witness", "a cosigner key")


# ----------------------------------------------------------------- anchors


@attrs.frozen
class TimestampAnchor:
    """An ``rfc3161`` anchor: a TSA's token over the anchored checkpoint's digest."""

    position: int
    checkpoint: str
    consistency: ConsistencyProof
    token: bytes = attrs.field(repr=False)


@attrs.frozen
class ChainAnchor:
    """An ``evm`` anchor: a transaction carrying the anchored checkpoint's digest."""

    position: int
    checkpoint: str
    consistency: ConsistencyProof
    chain_id: int
    tx_hash: str
    block_number: int


Anchor = TimestampAnchor | ChainAnchor


def parse_anchors(raw: object) -> tuple[Anchor, ...]:
    """The receipt's ``anchors`` read strictly; ``CheckFailed`` (exit 1) naming index and field."""
    if not isinstance(raw, list):
        raise invalid("receipt field 'anchors' is not a list")
    return tuple(_anchor(position, item) for position, item in enumerate(raw))


def _anchor(position: int, item: object) -> Anchor:
    what = f"anchors[{position}]"
    if not isinstance(item, dict):
        raise invalid(f"{what} is not a JSON object")
    kind = item.get("type")
    if not isinstance(kind, str):
        raise invalid(f"{what} has no string field 'type'")
    fields = _FIELDS.get(kind)
    if fields is None:
        raise invalid(f"{what} field 'type' is {kind!r}, not one of {RFC3161!r} or {EVM!r}")
    _exact_fields(item, fields, what)
    checkpoint = _typed(item, "checkpoint", str, what)
    consistency = _consistency(item["consistency"], f"{what} field 'consistency'")
    if kind == RFC3161:
        return TimestampAnchor(position, checkpoint, consistency, _base64(item, "token", what))
    tx_hash = _typed(item, "tx_hash", str, what)
    if not _TX_HASH.fullmatch(tx_hash):
        raise invalid(f"{what} field 'tx_hash' is not 0x and 64 hex digits")
    chain_id = _typed(item, "chain_id", int, what)
    block = _typed(item, "block_number", int, what)
    if chain_id < 1:
        raise invalid(f"{what} field 'chain_id' is not a positive integer")
    if block < 0:
        raise invalid(f"{what} field 'block_number' is negative")
    return ChainAnchor(position, checkpoint, consistency, chain_id, tx_hash, block)


def _exact_fields(item: dict[str, Any], fields: frozenset[str], what: str) -> None:
    missing = sorted(fields - item.keys())
    if missing:
        raise invalid(f"{what} has no field {missing[0]!r}")
    extra = sorted(item.keys() - fields)
    if extra:
        raise invalid(f"{what} has unknown field {extra[0]!r}")


def _typed(item: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = item[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        label = {int: "an integer", str: "a string"}.get(kind, f"a {kind.__name__}")
        raise invalid(f"{what} field {name!r} is not {label}")
    return value


def _base64(item: dict[str, Any], name: str, what: str) -> bytes:
    text = _typed(item, name, str, what)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise invalid(f"{what} field {name!r} is not base64") from None
    if not raw or base64.b64encode(raw).decode() != text:
        raise invalid(f"{what} field {name!r} is not canonical base64 of some bytes")
    return raw


def _consistency(raw: object, what: str) -> ConsistencyProof:
    if not isinstance(raw, dict):
        raise invalid(f"{what} is not a JSON object")
    _exact_fields(raw, frozenset(("from", "to", "hashes")), what)
    size1 = _typed(raw, "from", int, what)
    size2 = _typed(raw, "to", int, what)
    listed = _typed(raw, "hashes", list, what)
    hashes = []
    for position, item in enumerate(listed):
        value = decode_hash(item) if isinstance(item, str) else None
        if value is None:
            raise invalid(f"{what} hashes[{position}] is not base64 of 32 bytes")
        hashes.append(value)
    return ConsistencyProof(size1=size1, size2=size2, hashes=tuple(hashes))


# ------------------------------------------------------------------ checks


def anchored_digest(checkpoint_text: str) -> bytes:
    """SHA-256 of the anchored checkpoint text's UTF-8 bytes, exactly as given."""
    return hashlib.sha256(checkpoint_text.encode("utf-8")).digest()


def open_anchored(anchor: Anchor, verifier: Verifier) -> Checkpoint:
    """The anchor's checkpoint once signed by the log's key; ``CheckFailed`` (exit 1) if not."""
    what = f"anchors[{anchor.position}] checkpoint"
    try:
        return open_checkpoint(anchor.checkpoint, verifier)
    except InvalidSignature:
        raise invalid(f"{what} signature does not verify with the key") from None
    except UnverifiedNote:
        raise invalid(f"{what} has no signature by the key {verifier.name}") from None
    except OriginMismatch:
        raise invalid(f"{what} origin is not the key's name {verifier.name}") from None
    except (NoteError, CheckpointError) as exc:
        raise invalid(f"{what} is not a signed checkpoint: {exc}") from None


def check_history(anchor: Anchor, anchored: Checkpoint, receipt: Checkpoint, index: int) -> None:
    """The anchored checkpoint covers leaf ``index`` and is one history with the receipt's."""
    what = f"anchors[{anchor.position}]"
    if anchored.origin != receipt.origin:
        raise invalid(f"{what} checkpoint origin {anchored.origin!r} is not the receipt's")
    if anchored.size <= index:
        raise invalid(f"{what} checkpoint size {anchored.size} does not cover leaf {index}")
    old, new = sorted((receipt, anchored), key=lambda cp: cp.size)
    proof = anchor.consistency
    if (proof.size1, proof.size2) != (old.size, new.size):
        raise invalid(
            f"{what} consistency is from size {proof.size1} to {proof.size2},"
            f" not {old.size} to {new.size}"
        )
    try:
        verify_consistency(old.size, new.size, proof.hashes, old.root_hash, new.root_hash)
    except ProofError as exc:
        raise invalid(f"{what} consistency proof: {exc}") from None


def check_token(anchor: TimestampAnchor, certs: Sequence[bytes]) -> str:
    """The token's genTime (``…Z``) once it verifies over the digest through ``certs``."""
    try:
        when = verify_token(anchor.token, anchored_digest(anchor.checkpoint), certs)
    except InvalidTimestamp as exc:
        raise invalid(f"anchors[{anchor.position}] rfc3161 token: {exc}") from None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_chain(anchor: ChainAnchor, rpc: str, confirmations: int) -> None:
    """Ask the chain at ``rpc`` that the anchor's transaction carries its digest."""
    from vault.adapters.evm import AnchorCheckFailed, ChainUnavailable, check_anchor

    what = f"anchors[{anchor.position}] evm"
    try:
        found = check_anchor(
            rpc, anchor.tx_hash, anchored_digest(anchor.checkpoint),
            chain_id=anchor.chain_id, confirmations=confirmations,
        )
    except AnchorCheckFailed as exc:
        raise invalid(f"{what} tx {anchor.tx_hash}: {exc}") from None
    except ChainUnavailable as exc:
        raise unusable(f"{what}: {exc.detail}") from None
    if found.block_number != anchor.block_number:
        raise invalid(
            f"{what} tx {anchor.tx_hash} is in block {found.block_number},"
            f" not the receipt's {anchor.block_number}"
        )


def check_anchors(
    anchors: Sequence[Anchor], receipt: Checkpoint, index: int, verifier: Verifier,
    options: ReceiptOptions,
) -> str | None:
    """Check every anchor (authorities as ``options`` ask); the summary, or None for none."""
    if options.tsa_certs and not any(isinstance(a, TimestampAnchor) for a in anchors):
        raise invalid("no rfc3161 anchor to check (--tsa-cert given)")
    if options.rpc is not None and not any(isinstance(a, ChainAnchor) for a in anchors):
        raise invalid("no evm anchor to check (--rpc given)")
    said = []
    for anchor in anchors:
        check_history(anchor, open_anchored(anchor, verifier), receipt, index)
        if isinstance(anchor, TimestampAnchor):
            if options.tsa_certs:
                said.append(f"{RFC3161} at {check_token(anchor, options.tsa_certs)}")
            else:
                said.append(f"{RFC3161} (TSA not asked: no --tsa-cert)")
            continue
        label = f"{EVM} chain {anchor.chain_id} tx {anchor.tx_hash}"
        if options.rpc is None:
            said.append(f"{label} (chain not asked: no --rpc)")
        else:
            check_chain(anchor, options.rpc, options.confirmations)
            said.append(f"{label} in block {anchor.block_number}")
    if not said:
        return None
    return f"{len(said)} anchor{'' if len(said) == 1 else 's'}: " + "; ".join(said)


def check_cosignatures(note_text: str, options: ReceiptOptions) -> str | None:
    """The quorum of ``options.witnesses`` on the receipt's checkpoint; the summary, or None.

    Without witnesses nothing is checked or said: cosignature lines by keys
    nobody asked about are ignored, as signed-note requires.
    """
    if not options.witnesses:
        return None
    try:
        result = check_quorum(note_text, options.witnesses, options.quorum)
    except CosignatureError as exc:
        raise invalid(f"cosignature: {exc}") from None
    except (NoteError, ValueError) as exc:
        raise invalid(f"cosignature: the checkpoint cannot be read: {exc}") from None
    if not result.met:
        missing = ", ".join(f"{w.name}+{w.key_id:08x}" for w in result.missing)
        raise invalid(
            f"cosignature quorum not met: {len(result.cosigned)} of {len(options.witnesses)}"
            f" witnesses cosigned, {result.quorum} needed; missing {missing}"
        )
    names = ", ".join(c.witness.name for c in result.cosigned)
    return f"cosigned by {names} (quorum {result.quorum} of {len(options.witnesses)})"


def check_extras(
    line: str, note_text: str, receipt: Checkpoint, index: int, raw_anchors: object,
    verifier: Verifier, options: ReceiptOptions | None,
) -> str:
    """``line`` with the cosignature and anchor summaries added, once every check passes.

    ``raw_anchors`` is the receipt's ``anchors`` as read (``[]`` when it has none).
    """
    options = options or ReceiptOptions()
    parts = [line]
    for part in (
        check_cosignatures(note_text, options),
        check_anchors(parse_anchors(raw_anchors), receipt, index, verifier, options),
    ):
        if part is not None:
            parts.append(part)
    return "; ".join(parts)

