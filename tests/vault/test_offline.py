"""The offline ledger checks: receipts, consistency, the monitor, and the shared vectors."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.adapters.ledger_client import LedgerClient
from vault.domain.checkpoint import Checkpoint, TlogProof, signed_checkpoint
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash
from vault.domain.models import EntityType
from vault.domain.note import Signer
from vault.offline import (
    INVALID,
    UNUSABLE,
    CheckFailed,
    check_consistency,
    check_extends,
    check_inclusion,
    load_verifier,
    parse_consistency,
    verify_consistency_files,
    verify_receipt,
)
from vault.offline_monitor import monitor

VECTORS = Path(__file__).parents[1] / "vectors"
INCLUSION_FILES = sorted((VECTORS / "merkle" / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "merkle" / "consistency").rglob("*.json"))
ORIGIN = "vault.example/ledger"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def new_signer(name: str = ORIGIN) -> Signer:
    return Signer.from_key(name, Ed25519PrivateKey.generate())


def vault_leaf(content: bytes, kind: LeafKind = LeafKind.REGISTERED) -> bytes:
    return Leaf(
        kind=kind, document_id=uuid4(), entity_type=EntityType.ISSUER, entity_id=uuid4(),
        sha256=hashlib.sha256(content).hexdigest(), size=len(content), time=datetime.now(UTC),
    ).encode()


class Ledger:
    """A log in memory: its leaves, every complete node, signed checkpoints, proofs."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.leaves: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.edge = CompactRange()

    def append(self, leaf: bytes) -> int:
        self.edge, completed = self.edge.append(leaf_hash(leaf))
        self.nodes.update({(level, index): value for level, index, value in completed})
        self.leaves.append(leaf)
        return len(self.leaves) - 1

    def get_node(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def checkpoint(self) -> str:
        cp = Checkpoint(self.signer.name, self.edge.size, self.edge.root())
        return signed_checkpoint(cp, self.signer)

    def consistency(self, size1: int, size2: int) -> dict[str, Any]:
        hashes = consistency_proof(size1, size2, self.get_node) if size1 < size2 else []
        return {"from": size1, "to": size2, "hashes": [b64(h) for h in hashes]}

    def tlog_proof(self, index: int, *, extra: bool = True) -> str:
        proof = inclusion_proof(index, self.edge.size, self.get_node)
        leaf = self.leaves[index] if extra else None
        cp = self.checkpoint()
        return TlogProof(extra=leaf, index=index, hashes=proof, checkpoint=cp).format()

    def receipt(self, index: int) -> dict[str, Any]:
        leaf = Leaf.parse(self.leaves[index])
        return {
            "document_id": str(leaf.document_id),
            "leaf": self.leaves[index].decode(),
            "leaf_index": index,
            "tree_size": self.edge.size,
            "inclusion_proof": [
                b64(h) for h in inclusion_proof(index, self.edge.size, self.get_node)
            ],
            "checkpoint": self.checkpoint(),
            "tlog_proof": self.tlog_proof(index),
        }


def grown(signer: Signer, contents: list[bytes]) -> Ledger:
    ledger = Ledger(signer)
    for content in contents:
        ledger.append(vault_leaf(content))
    return ledger


@pytest.fixture
def signer() -> Signer:
    return new_signer()


@pytest.fixture
def ledger(signer: Signer) -> Ledger:
    return grown(signer, [f"document {i}".encode() for i in range(7)])


def failure(call: Any, *args: Any) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        call(*args)
    return caught.value


# ------------------------------------------------------------- the vectors


def _proof(raw: list[str] | None) -> list[bytes]:
    return [base64.b64decode(item) for item in raw or []]


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_inclusion_vector(path: Path) -> None:
    """The receipt's inclusion check passes the good probes and refuses the others (exit 1)."""
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        base64.b64decode(case["leafHash"]), case["leafIdx"], case["treeSize"],
        _proof(case["proof"]), base64.b64decode(case["root"]),
    )
    if case["wantErr"]:
        refused = failure(check_inclusion, *args)
        assert refused.code == INVALID
        assert refused.line.startswith("invalid: inclusion proof: ")
    else:
        check_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_consistency_vector(path: Path) -> None:
    """The consistency check passes the good probes and refuses the others (exit 1)."""
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        case["size1"], case["size2"], base64.b64decode(case["root1"]),
        base64.b64decode(case["root2"]), _proof(case["proof"]),
    )
    if case["wantErr"]:
        refused = failure(check_consistency, *args)
        assert refused.code == INVALID
        assert refused.line.startswith("invalid: consistency proof: ")
    else:
        check_consistency(*args)


