"""Signed notes: the C2SP and Go sumdb vectors, and the ways a note is refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.domain.note import (
    MAX_SIGNATURES,
    InvalidKey,
    InvalidSignature,
    MalformedNote,
    NoteError,
    Signer,
    UnverifiedNote,
    Verifier,
    is_valid_key_name,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "signed-note"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


C2SP = _load("c2sp-signed-note.json")
GO = _load("go-sumdb-note.json")


def _signer(name: str = "example.com/log") -> Signer:
    return Signer.from_key(name, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


class TestC2SPVectors:
    def test_example_verifies(self) -> None:
        """The spec's verifier key opens the spec's signed note."""
        example = C2SP["examples"][0]
        verifier = Verifier.parse(example["verifier_key"])
        assert verifier.format() == example["verifier_key"]
        note = open_note(example["signed_note"], [verifier])
        assert note.text == example["text"]
        assert [s.line() for s in note.signatures] == example["signature_lines"]
        assert note.unverified == ()

    def test_example_accepts_bytes(self) -> None:
        """A note may be handed over as its UTF-8 bytes."""
        example = C2SP["examples"][0]
        note = open_note(example["signed_note"].encode(), [Verifier.parse(example["verifier_key"])])
        assert note.text == example["text"]

    def test_opening_example_text_ends_at_last_blank_line(self) -> None:
        """The poem holds an empty line; the text runs to the last one."""
        example = C2SP["examples"][1]
        note = parse_note(example["signed_note"])
        assert note.text == example["text"]
        assert [s.line() for s in note.unverified] == example["signature_lines"]
        with pytest.raises(UnverifiedNote):
            open_note(example["signed_note"], [Verifier.parse(C2SP["examples"][0]["verifier_key"])])


class TestGoVectors:
    def test_signer_key_gives_the_verifier_key(self) -> None:
        """The Go private key parses, formats back, and names PeterNeumann's verifier."""
        signer = Signer.parse(GO["signer_key"])
        assert signer.format() == GO["signer_key"]
        assert signer.verifier().format() == GO["verifier_keys"]["PeterNeumann"]

    def test_signing_gives_the_vector_line(self) -> None:
        """Ed25519 is deterministic: signing the text gives the vector's note exactly."""
        signed = sign_note(GO["text"], Signer.parse(GO["signer_key"]))
        assert signed == GO["signed_note"]
        assert signed == GO["text"] + "\n" + GO["signature_lines"]["PeterNeumann"]

    def test_verifier_keys_round_trip(self) -> None:
        for name, vkey in GO["verifier_keys"].items():
            verifier = Verifier.parse(vkey)
            assert verifier.name == name and verifier.format() == vkey

    def test_one_signature_note_opens(self) -> None:
        peter = Verifier.parse(GO["verifier_keys"]["PeterNeumann"])
        note = open_note(GO["signed_note"], [peter])
        assert note.text == GO["text"]
        assert [s.name for s in note.signatures] == ["PeterNeumann"]

    def test_two_signature_note_opens(self) -> None:
        """Both signatures verify; with one key the other is unverified."""
        verifiers = [Verifier.parse(v) for v in GO["verifier_keys"].values()]
        note = open_note(GO["signed_note_two_signatures"], verifiers)
        assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
        enoch_only = open_note(GO["signed_note_two_signatures"], verifiers[1:])
        assert [s.name for s in enoch_only.signatures] == ["EnochRoot"]
        assert [s.line() for s in enoch_only.unverified] == [
            GO["signature_lines"]["PeterNeumann"]
        ]

    @pytest.mark.parametrize("case", GO["invalid_verifier_keys"], ids=lambda c: c["desc"])
    def test_invalid_verifier_keys_refused(self, case: dict[str, str]) -> None:
        with pytest.raises(InvalidKey):
            Verifier.parse(case["verifier_key"])


class TestKeys:
    def test_key_id_is_the_spec_hash(self) -> None:
        signer = _signer()
        assert signer.key_id == key_id(signer.name, signer.verifier().public_key)
        assert Verifier.parse(signer.verifier().format()) == signer.verifier()

    @pytest.mark.parametrize("name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb"])
    def test_bad_names_refused(self, name: str) -> None:
        assert not is_valid_key_name(name)
        with pytest.raises(InvalidKey):
            _signer(name)

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda v: v.replace("+c74f20a3+", "+c74f20a4+"),  # wrong id
            lambda v: v.replace("+c74f20a3+", "+C74F20A3+"),  # not lowercase hex
            lambda v: v.replace("+c74f20a3+", "+c74f20a+"),  # short id
            lambda v: v.replace("PeterNeumann", "Peter Neumann"),  # space in name
            lambda v: v.replace("PeterNeumann+", "+"),  # empty name
            lambda v: v + "!",  # not base64
            lambda v: v.rsplit("+", 1)[0],  # no key
            lambda v: " " + v,  # surrounding space
        ],
    )
    def test_malformed_verifier_keys_refused(self, mutate: Any) -> None:
        with pytest.raises(InvalidKey):
            Verifier.parse(mutate(GO["verifier_keys"]["PeterNeumann"]))

    def test_signer_with_wrong_id_refused(self) -> None:
        with pytest.raises(InvalidKey, match="id"):
            Signer.parse(GO["signer_key"].replace("+c74f20a3+", "+c74f20a4+"))

    def test_signer_repr_hides_the_key(self) -> None:
        assert "Ed25519PrivateKey" not in repr(_signer())


