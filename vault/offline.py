"""The ledger's offline checks: a receipt, and one checkpoint extending another.

These are what ``vault receipt verify`` and ``vault ledger consistency`` run;
they need no configuration, no database and no network, only the files they
are given and the log's verifier key. Each check either answers the line to
print on success or raises ``CheckFailed`` carrying the exit code and the one
line that says why:

    0   every check passed
    1   a check failed: ``invalid: <which check, and how>``
    2   the input cannot be checked (a missing file, JSON that does not parse,
        a bad key string): ``vault: <what is wrong>``

A receipt is the receipt route's JSON (``document_id``, ``leaf``,
``leaf_index``, ``tree_size``, ``inclusion_proof``, ``checkpoint``,
``tlog_proof``) or the bare c2sp.org/tlog-proof@v1 text, whose extra line is
the leaf. Its checkpoint is opened with the key first, so nothing else in it
is trusted before the signature is; then every field that says the same
thing twice must agree, the inclusion proof must give the checkpoint's root,
and only then is the leaf read as a vault leaf. With a file, the file's
SHA-256 must be the leaf's. Then ``vault.offline_anchors`` checks the
witness cosignatures (when witnesses are given) and the JSON's ``anchors``.

``check_inclusion`` and ``check_consistency`` are the proof checks alone,
which the transparency-dev vectors exercise directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from vault.domain.checkpoint import (
    TLOG_PROOF_HEADER,
    Checkpoint,
    CheckpointError,
    MalformedCheckpoint,
    MalformedProof,
    OriginMismatch,
    TlogProof,
    decode_hash,
    open_checkpoint,
)
from vault.domain.leaf import Leaf, MalformedLeaf
from vault.domain.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from vault.domain.note import (
    InvalidKey,
    InvalidSignature,
    MalformedNote,
    NoteError,
    UnverifiedNote,
    Verifier,
)
from vault.domain.validation import load_json

if TYPE_CHECKING:
    from vault.offline_anchors import ReceiptOptions

K = TypeVar("K")

VALID = 0
INVALID = 1
UNUSABLE = 2
CHUNK_SIZE = 1024 * 1024
MAX_INPUT_BYTES = 16 * 1024 * 1024
"""A receipt, checkpoint, proof or key file longer than this is not one."""


class CheckFailed(Exception):
    """A check that failed (exit 1) or input that cannot be checked (exit 2)."""

    def __init__(self, code: int, line: str) -> None:
        self.code = code
        self.line = line
        super().__init__(line)


def invalid(reason: str) -> CheckFailed:
    return CheckFailed(INVALID, f"invalid: {reason}")


def unusable(reason: str) -> CheckFailed:
    return CheckFailed(UNUSABLE, f"vault: {reason}")


# ----------------------------------------------------------------- inputs


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file given on the command line; unusable if it cannot be read."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise unusable(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise unusable(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise unusable(f"{what} {path} is not UTF-8 text") from None


def key_or_file(key: str, parse: Callable[[str], K], option: str, kind: str) -> K:
    """``parse(key)``, or ``parse`` of the file ``key`` names; exit 2 when neither parses."""
    try:
        return parse(key)
    except InvalidKey as exc:
        as_string = exc
    path = Path(key)
    if not path.is_file():
        raise unusable(f"{option} is neither {kind} nor a file: {as_string}")
    text = read_text(path, f"{option.lstrip('-')} file")
    try:
        return parse(text.strip())
    except InvalidKey as exc:
        raise unusable(f"{option.lstrip('-')} file {path}: {exc}") from None


def load_verifier(key: str) -> Verifier:
    """A verifier key string, or the name of a file holding one."""
    return key_or_file(key, Verifier.parse, "key", "a verifier key")


def open_signed(note_text: str, verifier: Verifier, what: str) -> Checkpoint:
    """The checkpoint of ``note_text`` once its signature by ``verifier`` is checked."""
    try:
        return open_checkpoint(note_text, verifier)
    except InvalidSignature:
        raise invalid(f"{what} signature does not verify with the key") from None
    except UnverifiedNote:
        raise invalid(f"{what} has no signature by the key {verifier.name}") from None
    except OriginMismatch:
        raise invalid(f"{what} origin is not the key's name {verifier.name}") from None
    except (MalformedNote, MalformedCheckpoint) as exc:
        raise unusable(f"{what} is not a signed checkpoint: {exc}") from None
    except NoteError as exc:
        raise unusable(f"{what}: {exc}") from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = load_json(text)
    except ValueError as exc:
        raise unusable(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise unusable(f"{what} is not a JSON object")
    return value


def _field(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise unusable(f"{what} has no {kind.__name__} field {name!r}")
    return value


def _hashes(raw: Any, name: str, what: str) -> tuple[bytes, ...]:
    if not isinstance(raw, list):
        raise unusable(f"{what} has no list field {name!r}")
    hashes = []
    for position, item in enumerate(raw):
        value = decode_hash(item) if isinstance(item, str) else None
        if value is None:
            raise unusable(f"{what} {name}[{position}] is not base64 of 32 bytes")
        hashes.append(value)
    return tuple(hashes)


# ------------------------------------------------------------ proof checks


def check_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``CheckFailed`` (exit 1) unless ``proof`` puts leaf hash ``leaf`` under ``root``."""
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError as exc:
        raise invalid(f"inclusion proof: {exc}") from None


