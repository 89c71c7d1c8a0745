"""Checkpoints and tlog-proofs: the C2SP examples byte for byte, and strict parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.domain.checkpoint import (
    TLOG_PROOF_HEADER,
    Checkpoint,
    MalformedCheckpoint,
    MalformedProof,
    OriginMismatch,
    TlogProof,
    checkpoint_body,
    open_checkpoint,
    signed_checkpoint,
)
from vault.domain.note import (
    InvalidSignature,
    NoteError,
    Signer,
    UnverifiedNote,
    parse_note,
    sign_note,
)

VECTORS = Path(__file__).parents[1] / "vectors"
ORIGIN = "document-vault.local/test"
ROOT = bytes(range(32))


def _load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / path).read_text(encoding="utf-8"))
    return data


def _signer(name: str = ORIGIN) -> Signer:
    return Signer.from_key(name, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))


class TestCheckpointVector:
    def test_example_parses_and_formats_back(self) -> None:
        vector = _load("checkpoint/c2sp-checkpoint.json")
        raw = (VECTORS / "checkpoint/c2sp-example.checkpoint").read_text(encoding="utf-8")
        assert raw == vector["checkpoint"]
        note = parse_note(raw)
        assert note.text == vector["text"]
        assert [s.line() for s in note.unverified] == vector["signature_lines"]
        cp = Checkpoint.parse(note.text)
        assert (cp.origin, cp.size) == (vector["origin"], vector["tree_size"])
        assert cp.root_hash == base64.b64decode(vector["root_hash_b64"])
        assert list(cp.extensions) == vector["extension_lines"]
        assert cp.format() == vector["text"]
        assert checkpoint_body(raw) == cp

    def test_extension_lines_kept(self) -> None:
        text = "example.com/log\n5\n" + base64.b64encode(ROOT).decode() + "\next one\nb\n"
        cp = Checkpoint.parse(text)
        assert cp.extensions == ("ext one", "b") and cp.format() == text


class TestCheckpointParse:
    @pytest.mark.parametrize(
        "size", ["", "01", "00", "+1", "-1", " 1", "1 ", "1.0", "0x10", "1_000", "\u0661",
                 str(2**64)],
    )
    def test_bad_sizes_refused(self, size: str) -> None:
        with pytest.raises(MalformedCheckpoint, match="size"):
            Checkpoint.parse(f"o\n{size}\n{base64.b64encode(ROOT).decode()}\n")

    @pytest.mark.parametrize(
        "root",
        [
            "",
            base64.b64encode(ROOT[:31]).decode(),  # 31 bytes
            base64.b64encode(ROOT + b"\x00").decode(),  # 33 bytes
            base64.b64encode(ROOT).decode().rstrip("="),  # no padding
            base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # URL alphabet
            base64.b64encode(ROOT).decode()[:-2] + "9=",  # non-canonical final bits
            base64.b64encode(ROOT).decode() + " ",
        ],
    )
    def test_bad_roots_refused(self, root: str) -> None:
        with pytest.raises(MalformedCheckpoint, match="root"):
            Checkpoint.parse(f"o\n1\n{root}\n")

    @pytest.mark.parametrize(
        "text",
        [
            "o\n1\n",  # two lines
            f"o\n1\n{base64.b64encode(ROOT).decode()}",  # no final newline
            f"\n1\n{base64.b64encode(ROOT).decode()}\n",  # empty origin
            f"o\n1\n{base64.b64encode(ROOT).decode()}\n\n",  # empty extension line
            f"o\n1\n{base64.b64encode(ROOT).decode()}\r\n",
        ],
    )
    def test_bad_layouts_refused(self, text: str) -> None:
        with pytest.raises(MalformedCheckpoint):
            Checkpoint.parse(text)

    def test_zero_size_allowed(self) -> None:
        assert Checkpoint.parse(f"o\n0\n{base64.b64encode(ROOT).decode()}\n").size == 0

    def test_constructor_refuses_bad_values(self) -> None:
        with pytest.raises(MalformedCheckpoint):
            Checkpoint(ORIGIN, 1, ROOT[:5])
        with pytest.raises(MalformedCheckpoint):
            Checkpoint(ORIGIN, -1, ROOT)
        with pytest.raises(MalformedCheckpoint):
            Checkpoint("a\nb", 1, ROOT)


class TestSignedCheckpoint:
    def test_round_trip(self) -> None:
        cp = Checkpoint(ORIGIN, 12345, ROOT)
        signer = _signer()
        note = signed_checkpoint(cp, signer)
        assert note.startswith(f"{ORIGIN}\n12345\n{base64.b64encode(ROOT).decode()}\n\n\u2014 ")
        assert open_checkpoint(note, signer.verifier()) == cp

    def test_signer_must_be_named_after_origin(self) -> None:
        with pytest.raises(OriginMismatch):
            signed_checkpoint(Checkpoint(ORIGIN, 1, ROOT), _signer("other.example"))

    def test_verifier_must_be_named_after_origin(self) -> None:
        """A note the key did sign, but whose origin is another log, is refused."""
        other = _signer("other.example")
        note = sign_note(Checkpoint(ORIGIN, 1, ROOT).format(), other)
        with pytest.raises(OriginMismatch):
            open_checkpoint(note, other.verifier())

    def test_other_key_refused(self) -> None:
        note = signed_checkpoint(Checkpoint(ORIGIN, 1, ROOT), _signer())
        stranger = Signer.from_key(ORIGIN, Ed25519PrivateKey.generate())
        with pytest.raises(UnverifiedNote):
            open_checkpoint(note, stranger.verifier())

    def test_tampered_size_refused(self) -> None:
        signer = _signer()
        note = signed_checkpoint(Checkpoint(ORIGIN, 7, ROOT), signer).replace("\n7\n", "\n8\n")
        with pytest.raises(InvalidSignature):
            open_checkpoint(note, signer.verifier())


class TestTlogProof:
    def test_example_layout_round_trips(self) -> None:
        vector = _load("tlog-proof/c2sp-tlog-proof.json")
        raw = (VECTORS / "tlog-proof/c2sp-example.tlog-proof").read_text(encoding="utf-8")
        assert raw == vector["proof"]
        proof = TlogProof.parse(raw)
        assert proof.extra == base64.b64decode(vector["extra_b64"])
        assert proof.index == vector["index"]
        assert [base64.b64encode(h).decode() for h in proof.hashes] == vector[
            "inclusion_proof_b64"
        ]
        assert proof.checkpoint == vector["checkpoint"]
        body = checkpoint_body(proof.checkpoint)
        assert (body.origin, body.size) == (
            vector["checkpoint_origin"], vector["checkpoint_tree_size"]
        )
        assert base64.b64encode(body.root_hash).decode() == vector["checkpoint_root_hash_b64"]
        assert proof.format() == raw

    def test_signed_round_trip_without_extra(self) -> None:
        signer = _signer()
        note = signed_checkpoint(Checkpoint(ORIGIN, 3, ROOT), signer)
        proof = TlogProof(extra=None, index=0, hashes=(b"\x01" * 32, b"\x02" * 32), checkpoint=note)
        text = proof.format()
        assert text.splitlines()[:2] == [TLOG_PROOF_HEADER, "index 0"]
        parsed = TlogProof.parse(text)
        assert parsed == proof and parsed.format() == text
        assert parsed.open(signer.verifier()) == Checkpoint(ORIGIN, 3, ROOT)

    def test_empty_proof_for_single_leaf(self) -> None:
        note = signed_checkpoint(Checkpoint(ORIGIN, 1, ROOT), _signer())
        proof = TlogProof(extra=b"leaf\n", index=0, hashes=(), checkpoint=note)
        assert proof.format() == f"{TLOG_PROOF_HEADER}\nextra bGVhZgo=\nindex 0\n\n{note}"
        assert TlogProof.parse(proof.format()) == proof

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda t: t.replace(TLOG_PROOF_HEADER, "c2sp.org/tlog-proof@v2"),
            lambda t: t.replace("index 73894", "index 073894"),
            lambda t: t.replace("index 73894", "index -1"),
            lambda t: t.replace("index 73894", "index 109482"),  # not below tree size
            lambda t: t.replace("index 73894\n", ""),
            lambda t: t.replace("extra ", "extra  "),
            lambda t: t.replace("extra YWdl", "extra *Wdl"),
            lambda t: t.replace("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=", "gSKy"),
            lambda t: t.replace("=\n\nexample.com/fancylog", "=\nexample.com/fancylog"),
            lambda t: t.replace("\n109482\n", "\n0109482\n"),
            lambda t: t.replace("\nexample.com/fancylog\n109482", "\nexample.com/fancylog"),
        ],
    )
    def test_malformed_proofs_refused(self, mutate: Any) -> None:
        raw = (VECTORS / "tlog-proof/c2sp-example.tlog-proof").read_text(encoding="utf-8")
        with pytest.raises(MalformedProof):
            TlogProof.parse(mutate(raw))

    def test_errors_are_note_errors(self) -> None:
        for error in (MalformedCheckpoint, MalformedProof, OriginMismatch):
            assert issubclass(error, NoteError) and issubclass(error, ValueError)