class TestOpen:
    def test_round_trip_and_unknown_key_ignored(self) -> None:
        """A signature by a key the reader does not know is kept aside, not checked."""
        ours, theirs = _signer("ours.example"), Signer.from_key(
            "theirs.example", Ed25519PrivateKey.generate()
        )
        signed = sign_note("hello\n", theirs, ours)
        note = open_note(signed, [ours.verifier()])
        assert note.text == "hello\n"
        assert [s.name for s in note.signatures] == ["ours.example"]
        assert [s.name for s in note.unverified] == ["theirs.example"]

    def test_same_name_other_id_is_unknown(self) -> None:
        """A key sharing only the name is an unknown key: ignored, so unverified."""
        impostor = Signer.from_key("example.com/log", Ed25519PrivateKey.generate())
        with pytest.raises(UnverifiedNote):
            open_note(sign_note("hello\n", impostor), [_signer().verifier()])

    def test_tampered_text_refused(self) -> None:
        signer = _signer()
        signed = sign_note("hello\n", signer).replace("hello", "hellO")
        with pytest.raises(InvalidSignature, match=r"example\.com/log"):
            open_note(signed, [signer.verifier()])

    def test_tampered_signature_refused(self) -> None:
        signer = _signer()
        text, _, line = sign_note("hello\n", signer).rpartition(" ")
        raw = bytearray(base64.b64decode(line))
        raw[-1] ^= 1
        with pytest.raises(InvalidSignature):
            open_note(f"{text} {base64.b64encode(bytes(raw)).decode()}\n", [signer.verifier()])

    def test_known_bad_signature_rejects_despite_good_one(self) -> None:
        good, bad = _signer("a.example"), _signer("b.example")
        signed = sign_note("hello\n", good)
        forged_line = sign_note("other\n", bad).split("\n\n")[1]
        with pytest.raises(InvalidSignature):
            open_note(signed + forged_line, [good.verifier(), bad.verifier()])

    def test_more_than_max_signatures_refused(self) -> None:
        signer = _signer()
        signed = sign_note("hello\n", signer)
        line = signed.split("\n\n")[1]
        assert open_note(signed + line * (MAX_SIGNATURES - 1), [signer.verifier()])
        with pytest.raises(MalformedNote, match="signatures"):
            open_note(signed + line * MAX_SIGNATURES, [signer.verifier()])

    @pytest.mark.parametrize(
        "note",
        [
            "hello\n\n\u2014 a.example AAAAAAA=",  # no final newline
            "hello\n\u2014 a.example AAAAAAA=\n",  # no blank line
            "hello\n\n",  # no signatures
            "hello\n\n- a.example AAAAAAA=\n",  # hyphen, not em dash
            "hello\n\n\u2014 a.example AAAA\n",  # signature shorter than 5 bytes
            "hello\n\n\u2014 a.example not*base64\n",
            "hello\n\n\u2014 a.example\n",
            "hel\tlo\n\n\u2014 a.example AAAAAAA=\n",  # control character
            "hel\ud800lo\n\n\u2014 a.example AAAAAAA=\n",  # not UTF-8
        ],
    )
    def test_malformed_notes_refused(self, note: str) -> None:
        with pytest.raises(MalformedNote):
            open_note(note, [_signer().verifier()])

    def test_invalid_utf8_bytes_refused(self) -> None:
        with pytest.raises(MalformedNote, match="UTF-8"):
            open_note(b"\xff\n\n\xe2\x80\x94 a.example AAAAAAA=\n", [])

    def test_sign_refuses_text_without_final_newline(self) -> None:
        with pytest.raises(MalformedNote, match="newline"):
            sign_note("hello", _signer())

    def test_sign_needs_a_signer(self) -> None:
        with pytest.raises(NoteError):
            sign_note("hello\n")

    def test_errors_are_value_errors(self) -> None:
        assert issubclass(NoteError, ValueError)
        for error in (InvalidKey, InvalidSignature, MalformedNote, UnverifiedNote):
            assert issubclass(error, NoteError)