def check_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``CheckFailed`` (exit 1) unless ``proof`` shows tree 2 extends tree 1."""
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError as exc:
        raise invalid(f"consistency proof: {exc}") from None


# ---------------------------------------------------------------- receipts


@attrs.frozen
class Receipt:
    """A receipt's claims, read but not yet checked."""

    leaf: bytes
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    tree_size: int | None = None
    """The JSON's ``tree_size``; a bare tlog-proof has only its checkpoint's."""
    document_id: str | None = None
    tlog_proof: TlogProof | None = None
    """The JSON's ``tlog_proof``, which must say what the other fields say."""
    anchors: object = attrs.field(factory=list)
    """The JSON's ``anchors`` as read (``[]`` when absent), for ``vault.offline_anchors``."""


def _tlog_proof(text: str, what: str) -> TlogProof:
    try:
        return TlogProof.parse(text)
    except (MalformedProof, CheckpointError) as exc:
        raise unusable(f"{what} is not a tlog-proof: {exc}") from None


def parse_receipt(text: str) -> Receipt:
    """The receipt route's JSON or a bare tlog-proof; unusable if it is neither."""
    if text.startswith(TLOG_PROOF_HEADER):
        proof = _tlog_proof(text, "receipt")
        if proof.extra is None:
            raise unusable("the tlog-proof carries no leaf (no extra line) to check")
        return Receipt(
            leaf=proof.extra, index=proof.index, proof=proof.hashes, checkpoint=proof.checkpoint
        )
    body = _json_object(text, "receipt")
    what = "receipt"
    document_id = body.get("document_id")
    tlog_text = body.get("tlog_proof")
    if tlog_text is not None and not isinstance(tlog_text, str):
        raise unusable("receipt field 'tlog_proof' is not a string")
    return Receipt(
        leaf=_field(body, "leaf", str, what).encode("utf-8"),
        index=_field(body, "leaf_index", int, what),
        proof=_hashes(body.get("inclusion_proof"), "inclusion_proof", what),
        checkpoint=_field(body, "checkpoint", str, what),
        tree_size=_field(body, "tree_size", int, what),
        document_id=document_id if isinstance(document_id, str) else None,
        tlog_proof=None if tlog_text is None else _tlog_proof(tlog_text, "receipt tlog_proof"),
        anchors=body.get("anchors", []),
    )


def _agree(receipt: Receipt, cp: Checkpoint) -> None:
    if receipt.tree_size is not None and receipt.tree_size != cp.size:
        raise invalid(f"receipt tree_size {receipt.tree_size} is not the checkpoint's {cp.size}")
    other = receipt.tlog_proof
    if other is None:
        return
    for name, same in (
        ("checkpoint", other.checkpoint == receipt.checkpoint),
        ("leaf_index", other.index == receipt.index),
        ("inclusion_proof", other.hashes == receipt.proof),
        ("leaf", other.extra == receipt.leaf),
    ):
        if not same:
            raise invalid(f"tlog_proof disagrees with the receipt's {name}")


