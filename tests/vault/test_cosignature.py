"""Ed25519 cosignature/v1: the C2SP and transparency-dev vectors, signing, verifying, quorum."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vault.domain.checkpoint import Checkpoint, MalformedCheckpoint, signed_checkpoint
from vault.domain.cosignature import (
    COSIGNATURE_HEADER,
    MAX_TIMESTAMP,
    CosignatureError,
    CosignerKey,
    CosignerVerifier,
    InvalidCosignature,
    MalformedCosignature,
    MissingCosignature,
    check_quorum,
    cosign,
    cosignature_timestamp,
    cosigned_message,
    cosigner_key_id,
    verify_cosignature,
)
from vault.domain.note import InvalidKey, MalformedNote, Signer, Verifier, key_id, sign_note

VECTORS = Path(__file__).parents[1] / "vectors" / "cosignature"
ORIGIN = "document-vault.local/test"
T = 1_700_000_000


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


C2SP = _load("c2sp-cosignature.json")
FORMATS = _load("formats-cosigv1.json")
WITNESS = _load("witness-monkeys.json")


def _seed(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


LOG = Signer.from_key(ORIGIN, _seed(1))
W1 = CosignerKey.from_key("witness.example/w1", _seed(2))
W2 = CosignerKey.from_key("witness.example/w2", _seed(3))
W3 = CosignerKey.from_key("witness.example/w3", _seed(4))
TEXT = Checkpoint(ORIGIN, 7, bytes(range(32))).format()


def _log_note(text: str = TEXT) -> str:
    return sign_note(text, LOG)


def _payload(line: str) -> bytes:
    return base64.b64decode(line.rstrip("\n").rsplit(" ", 1)[1])


def _line(name: str, payload: bytes) -> str:
    return f"\u2014 {name} {base64.b64encode(payload).decode()}\n"


# ------------------------------------------------------------------ keys


def test_key_id_is_sha256_of_name_newline_0x04_key() -> None:
    raw = W1.verifier().public_key
    digest = hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()
    assert cosigner_key_id("witness.example/w1", raw) == int.from_bytes(digest[:4], "big")
    assert W1.key_id == cosigner_key_id(W1.name, raw)
    assert W1.key_id != key_id(W1.name, raw)  # not the plain Ed25519 (0x01) id


def test_native_0x04_verifier_key_from_transparency_dev_parses_and_formats_back() -> None:
    vkey = FORMATS["verifier_keys"][1]["vkey"]
    verifier = CosignerVerifier.parse(vkey)
    assert verifier.name == "remora.n621.de"
    assert verifier.key_id == 0xDA77ADE7
    assert verifier.format() == vkey
    assert cosigner_key_id(verifier.name, verifier.public_key) == verifier.key_id


@pytest.mark.parametrize(
    "case", [c for c in FORMATS["verifier_keys"] if c.get("wantErr")], ids=lambda c: c["desc"]
)
def test_transparency_dev_bad_verifier_keys_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidKey):
        CosignerVerifier.parse(case["vkey"])


def test_a_0x01_key_is_no_cosigner_key_but_converts() -> None:
    vkey = FORMATS["verifier_keys"][0]["vkey"]
    with pytest.raises(InvalidKey, match="signature type 0x01"):
        CosignerVerifier.parse(vkey)
    plain = Verifier.parse(vkey)
    converted = CosignerVerifier.from_note_verifier(plain)
    assert converted.public_key == plain.public_key
    assert converted.key_id == cosigner_key_id("TEST", plain.public_key) != plain.key_id
    assert converted.format().startswith("TEST+")
    assert CosignerVerifier.parse(converted.format()) == converted


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        (" " + W1.verifier().format(), "not <name>"),
        ("a+b", "not <name>"),
        ("bad name+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "name"),
        ("w+0000000G+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "8 lowercase hex"),
        ("w+00000000+" + base64.b64encode(b"\x04" + bytes(31)).decode(), "wrong length"),
        ("w+00000000+" + base64.b64encode(b"\x06" + bytes(32)).decode(), "type 0x06"),
        ("w+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "does not match"),
    ],
)
def test_verifier_key_refusals(vkey: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        CosignerVerifier.parse(vkey)


def test_go_0x01_signer_key_is_read_as_a_cosigner_key() -> None:
    key = CosignerKey.parse(WITNESS["witness"]["skey"])
    assert key.name == "witness"
    expected = CosignerVerifier.from_note_verifier(Verifier.parse(WITNESS["witness"]["vkey"]))
    assert key.verifier() == expected
    assert key.key_id == expected.key_id
    written = key.format()
    assert written.startswith(f"PRIVATE+KEY+witness+{key.key_id:08x}+B")  # 0x04 → "B..."
    assert CosignerKey.parse(written).verifier() == expected


@pytest.mark.parametrize(
    ("skey", "message"),
    [
        ("witness+f13a86db+AaLa", "PRIVATE\\+KEY\\+"),
        ("PRIVATE+KEY+witness+f13a86db", "PRIVATE\\+KEY\\+<name>"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x06" + bytes(32)).decode(), "0x06"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x04" + bytes(33)).decode(), "length"),
        ("PRIVATE+KEY+w+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(), "match"),
        (WITNESS["witness"]["skey"].replace("f13a86db", "f13a86dc"), "match"),
    ],
)
def test_signer_key_refusals(skey: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        CosignerKey.parse(skey)


def test_generate_and_names() -> None:
    key = CosignerKey.generate("witness.example/fresh")
    assert CosignerKey.parse(key.format()).verifier() == key.verifier()
    assert "PRIVATE" not in repr(key)
    for bad in ("", "a+b", "a b"):
        with pytest.raises(InvalidKey):
            CosignerKey.generate(bad)
        with pytest.raises(InvalidKey):
            CosignerVerifier.from_key(bad, _seed(9).public_key())


# --------------------------------------------------------------- signing


def test_signed_message_is_the_c2sp_example_byte_for_byte() -> None:
    case = C2SP["signed_message"]
    got = cosigned_message(case["text"], case["timestamp"])
    assert got == case["message"].encode()
    assert got.startswith(COSIGNATURE_HEADER.encode() + b"\ntime 1679315147\n")


def test_signed_message_refuses_bad_timestamps_and_non_checkpoints() -> None:
    assert cosigned_message(TEXT, 0).startswith(b"cosignature/v1\ntime 0\n")
    assert b"\ntime 9223372036854775807\n" in cosigned_message(TEXT, MAX_TIMESTAMP)
    for bad in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(CosignatureError, match="timestamp"):
            cosigned_message(TEXT, bad)
    with pytest.raises(MalformedCheckpoint):
        cosigned_message("just one line\n", T)


def test_cosign_line_layout_and_raw_ed25519_signature() -> None:
    line = cosign(TEXT, W1, T)
    assert line.startswith("\u2014 witness.example/w1 ") and line.endswith("\n")
    raw = _payload(line)
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[:4], "big") == W1.key_id
    assert int.from_bytes(raw[4:12], "big") == T
    message = f"cosignature/v1\ntime {T}\n{TEXT}".encode()
    Ed25519PublicKey.from_public_bytes(W1.verifier().public_key).verify(raw[12:], message)
    assert cosign(TEXT, W1, T) == line  # Ed25519 is deterministic
    assert cosign(TEXT, W1, T + 1) != line


def test_extension_lines_are_signed() -> None:
    text = Checkpoint(ORIGIN, 7, bytes(range(32)), ("ext one",)).format()
    note = _log_note(text) + cosign(text, W1, T)
    assert verify_cosignature(note, W1.verifier()) == T
    tampered = note.replace("ext one", "ext two")
    with pytest.raises(InvalidCosignature):
        verify_cosignature(tampered, W1.verifier())


# -------------------------------------------------------------- timestamps


def test_c2sp_example_cosignature_carries_the_example_time() -> None:
    case = C2SP["cosigned_checkpoint"]
    b64 = case["witness_line"].rstrip("\n").rsplit(" ", 1)[1]
    assert cosignature_timestamp(b64) == C2SP["signed_message"]["timestamp"]
    assert case["note"].endswith(case["witness_line"])


@pytest.mark.parametrize("case", FORMATS["timestamps"], ids=lambda c: c["desc"])
def test_transparency_dev_timestamp_vectors(case: dict[str, Any]) -> None:
    if case.get("wantErr"):
        with pytest.raises(MalformedCosignature):
            cosignature_timestamp(case["base64"])
    else:
        assert cosignature_timestamp(case["base64"]) == case["unix"]


def test_timestamp_beyond_2_63_is_malformed() -> None:
    # The first line of the tlog-witness example response has illustrative bytes
    # whose timestamp field is above 2**63 - 1.
    first = C2SP["add_checkpoint_response"]["body"].split("\n")[0]
    with pytest.raises(MalformedCosignature, match="2\\*\\*63"):
        cosignature_timestamp(first.rsplit(" ", 1)[1])


# ------------------------------------------------------------- verifying


def test_verify_round_trip_among_other_lines() -> None:
    note = _log_note() + cosign(TEXT, W2, T + 5) + cosign(TEXT, W1, T)
    assert verify_cosignature(note, W1.verifier()) == T
    assert verify_cosignature(note.encode(), W2.verifier()) == T + 5


def test_missing_cosignature() -> None:
    note = _log_note() + cosign(TEXT, W2, T)
    with pytest.raises(MissingCosignature, match=r"witness\.example/w1"):
        verify_cosignature(note, W1.verifier())
    # Same name, another key: its id differs, so the line is someone else's.
    impostor = CosignerKey.from_key(W1.name, _seed(99))
    with pytest.raises(MissingCosignature):
        verify_cosignature(_log_note() + cosign(TEXT, impostor, T), W1.verifier())
    # A plain Ed25519 note signature by the same key has the 0x01 id: not a cosignature.
    plain = Signer.from_key(W1.name, W1.private_key)
    with pytest.raises(MissingCosignature):
        verify_cosignature(sign_note(TEXT, LOG, plain), W1.verifier())


def test_bad_cosignatures_by_the_known_key_are_invalid() -> None:
    raw = _payload(cosign(TEXT, W1, T))
    flipped_sig = raw[:-1] + bytes([raw[-1] ^ 1])
    other_time = raw[:4] + (T + 1).to_bytes(8, "big") + raw[12:]
    huge_time = raw[:4] + (MAX_TIMESTAMP + 1).to_bytes(8, "big") + raw[12:]
    for payload, match in [
        (flipped_sig, "invalid cosignature"),
        (other_time, "invalid cosignature"),
        (raw[:-1], "wrong length"),
        (raw + b"\x00", "wrong length"),
        (huge_time, "2\\*\\*63"),
    ]:
        note = _log_note() + _line(W1.name, payload)
        with pytest.raises(InvalidCosignature, match=match):
            verify_cosignature(note, W1.verifier())
    other_text = TEXT.replace("\n7\n", "\n8\n")
    with pytest.raises(InvalidCosignature):
        verify_cosignature(_log_note(other_text) + cosign(TEXT, W1, T), W1.verifier())


def test_unparseable_notes_are_refused() -> None:
    with pytest.raises(MalformedNote):
        verify_cosignature(TEXT, W1.verifier())
    not_a_checkpoint = sign_note("hello\n", LOG)
    with pytest.raises(MalformedCheckpoint):
        verify_cosignature(not_a_checkpoint, W1.verifier())
    with pytest.raises(MalformedCheckpoint):
        cosign("hello\n", W1, T)


# ----------------------------------------------------------------- quorum


def test_quorum_counts_valid_cosignatures_and_ignores_unknown_lines() -> None:
    stranger = CosignerKey.from_key("stranger.example", _seed(50))
    note = (
        signed_checkpoint(Checkpoint.parse(TEXT), LOG)
        + cosign(TEXT, W3, T + 3)
        + cosign(TEXT, stranger, T)
        + cosign(TEXT, W1, T + 1)
    )
    witnesses = [W1.verifier(), W2.verifier(), W3.verifier()]
    two = check_quorum(note, witnesses, 2)
    assert two.met
    assert [(c.witness.name, c.timestamp) for c in two.cosigned] == [
        (W1.name, T + 1),
        (W3.name, T + 3),
    ]
    assert two.missing == (W2.verifier(),)
    assert two.checkpoint == Checkpoint.parse(TEXT)
    assert not check_quorum(note, witnesses, 3).met
    assert not check_quorum(_log_note(), witnesses, 1).met


def test_quorum_rejects_a_note_with_a_bad_known_cosignature() -> None:
    raw = _payload(cosign(TEXT, W2, T))
    note = _log_note() + cosign(TEXT, W1, T) + _line(W2.name, raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(InvalidCosignature):
        check_quorum(note, [W1.verifier(), W2.verifier()], 1)
    assert check_quorum(note, [W1.verifier()], 1).met  # W2 unknown here: ignored


def test_quorum_argument_refusals() -> None:
    note = _log_note() + cosign(TEXT, W1, T)
    witnesses = [W1.verifier(), W2.verifier()]
    for quorum in (0, 3):
        with pytest.raises(ValueError, match="quorum"):
            check_quorum(note, witnesses, quorum)
    with pytest.raises(InvalidKey, match="share name and id"):
        check_quorum(note, [W1.verifier(), W1.verifier()], 1)
    same = W1.verifier()
    with pytest.raises(InvalidKey, match="share name and id"):
        check_quorum(note, [same, same], 2)
    clash = CosignerVerifier(W1.name, W1.key_id, bytes(32))
    with pytest.raises(InvalidKey, match="share name and id"):
        check_quorum(note, [W1.verifier(), clash], 1)