def test_vector_counts() -> None:
    assert len(INCLUSION_FILES) == 98
    assert len(CONSISTENCY_FILES) == 98


def test_c2sp_tlog_proof_example_is_unusable(signer: Signer) -> None:
    """The spec's example parses as a tlog-proof, yet cannot be checked: exit 2, not 1.

    Its signature lines are elided with ``[...]``, which is not base64, so
    its checkpoint is not a signed note at all: there is no signature that
    could fail to verify, only input that cannot be read. (Its shortened
    proof and its non-vault leaf are never reached: the checkpoint is
    opened first, before anything it vouches for is looked at.)
    """
    text = (VECTORS / "tlog-proof" / "c2sp-example.tlog-proof").read_text()
    TlogProof.parse(text)  # the layout itself is fine
    key = new_signer("example.com/fancylog").verifier()
    refused = failure(verify_receipt, text, key)
    assert refused.code == UNUSABLE
    assert refused.line.startswith("vault: checkpoint is not a signed checkpoint: ")


# ---------------------------------------------------------------- receipts


def test_receipt_json_verifies(ledger: Ledger, signer: Signer) -> None:
    line = verify_receipt(json.dumps(ledger.receipt(3)), signer.verifier())
    document = Leaf.parse(ledger.leaves[3]).document_id
    assert line == f"ok: registered leaf of document {document} is entry 3 of {ORIGIN} at size 7"


def test_every_leaf_of_every_size_verifies(signer: Signer) -> None:
    ledger = Ledger(signer)
    for size in range(1, 10):
        ledger.append(vault_leaf(f"file {size}".encode()))
        for index in range(size):
            assert verify_receipt(json.dumps(ledger.receipt(index)), signer.verifier())


def test_bare_tlog_proof_verifies(ledger: Ledger, signer: Signer) -> None:
    line = verify_receipt(ledger.tlog_proof(6), signer.verifier())
    assert line.startswith("ok: registered leaf of document ")
    assert "entry 6 of" in line


def test_receipt_with_its_file(ledger: Ledger, signer: Signer, tmp_path: Path) -> None:
    """The file's SHA-256 must be the leaf's: the right file passes, one changed byte does not."""
    content = b"x" * (3 * 1024 * 1024 + 5)  # more than one 1 MiB chunk
    index = ledger.append(vault_leaf(content))
    receipt = json.dumps(ledger.receipt(index))
    good = tmp_path / "good.pdf"
    good.write_bytes(content)
    assert verify_receipt(receipt, signer.verifier(), good).endswith("; file SHA-256 matches")
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(content[:-1] + b"y")
    refused = failure(verify_receipt, receipt, signer.verifier(), bad)
    assert refused.code == INVALID
    assert refused.line == "invalid: file SHA-256 differs from the leaf's"
    missing = failure(verify_receipt, receipt, signer.verifier(), tmp_path / "absent.pdf")
    assert missing.code == UNUSABLE
    assert missing.line.startswith("vault: cannot read file ")


def test_receipt_signed_by_another_key_is_invalid(ledger: Ledger) -> None:
    """Same name, another key: the note has no signature by the key given."""
    refused = failure(verify_receipt, json.dumps(ledger.receipt(0)), new_signer().verifier())
    assert refused.code == INVALID
    assert refused.line == f"invalid: checkpoint has no signature by the key {ORIGIN}"


def test_receipt_with_a_forged_signature_is_invalid(ledger: Ledger, signer: Signer) -> None:
    receipt = ledger.receipt(0)
    text, _, signatures = receipt["checkpoint"].rpartition("\n\n")
    forged = text.replace("\n7\n", "\n8\n", 1)  # another size under the same signature
    receipt["checkpoint"] = forged + "\n\n" + signatures
    receipt.pop("tlog_proof")
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.line == "invalid: checkpoint signature does not verify with the key"