def file_sha256(path: Path) -> str:
    """The lowercase hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                digest.update(chunk)
    except OSError as exc:
        raise unusable(f"cannot read file {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def verify_receipt(
    text: str, verifier: Verifier, file: Path | None = None, *,
    options: ReceiptOptions | None = None,
) -> str:
    """Check a receipt against the key (and a file); the success line, or ``CheckFailed``.

    Its cosignatures and anchors are checked as ``options`` ask (see
    ``vault.offline_anchors``); a receipt with neither, checked without
    options, gets the line it always did.
    """
    from vault.offline_anchors import check_extras

    receipt = parse_receipt(text)
    cp = open_signed(receipt.checkpoint, verifier, "checkpoint")
    _agree(receipt, cp)
    check_inclusion(leaf_hash(receipt.leaf), receipt.index, cp.size, receipt.proof, cp.root_hash)
    try:
        leaf = Leaf.parse(receipt.leaf)
    except MalformedLeaf as exc:
        raise unusable(f"the receipt's leaf is not a vault leaf: {exc}") from None
    if receipt.document_id is not None and receipt.document_id != str(leaf.document_id):
        raise invalid("receipt document_id is not the leaf's document")
    line = (
        f"ok: {leaf.kind.value} leaf of document {leaf.document_id} is entry {receipt.index}"
        f" of {cp.origin} at size {cp.size}"
    )
    if file is not None:
        if file_sha256(file) != leaf.sha256:
            raise invalid("file SHA-256 differs from the leaf's")
        line = f"{line}; file SHA-256 matches"
    return check_extras(
        line, receipt.checkpoint, cp, receipt.index, receipt.anchors, verifier, options
    )


# -------------------------------------------------------------- consistency


@attrs.frozen
class ConsistencyProof:
    """The consistency route's answer: ``{"from": M, "to": N, "hashes": [...]}``."""

    size1: int
    size2: int
    hashes: tuple[bytes, ...]


def parse_consistency(text: str, what: str = "consistency proof") -> ConsistencyProof:
    body = _json_object(text, what)
    return ConsistencyProof(
        size1=_field(body, "from", int, what),
        size2=_field(body, "to", int, what),
        hashes=_hashes(body.get("hashes"), "hashes", what),
    )


def check_extends(old: Checkpoint, new: Checkpoint, proof: ConsistencyProof | None) -> None:
    """Raise ``CheckFailed`` unless ``new`` extends ``old``; ``proof`` may be None for equal sizes.

    Equal sizes need equal roots; a tree extends the empty tree without proof.
    """
    if new.size < old.size:
        raise invalid(f"NEW (size {new.size}) is smaller than OLD (size {old.size})")
    if proof is not None and (proof.size1, proof.size2) != (old.size, new.size):
        raise invalid(
            f"consistency proof is from size {proof.size1} to {proof.size2},"
            f" not {old.size} to {new.size}"
        )
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            raise invalid(f"OLD and NEW have the same size {new.size} but different roots")
        if proof is not None and proof.hashes:
            raise invalid("consistency proof: sizes are equal, but the proof is not empty")
        return
    if old.size == 0:
        return
    if proof is None:
        raise unusable("a consistency proof is needed")
    check_consistency(old.size, new.size, old.root_hash, new.root_hash, proof.hashes)


def verify_consistency_files(old: Path, new: Path, proof: Path, verifier: Verifier) -> str:
    """``vault ledger consistency``: both checkpoints signed, NEW extending OLD."""
    old_text = read_text(old, "checkpoint")
    new_text = read_text(new, "checkpoint")
    parsed = parse_consistency(read_text(proof, "consistency proof"))
    old_cp = open_signed(old_text, verifier, "OLD checkpoint")
    new_cp = open_signed(new_text, verifier, "NEW checkpoint")
    check_extends(old_cp, new_cp, parsed)
    return f"ok: {new_cp.origin} size {new_cp.size} extends size {old_cp.size}"
