"""tlog-witness add-checkpoint: the request format and every answer the spec requires."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from vault.domain.checkpoint import Checkpoint, open_checkpoint, signed_checkpoint
from vault.domain.cosignature import CosignerKey, verify_cosignature
from vault.domain.merkle import EMPTY_ROOT
from vault.domain.note import Signer, Verifier, parse_note, sign_note
from vault.domain.witness import (
    MAX_PROOF_LINES,
    Accepted,
    AddCheckpointRequest,
    Conflict,
    MalformedRequest,
    Rejected,
    Status,
    WitnessedState,
    add_checkpoint,
    decide,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "cosignature"
T = 1_700_000_000


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


C2SP = _load("c2sp-cosignature.json")
W = _load("witness-monkeys.json")
LOG_V = Verifier.parse(W["log"]["vkey"])
LOG_S = Signer.parse(W["log"]["skey"])
BANANAS_V = Verifier.parse(W["other_log"]["vkey"])
BANANAS_S = Signer.parse(W["other_log"]["skey"])
WITNESS = CosignerKey.parse(W["witness"]["skey"])
SECOND = CosignerKey.from_key("witness.example/second", WITNESS.private_key)
M_INIT: str = W["m_init"]
M_NEXT: str = W["m_next"]
PROOF = [bytes.fromhex(h) for h in W["cons_proof_5_8_hex"]]
ROOT5 = bytes.fromhex(W["m_init_root_hex"])
ROOT8 = open_checkpoint(M_NEXT, LOG_V).root_hash
LOGS = {"monkeys": [LOG_V]}


def _cp(size: int, root: bytes, signer: Signer = LOG_S) -> str:
    return signed_checkpoint(Checkpoint("monkeys", size, root), signer)


def _decide(
    old: int,
    checkpoint: str,
    proof: list[bytes] | None = None,
    state: WitnessedState | None = None,
    keys: list[Verifier] | None = None,
) -> Accepted | Conflict | Rejected:
    request = AddCheckpointRequest(old, proof or [], checkpoint)
    return decide(request, [LOG_V] if keys is None else keys, state, [WITNESS], T)


def _rejected(outcome: object, status: Status) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.status == status
    assert outcome.body == outcome.reason + "\n"
    return outcome


# ------------------------------------------------------------ the request


def test_c2sp_example_request_parses_and_formats_back() -> None:
    case = C2SP["add_checkpoint_request"]
    raw = (VECTORS / "c2sp-add-checkpoint.request").read_bytes()
    assert raw.decode() == case["body"]
    request = AddCheckpointRequest.parse(raw)
    assert request.old_size == case["old_size"]
    assert request.proof == tuple(base64.b64decode(p) for p in case["proof_b64"])
    assert request.checkpoint == case["checkpoint"]
    assert request.origin == "example.com/behind-the-sofa"
    assert request.format() == case["body"]


def test_request_without_proof_round_trips() -> None:
    body = "old 0\n\n" + M_INIT
    request = AddCheckpointRequest.parse(body)
    assert (request.old_size, request.proof, request.checkpoint) == (0, (), M_INIT)
    assert AddCheckpointRequest(0, [], M_INIT).format() == body
    built = AddCheckpointRequest(5, PROOF, M_NEXT)
    assert AddCheckpointRequest.parse(built.format()) == built


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"old 5\n\xff\n\n" + M_INIT.encode(), "UTF-8"),
        ("old 5\n" + _b64(bytes(32)) + "\n", "empty line"),
        ("old 5\n" + M_INIT, "32 bytes"),  # the note's blank line ends the head
        ("new 5\n\n" + M_INIT, "'old <size>'"),
        ("old\n\n" + M_INIT, "'old <size>'"),
        ("old 05\n\n" + M_INIT, "leading zeros"),
        ("old -1\n\n" + M_INIT, "leading zeros"),
        ("old 5 \n\n" + M_INIT, "leading zeros"),
        (f"old {2**64}\n\n" + M_INIT, "leading zeros"),
        ("old 5\nnot base64!\n\n" + M_INIT, "32 bytes"),
        ("old 5\n" + _b64(bytes(31)) + "\n\n" + M_INIT, "32 bytes"),
        ("old 5\n" + _b64(bytes(32)).rstrip("=") + "\n\n" + M_INIT, "32 bytes"),
        ("old 5\n" + _b64(bytes(32)) + " \n\n" + M_INIT, "32 bytes"),
        ("old 5\n" + (_b64(bytes(32)) + "\n") * 64 + "\n" + M_INIT, "more than 63"),
        ("old 5\n\nmonkeys\nfive\nroot\n\n— monkeys AAAAAAA=\n", "signed checkpoint"),
        ("old 5\n\nmonkeys\n5\n" + _b64(ROOT5) + "\n", "signed checkpoint"),
        ("old 5\n\n\nmonkeys\n5\n" + _b64(ROOT5) + "\n\n— monkeys AAAAAAA=\n", "checkpoint"),
    ],
)
def test_malformed_requests_are_refused(body: str | bytes, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message):
        AddCheckpointRequest.parse(body)
    outcome = add_checkpoint(body, LOGS, {}, [WITNESS], T)
    assert _rejected(outcome, Status.BAD_REQUEST).checkpoint is None


@pytest.mark.parametrize("case", W["http_test_bad_bodies"], ids=lambda c: c["desc"])
def test_transparency_dev_bad_bodies(case: dict[str, str]) -> None:
    with pytest.raises(MalformedRequest):
        AddCheckpointRequest.parse(case["head"] + W["http_test_checkpoint"])


def test_63_proof_lines_are_allowed_and_the_constructor_checks_too() -> None:
    body = "old 5\n" + (_b64(bytes(32)) + "\n") * MAX_PROOF_LINES + "\n" + M_NEXT
    assert len(AddCheckpointRequest.parse(body).proof) == MAX_PROOF_LINES
    with pytest.raises(MalformedRequest, match="more than 63"):
        AddCheckpointRequest(5, [bytes(32)] * 64, M_NEXT)
    with pytest.raises(MalformedRequest, match="32 bytes"):
        AddCheckpointRequest(5, [bytes(2)], M_NEXT)
    with pytest.raises(MalformedRequest, match="out of range"):
        AddCheckpointRequest(-1, [], M_NEXT)
    with pytest.raises(MalformedRequest, match="signed checkpoint"):
        AddCheckpointRequest(5, [], "monkeys\n5\n")


# ------------------------------------------------------------- accepting


def test_consistent_checkpoint_is_cosigned() -> None:
    outcome = _decide(5, M_NEXT, PROOF, WitnessedState(5, ROOT5))
    assert isinstance(outcome, Accepted)
    assert outcome.status == Status.OK
    assert int(outcome.status) == 200
    assert outcome.content_type.startswith("text/plain")
    assert outcome.body == outcome.signatures
    assert outcome.signatures.startswith("\u2014 witness ")
    assert outcome.signatures.count("\n") == 1
    assert outcome.state == WitnessedState(8, ROOT8)
    assert outcome.checkpoint == open_checkpoint(M_NEXT, LOG_V)
    # The body appended to the checkpoint verifies, with the witness's timestamp.
    assert verify_cosignature(M_NEXT + outcome.body, WITNESS.verifier()) == T
    assert outcome.note == M_NEXT + outcome.body
    assert open_checkpoint(outcome.note, LOG_V).size == 8


def test_first_checkpoint_is_trusted_on_first_use() -> None:
    outcome = _decide(0, M_INIT)
    assert isinstance(outcome, Accepted)
    assert outcome.state == WitnessedState(5, ROOT5)
    # A stored empty tree behaves the same.
    again = _decide(0, M_INIT, state=WitnessedState(0, EMPTY_ROOT))
    assert isinstance(again, Accepted)


def test_resubmitting_the_cosigned_checkpoint_is_cosigned_again() -> None:
    outcome = _decide(5, M_INIT, state=WitnessedState(5, ROOT5))
    assert isinstance(outcome, Accepted)
    assert outcome.state == WitnessedState(5, ROOT5)


def test_empty_tree_checkpoint_is_cosigned() -> None:
    outcome = _decide(0, _cp(0, EMPTY_ROOT))
    assert isinstance(outcome, Accepted)
    assert outcome.state == WitnessedState(0, EMPTY_ROOT)


def test_every_cosigner_signs_and_only_verified_log_signatures_are_kept() -> None:
    unknown = "\u2014 someone.else " + _b64(bytes(4 + 64)) + "\n"
    checkpoint = M_INIT + unknown
    outcome = decide(AddCheckpointRequest(0, [], checkpoint), [LOG_V], None, [WITNESS, SECOND], T)
    assert isinstance(outcome, Accepted)
    lines = outcome.signatures.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["witness", "witness.example/second"]
    assert verify_cosignature(outcome.note, SECOND.verifier()) == T
    assert "someone.else" not in outcome.note
    assert parse_note(outcome.note).text == parse_note(M_INIT).text


# ------------------------------------------------------------- refusing


def test_unknown_origin_is_404() -> None:
    outcome = add_checkpoint("old 0\n\n" + M_INIT, {"bananas": [BANANAS_V]}, {}, [WITNESS], T)
    assert _rejected(outcome, Status.NOT_FOUND).checkpoint is None
    assert int(Status.NOT_FOUND) == 404
    _rejected(_decide(0, M_INIT, keys=[]), Status.NOT_FOUND)


def test_untrusted_or_bad_log_signature_is_403() -> None:
    # Signed only by a key the witness does not trust for this origin.
    foreign = sign_note("monkeys\n5\n" + _b64(ROOT5) + "\n", BANANAS_S)
    assert _rejected(_decide(0, foreign), Status.FORBIDDEN).checkpoint is None
    # Trusted key name and id, signature that does not verify.
    text, _, line = M_INIT.partition("\n\n")
    name, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = base64.b64decode(b64)
    broken = f"{text}\n\n{name} {_b64(raw[:-1] + bytes([raw[-1] ^ 1]))}\n"
    assert _rejected(_decide(0, broken), Status.FORBIDDEN).checkpoint is None
    # Another checkpoint's signature over this text.
    swapped = M_INIT.split("\n\n")[0] + "\n\n" + M_NEXT.split("\n\n")[1]
    _rejected(_decide(0, swapped), Status.FORBIDDEN)
    assert int(Status.FORBIDDEN) == 403


def test_old_size_above_checkpoint_size_is_400() -> None:
    outcome = _decide(8, M_INIT, PROOF, WitnessedState(8, ROOT8))
    rejected = _rejected(outcome, Status.BAD_REQUEST)
    assert rejected.checkpoint is not None and rejected.checkpoint.size == 5
    # One above is enough, and it is checked before the stored size (not a 409).
    _rejected(_decide(6, M_INIT, PROOF, WitnessedState(6, ROOT8)), Status.BAD_REQUEST)
    _rejected(_decide(6, M_INIT, PROOF, None), Status.BAD_REQUEST)


@pytest.mark.parametrize(
    ("old", "state", "size"),
    [
        (2, WitnessedState(5, ROOT5), 5),  # stale old size
        (0, WitnessedState(5, ROOT5), 5),  # a client asking for the size
        (5, None, 0),  # never cosigned: zero
        (8, WitnessedState(5, ROOT5), 5),
    ],
)
def test_old_size_not_the_cosigned_size_is_409(
    old: int, state: WitnessedState | None, size: int
) -> None:
    outcome = _decide(old, M_NEXT, PROOF if old else None, state)
    assert outcome == Conflict(size)
    assert isinstance(outcome, Conflict)
    assert outcome.status == Status.CONFLICT
    assert int(outcome.status) == 409
    assert outcome.content_type == C2SP["conflict"]["content_type"] == "text/x.tlog.size"
    assert outcome.body == f"{size}\n"


@pytest.mark.parametrize(
    ("old", "checkpoint", "proof", "state", "reason"),
    [
        (0, _cp(0, ROOT5), [], None, "empty tree's root"),
        (0, M_INIT, PROOF, None, "from size 0 must be empty"),
        (0, M_INIT, PROOF[:1], WitnessedState(0, EMPTY_ROOT), "from size 0 must be empty"),
        (5, _cp(5, bytes.fromhex(W["changed_root_hex"])), [], WitnessedState(5, ROOT5),
         "root hash differs"),
        (5, M_INIT, PROOF[:1], WitnessedState(5, ROOT5), "does not verify"),
        (4, M_INIT, [], WitnessedState(4, ROOT5), "does not verify"),  # missing proof
        (5, M_NEXT, [bytes([0xAA]) * 32] * 4, WitnessedState(5, ROOT5), "does not verify"),
        (5, M_NEXT, PROOF[:3], WitnessedState(5, ROOT5), "does not verify"),
        (5, M_NEXT, PROOF, WitnessedState(5, ROOT8), "does not verify"),  # forked old root
    ],
)
def test_inconsistent_checkpoints_are_422_with_the_evidence(
    old: int, checkpoint: str, proof: list[bytes], state: WitnessedState | None, reason: str
) -> None:
    rejected = _rejected(_decide(old, checkpoint, proof, state), Status.UNPROCESSABLE_ENTITY)
    assert reason in rejected.reason
    assert rejected.checkpoint == open_checkpoint(checkpoint, LOG_V)
    assert int(Status.UNPROCESSABLE_ENTITY) == 422


def test_add_checkpoint_uses_the_state_of_the_requests_origin() -> None:
    body = AddCheckpointRequest(5, PROOF, M_NEXT).format()
    states = {"monkeys": WitnessedState(5, ROOT5), "bananas": WitnessedState(9, ROOT8)}
    outcome = add_checkpoint(body.encode(), LOGS, states, [WITNESS], T)
    assert isinstance(outcome, Accepted) and outcome.state.size == 8
    assert add_checkpoint(body, LOGS, {}, [WITNESS], T) == Conflict(0)


def test_caller_errors_raise() -> None:
    request = AddCheckpointRequest(0, [], M_INIT)
    with pytest.raises(ValueError, match="cosigner"):
        decide(request, [LOG_V], None, [], T)
    with pytest.raises(ValueError, match="zero"):
        decide(request, [LOG_V], None, [WITNESS], 0)
    with pytest.raises(ValueError, match="32-byte"):
        WitnessedState(5, b"short")
    with pytest.raises(ValueError, match="32-byte"):
        WitnessedState(-1, ROOT5)