def test_key_named_other_than_the_origin_is_invalid(signer: Signer) -> None:
    """A key under another name signs a checkpoint whose origin is not that name."""
    other = Signer.from_key("someone.else", signer.private_key)
    receipt = grown(signer, [b"a", b"b"]).receipt(1)
    refused = failure(verify_receipt, json.dumps(receipt), other.verifier())
    assert refused.code == INVALID


def test_tampered_inclusion_proof_is_invalid(ledger: Ledger, signer: Signer) -> None:
    receipt = ledger.receipt(2)
    receipt.pop("tlog_proof")
    receipt["inclusion_proof"][1] = b64(bytes(32))
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.code == INVALID
    assert refused.line.startswith("invalid: inclusion proof: calculated root ")


def test_another_leaf_under_the_proof_is_invalid(ledger: Ledger, signer: Signer) -> None:
    receipt = ledger.receipt(2)
    receipt.pop("tlog_proof")
    receipt["leaf"] = ledger.leaves[3].decode()
    receipt["document_id"] = str(Leaf.parse(ledger.leaves[3]).document_id)
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.line.startswith("invalid: inclusion proof: ")


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"tree_size": 6}, "invalid: receipt tree_size 6 is not the checkpoint's 7"),
        ({"leaf_index": 4}, "invalid: tlog_proof disagrees with the receipt's leaf_index"),
        ({"document_id": str(uuid4())}, "invalid: receipt document_id is not the leaf's document"),
    ],
)
def test_fields_that_disagree_are_invalid(
    ledger: Ledger, signer: Signer, change: dict[str, Any], line: str
) -> None:
    receipt = {**ledger.receipt(3), **change}
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert (refused.code, refused.line) == (INVALID, line)


def test_tlog_proof_of_another_leaf_is_invalid(ledger: Ledger, signer: Signer) -> None:
    """Each field of the JSON must say what its tlog_proof says."""
    receipt = ledger.receipt(3)
    receipt["tlog_proof"] = ledger.tlog_proof(3, extra=False)
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.line == "invalid: tlog_proof disagrees with the receipt's leaf"
    receipt["tlog_proof"] = grown(signer, [b"other"]).tlog_proof(0)
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.line == "invalid: tlog_proof disagrees with the receipt's checkpoint"


def test_tlog_proof_without_a_leaf_is_unusable(ledger: Ledger, signer: Signer) -> None:
    refused = failure(verify_receipt, ledger.tlog_proof(1, extra=False), signer.verifier())
    assert refused.code == UNUSABLE
    assert "carries no leaf" in refused.line


def test_a_leaf_that_is_not_a_vault_leaf_is_unusable(signer: Signer) -> None:
    ledger = Ledger(signer)
    ledger.append(b"not a vault leaf\n")
    refused = failure(verify_receipt, ledger.tlog_proof(0), signer.verifier())
    assert refused.code == UNUSABLE
    assert refused.line.startswith("vault: the receipt's leaf is not a vault leaf: ")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "receipt is not JSON"),
        ("[1, 2]", "receipt is not a JSON object"),
        ('{"leaf": "x"}', "receipt has no int field 'leaf_index'"),
        ("c2sp.org/tlog-proof@v1\nindex x\n\nbody\n", "receipt is not a tlog-proof"),
        ("", "receipt is not JSON"),
    ],
)
def test_unusable_receipts(signer: Signer, text: str, named: str) -> None:
    refused = failure(verify_receipt, text, signer.verifier())
    assert refused.code == UNUSABLE
    assert refused.line.startswith(f"vault: {named}")


def test_bad_proof_hash_is_unusable(ledger: Ledger, signer: Signer) -> None:
    receipt = ledger.receipt(0)
    receipt["inclusion_proof"][0] = "not base64"
    refused = failure(verify_receipt, json.dumps(receipt), signer.verifier())
    assert refused.line == "vault: receipt inclusion_proof[0] is not base64 of 32 bytes"


# -------------------------------------------------------------------- keys


def test_key_as_string_or_file(signer: Signer, tmp_path: Path) -> None:
    key = signer.verifier()
    assert load_verifier(key.format()) == key
    path = tmp_path / "ledger.vkey"
    path.write_text(key.format() + "\n")
    assert load_verifier(str(path)) == key


def test_bad_keys_are_unusable(tmp_path: Path) -> None:
    refused = failure(load_verifier, "not-a-key")
    assert refused.code == UNUSABLE
    assert refused.line.startswith("vault: key is neither a verifier key nor a file: ")
    path = tmp_path / "bad.vkey"
    path.write_text("name+00000000+AAAA\n")
    refused = failure(load_verifier, str(path))
    assert refused.line.startswith(f"vault: key file {path}: ")


# ------------------------------------------------------------- consistency


def _checkpoints(signer: Signer, *sizes: int) -> tuple[Ledger, list[str]]:
    ledger, notes = Ledger(signer), []
    for size in sizes:
        while len(ledger.leaves) < size:
            ledger.append(vault_leaf(f"leaf {len(ledger.leaves)}".encode()))
        notes.append(ledger.checkpoint())
    return ledger, notes


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_consistency_files(signer: Signer, tmp_path: Path) -> None:
    ledger, (old, new) = _checkpoints(signer, 3, 11)
    paths = (
        _write(tmp_path, "old", old), _write(tmp_path, "new", new),
        _write(tmp_path, "proof.json", json.dumps(ledger.consistency(3, 11))),
    )
    line = verify_consistency_files(*paths, signer.verifier())
    assert line == f"ok: {ORIGIN} size 11 extends size 3"
    reversed_paths = (paths[1], paths[0], paths[2])
    refused = failure(verify_consistency_files, *reversed_paths, signer.verifier())
    assert refused.line == "invalid: NEW (size 3) is smaller than OLD (size 11)"


def test_consistency_with_a_forked_new_checkpoint(signer: Signer, tmp_path: Path) -> None:
    """A NEW checkpoint of another tree with the same first leaves' count is refused."""
    _, (old, _) = _checkpoints(signer, 3, 11)
    fork = grown(signer, [f"fork {i}".encode() for i in range(11)])
    proof = json.dumps(fork.consistency(3, 11))
    refused = failure(
        verify_consistency_files, _write(tmp_path, "old", old),
        _write(tmp_path, "new", fork.checkpoint()), _write(tmp_path, "p", proof),
        signer.verifier(),
    )
    assert refused.code == INVALID
    assert refused.line.startswith("invalid: consistency proof: calculated old root ")


def test_consistency_proof_for_other_sizes_is_invalid(signer: Signer, tmp_path: Path) -> None:
    ledger, (old, new) = _checkpoints(signer, 4, 9)
    proof = json.dumps(ledger.consistency(3, 9))
    refused = failure(
        verify_consistency_files, _write(tmp_path, "old", old), _write(tmp_path, "new", new),
        _write(tmp_path, "p", proof), signer.verifier(),
    )
    assert refused.line == "invalid: consistency proof is from size 3 to 9, not 4 to 9"


def test_consistency_needs_both_signatures(signer: Signer, tmp_path: Path) -> None:
    ledger, (old, _) = _checkpoints(signer, 2, 5)
    stranger = grown(new_signer(), [f"leaf {i}".encode() for i in range(5)])
    refused = failure(
        verify_consistency_files, _write(tmp_path, "old", old),
        _write(tmp_path, "new", stranger.checkpoint()),
        _write(tmp_path, "p", json.dumps(ledger.consistency(2, 5))), signer.verifier(),
    )
    assert refused.line == f"invalid: NEW checkpoint has no signature by the key {ORIGIN}"


def test_equal_sizes(signer: Signer) -> None:
    """Equal sizes need equal roots and an empty proof; an empty OLD is extended by anything."""
    ledger, _ = _checkpoints(signer, 5)
    same = Checkpoint(ORIGIN, 5, ledger.edge.root())
    check_extends(same, same, parse_consistency(json.dumps(ledger.consistency(5, 5))))
    other = Checkpoint(ORIGIN, 5, bytes(32))
    refused = failure(check_extends, same, other, None)
    assert refused.line == "invalid: OLD and NEW have the same size 5 but different roots"
    padded = parse_consistency(json.dumps({"from": 5, "to": 5, "hashes": [b64(bytes(32))]}))
    refused = failure(check_extends, same, same, padded)
    assert refused.line == "invalid: consistency proof: sizes are equal, but the proof is not empty"
    check_extends(Checkpoint(ORIGIN, 0, hashlib.sha256().digest()), same, None)


def test_missing_checkpoint_file_is_unusable(signer: Signer, tmp_path: Path) -> None:
    refused = failure(
        verify_consistency_files, tmp_path / "old", tmp_path / "new", tmp_path / "p",
        signer.verifier(),
    )
    assert refused.code == UNUSABLE
    assert refused.line.startswith(f"vault: cannot read checkpoint {tmp_path / 'old'}")


# ----------------------------------------------------------------- monitor


class Service:
    """The ledger routes over httpx's mock transport, answering from ``ledger``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.checkpoint: str | None = None
        self.requests: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if request.url.path == "/api/v1/ledger/checkpoint":
            return httpx.Response(200, text=self.checkpoint or self.ledger.checkpoint())
        if request.url.path == "/api/v1/ledger/consistency":
            size1, size2 = int(request.url.params["from"]), int(request.url.params["to"])
            return httpx.Response(200, json=self.ledger.consistency(size1, size2))
        return httpx.Response(404)

    def client(self) -> LedgerClient:
        return LedgerClient("http://vault.test:8080", transport=httpx.MockTransport(self.handle))


def test_monitor_first_run_then_growth(signer: Signer, tmp_path: Path) -> None:
    ledger = grown(signer, [b"a", b"b", b"c"])
    service = Service(ledger)
    state = tmp_path / "state"
    line = monitor(service.client(), signer.verifier(), state)
    assert line == f"first run: {ORIGIN} size 3 saved"
    assert state.read_text() == ledger.checkpoint()
    for content in (b"d", b"e"):
        ledger.append(vault_leaf(content))
    assert monitor(service.client(), signer.verifier(), state) == f"ok: {ORIGIN} size 5 (was 3)"
    assert state.read_text() == ledger.checkpoint()
    assert service.requests[-1].endswith("/api/v1/ledger/consistency?from=3&to=5")
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # no temporary file left


def test_monitor_refuses_a_fork_and_keeps_the_state(signer: Signer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    saved = grown(signer, [b"a", b"b", b"c"]).checkpoint()
    state.write_text(saved)
    fork = Service(grown(signer, [b"x", b"y", b"z", b"w"]))
    refused = failure(monitor, fork.client(), signer.verifier(), state)
    assert refused.code == INVALID
    assert refused.line.startswith("invalid: consistency proof: calculated old root ")
    assert state.read_text() == saved


def test_monitor_refuses_a_rollback(signer: Signer, tmp_path: Path) -> None:
    ledger = grown(signer, [b"a", b"b"])
    service = Service(ledger)
    state = tmp_path / "state"
    state.write_text(grown(signer, [b"a", b"b", b"c"]).checkpoint())
    before = state.read_text()
    refused = failure(monitor, service.client(), signer.verifier(), state)
    assert refused.line == "invalid: rollback: latest size 2 is smaller than the saved size 3"
    assert state.read_text() == before


def test_monitor_network_error_is_unusable(signer: Signer, tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = LedgerClient("http://vault.test:8080", transport=httpx.MockTransport(down))
    refused = failure(monitor, client, signer.verifier(), tmp_path / "state")
    assert refused.code == UNUSABLE
    assert refused.line.startswith("vault: cannot fetch http://vault.test:8080/api/v1/ledger/")
    assert not (tmp_path / "state").exists()


def test_monitor_non_200_is_unusable(signer: Signer, tmp_path: Path) -> None:
    service = Service(grown(signer, [b"a"]))
    client = LedgerClient("http://vault.test:8080/nowhere", transport=httpx.MockTransport(
        service.handle
    ))
    refused = failure(monitor, client, signer.verifier(), tmp_path / "state")
    assert refused.line == (
        "vault: http://vault.test:8080/nowhere/api/v1/ledger/checkpoint answered HTTP 404"
    )


def test_client_refuses_a_url_that_is_not_a_base() -> None:
    with pytest.raises(ConnectionError, match="base URL"):
        LedgerClient("ftp://vault.test")
