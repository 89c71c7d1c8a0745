"""``vault receipt verify``'s cosignature and anchor checks (vault.offline_anchors).

Receipts are built by hand from real objects: a real tree (the in-memory
``Ledger`` of tests/vault/test_offline.py), a log ``Signer`` signing
checkpoints at several sizes, two witnesses' real cosignatures, real RFC 3161
tokens from the local openssl TSA of tests/tsa.py and, for evm anchors, real
transactions on a local ganache chain (tests/ganache.py).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ganache import Ganache, running_ganache
from tests.tsa import LocalTsa, local_tsa, make_pki
from tests.vault.test_offline import ORIGIN, Ledger, b64, grown, new_signer
from vault.adapters.evm import Confirmed, EvmClient
from vault.adapters.timestamps import TimestampClient
from vault.domain.checkpoint import Checkpoint, TlogProof, signed_checkpoint
from vault.domain.cosignature import CosignerKey, cosign
from vault.domain.leaf import Leaf
from vault.domain.merkle import consistency_proof, inclusion_proof, root_at
from vault.domain.note import Signer, sign_note
from vault.domain.timestamp import verify_token
from vault.offline import INVALID, UNUSABLE, CheckFailed, verify_receipt
from vault.offline_anchors import (
    ReceiptOptions,
    anchored_digest,
    load_options,
    parse_anchors,
)

LEAF = 2
"""The receipt's leaf; the receipt is at size 6, anchors at 4, 6 and 9."""
RECEIPT_SIZE = 6
TX_HASH = "0x" + "ab" * 32
WITNESS_TIME = 1_767_225_600


class History:
    """One log of nine leaves, its checkpoints at any size, and receipts for leaf 2."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.ledger: Ledger = grown(signer, [f"document {i}".encode() for i in range(9)])

    def root(self, size: int) -> bytes:
        return root_at(size, self.ledger.get_node)

    def checkpoint(self, size: int, signer: Signer | None = None) -> str:
        return signed_checkpoint(Checkpoint(ORIGIN, size, self.root(size)), signer or self.signer)

    def consistency(self, size1: int, size2: int) -> dict[str, Any]:
        low, high = sorted((size1, size2))
        hashes = consistency_proof(low, high, self.ledger.get_node) if low < high else []
        return {"from": low, "to": high, "hashes": [b64(h) for h in hashes]}

    def receipt(self, checkpoint: str | None = None, **fields: Any) -> dict[str, Any]:
        """The receipt route's JSON for leaf 2 at size 6, its checkpoint as given."""
        note = checkpoint or self.checkpoint(RECEIPT_SIZE)
        leaf = self.ledger.leaves[LEAF]
        proof = inclusion_proof(LEAF, RECEIPT_SIZE, self.ledger.get_node)
        return {
            "document_id": str(Leaf.parse(leaf).document_id),
            "leaf": leaf.decode(),
            "leaf_index": LEAF,
            "tree_size": RECEIPT_SIZE,
            "inclusion_proof": [b64(h) for h in proof],
            "checkpoint": note,
            "tlog_proof": TlogProof(extra=leaf, index=LEAF, hashes=proof, checkpoint=note).format(),
            **fields,
        }

    def evm_anchor(self, size: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": "evm", "checkpoint": self.checkpoint(size),
            "consistency": self.consistency(RECEIPT_SIZE, size),
            "chain_id": 1337, "tx_hash": TX_HASH, "block_number": 7, **fields,
        }


def cosigned(note: str, *witnesses: CosignerKey) -> str:
    """The signed checkpoint ``note`` with each witness's cosignature line appended."""
    body = note[: note.rfind("\n\n") + 1]
    return note + "".join(cosign(body, w, WITNESS_TIME + i) for i, w in enumerate(witnesses))


def check(receipt: dict[str, Any], signer: Signer, options: ReceiptOptions | None = None) -> str:
    return verify_receipt(json.dumps(receipt), signer.verifier(), options=options)


def refused(
    receipt: dict[str, Any], signer: Signer, options: ReceiptOptions | None = None
) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        check(receipt, signer, options)
    return caught.value


@pytest.fixture
def signer() -> Signer:
    return new_signer()


@pytest.fixture
def history(signer: Signer) -> History:
    return History(signer)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


def token_for(tsa: LocalTsa, text: str) -> str:
    """A real token from the local TSA over SHA-256 of ``text``, base64."""
    with TimestampClient(tsa.url, certs=[tsa.pki.ca_pem]) as client:
        return b64(client.timestamp(anchored_digest(text)).der)


def rfc3161_anchor(history: History, tsa: LocalTsa, size: int, **fields: Any) -> dict[str, Any]:
    note = history.checkpoint(size)
    return {
        "type": "rfc3161", "checkpoint": note,
        "consistency": history.consistency(RECEIPT_SIZE, size),
        "token": token_for(tsa, note), **fields,
    }


def certs(*pems: bytes) -> ReceiptOptions:
    return ReceiptOptions(tsa_certs=pems)


# ----------------------------------------------------------- without anchors


def test_no_anchors_and_no_options_keep_the_line(history: History, signer: Signer) -> None:
    """An empty or absent ``anchors``, and no options: the line vault.offline always gave."""
    plain = history.receipt()
    line = check(plain, signer)
    assert line.startswith(f"ok: registered leaf of document {plain['document_id']} is entry 2")
    assert line.endswith(f"of {ORIGIN} at size 6")
    assert check(history.receipt(anchors=[]), signer) == line
    assert check(history.receipt(anchors=[]), signer, ReceiptOptions()) == line


def test_asking_an_authority_the_receipt_has_no_anchor_for(
    history: History, signer: Signer, tsa: LocalTsa
) -> None:
    """--tsa-cert without an rfc3161 anchor, --rpc without an evm one: exit 1."""
    bare = history.receipt(anchors=[history.evm_anchor(9)])
    failed = refused(bare, signer, certs(tsa.pki.ca_pem))
    assert (failed.code, failed.line) == (
        INVALID, "invalid: no rfc3161 anchor to check (--tsa-cert given)"
    )
    failed = refused(history.receipt(), signer, ReceiptOptions(rpc="http://127.0.0.1:1"))
    assert (failed.code, failed.line) == (INVALID, "invalid: no evm anchor to check (--rpc given)")


# ------------------------------------------------------------------ rfc3161


def test_anchors_without_their_authorities(
    history: History, signer: Signer, tsa: LocalTsa
) -> None:
    """Signature and consistency are still checked; the line says whom nobody asked."""
    receipt = history.receipt(
        anchors=[rfc3161_anchor(history, tsa, 4), history.evm_anchor(9)]
    )
    line = check(receipt, signer)
    assert line.endswith(
        f" at size 6; 2 anchors: rfc3161 (TSA not asked: no --tsa-cert);"
        f" evm chain 1337 tx {TX_HASH} (chain not asked: no --rpc)"
    )


@pytest.mark.parametrize("size", [4, 6, 9], ids=["older", "same size", "newer"])
def test_a_token_checked_through_the_tsa_root(
    history: History, signer: Signer, tsa: LocalTsa, size: int
) -> None:
    anchor = rfc3161_anchor(history, tsa, size)
    when = verify_token(
        base64.b64decode(anchor["token"]), anchored_digest(anchor["checkpoint"]), [tsa.pki.ca_pem]
    )
    receipt = history.receipt(anchors=[anchor])
    for given in ([tsa.pki.ca_pem], [tsa.pki.tsa_pem, tsa.pki.ca_pem]):
        line = check(receipt, signer, certs(*given))
        assert line.endswith(f"; 1 anchor: rfc3161 at {when:%Y-%m-%dT%H:%M:%S}Z")


def test_tsa_certificates_from_files(history: History, tsa: LocalTsa, signer: Signer) -> None:
    """load_options reads --tsa-cert files; a file with no root is unusable (exit 2)."""
    options = load_options(tsa_certs=[tsa.pki.ca_path])
    receipt = history.receipt(anchors=[rfc3161_anchor(history, tsa, 9)])
    assert "; 1 anchor: rfc3161 at " in check(receipt, signer, options)
    with pytest.raises(CheckFailed) as caught:
        load_options(tsa_certs=[tsa.pki.tsa_path])
    assert (caught.value.code, caught.value.line) == (
        UNUSABLE, "vault: --tsa-cert: the TSA certificates include no self-signed root"
    )


def _tampered_token(anchor: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(anchor["token"]))
    raw[len(raw) // 2] ^= 0x01
    anchor["token"] = b64(bytes(raw))


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("tampered token", "invalid: anchors[0] rfc3161 token: "),
        ("token over another digest",
         "invalid: anchors[0] rfc3161 token: the token is over another digest"),
        ("another root", "invalid: anchors[0] rfc3161 token: the token does not verify"),
        ("another TSA of the same root",
         "invalid: anchors[0] rfc3161 token: the token does not verify"),
    ],
)  # fmt: skip
def test_a_token_that_does_not_hold(
    history: History, signer: Signer, tsa: LocalTsa, tmp_path: Path, case: str, line: str
) -> None:
    anchor = rfc3161_anchor(history, tsa, 9)
    given = [tsa.pki.ca_pem]
    if case == "tampered token":
        _tampered_token(anchor)
    elif case == "token over another digest":
        anchor["token"] = token_for(tsa, history.checkpoint(8))
    elif case == "another root":
        given = [make_pki(tmp_path / "other", "Other").ca_pem]
    else:
        sibling = make_pki(tmp_path / "sibling", "Sibling", issuer=tsa.pki)
        given = [sibling.tsa_pem, tsa.pki.ca_pem]  # pins the sibling TSA
    failed = refused(history.receipt(anchors=[anchor]), signer, certs(*given))
    assert failed.code == INVALID
    assert failed.line.startswith(line), failed.line


# ------------------------------------------------------- the anchors' history


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("another key", f"invalid: anchors[0] checkpoint has no signature by the key {ORIGIN}"),
        ("same name, another key",
         "invalid: anchors[0] checkpoint signature does not verify with the key"),
        ("another origin", f"invalid: anchors[0] checkpoint origin is not the key's name {ORIGIN}"),
        ("flipped byte", "invalid: anchors[0] consistency proof: calculated "),
        ("swapped from and to",
         "invalid: anchors[0] consistency is from size 9 to 6, not 6 to 9"),
        ("other sizes", "invalid: anchors[0] consistency is from size 5 to 9, not 6 to 9"),
        ("below the leaf", "invalid: anchors[0] checkpoint size 1 does not cover leaf 2"),
        ("at the leaf's index", "invalid: anchors[0] checkpoint size 2 does not cover leaf 2"),
        ("a fork at the same size", "invalid: anchors[0] consistency proof: calculated root "),
        ("a fork further on", "invalid: anchors[0] consistency proof: calculated "),
        ("hashes for equal sizes",
         "invalid: anchors[0] consistency proof: sizes are equal, but the proof is not empty"),
    ],
)  # fmt: skip
def test_an_anchor_that_is_not_this_history(
    history: History, signer: Signer, case: str, line: str
) -> None:
    anchor = history.evm_anchor(9)
    if case == "another key":
        anchor["checkpoint"] = history.checkpoint(9, new_signer(ORIGIN))
    elif case == "same name, another key":
        genuine = history.checkpoint(9)
        forged = history.checkpoint(9, new_signer(ORIGIN))
        key_id = base64.b64decode(genuine.split(" ")[-1])[:4]
        signature = base64.b64decode(forged.split(" ")[-1])[4:]
        anchor["checkpoint"] = (
            genuine[: genuine.rfind("\n\n") + 2] + f"— {ORIGIN} {b64(key_id + signature)}\n"
        )
    elif case == "another origin":
        other = Checkpoint("other.example/log", 9, history.root(9))
        anchor["checkpoint"] = sign_note(other.format(), signer)
    elif case == "flipped byte":
        first = bytearray(base64.b64decode(anchor["consistency"]["hashes"][0]))
        first[0] ^= 0x80
        anchor["consistency"]["hashes"][0] = b64(bytes(first))
    elif case == "swapped from and to":
        anchor["consistency"].update({"from": 9, "to": 6})
    elif case == "other sizes":
        anchor["consistency"] = history.consistency(5, 9)
    elif case in ("below the leaf", "at the leaf's index"):
        anchor = history.evm_anchor(2 if case == "at the leaf's index" else 1)
    elif case == "a fork at the same size":
        fork = grown(signer, [f"fork {i}".encode() for i in range(6)])
        anchor = history.evm_anchor(6, checkpoint=fork.checkpoint())
    elif case == "a fork further on":
        fork = grown(signer, [f"fork {i}".encode() for i in range(9)])
        anchor["checkpoint"] = fork.checkpoint()
    else:
        anchor = history.evm_anchor(6)
        anchor["consistency"]["hashes"] = history.consistency(4, 6)["hashes"]
    failed = refused(history.receipt(anchors=[anchor]), signer)
    assert failed.code == INVALID
    assert failed.line.startswith(line), failed.line


def test_the_second_anchor_is_named(history: History, signer: Signer) -> None:
    bad = history.evm_anchor(8, consistency=history.consistency(6, 9))
    failed = refused(history.receipt(anchors=[history.evm_anchor(9), bad]), signer)
    assert failed.line == "invalid: anchors[1] consistency is from size 6 to 9, not 6 to 8"


# ------------------------------------------------------- malformed anchors


def _evm(**fields: Any) -> dict[str, Any]:
    anchor: dict[str, Any] = {
        "type": "evm", "checkpoint": "x", "consistency": {"from": 1, "to": 2, "hashes": []},
        "chain_id": 1, "tx_hash": TX_HASH, "block_number": 0,
    }
    anchor.update(fields)
    return {k: v for k, v in anchor.items() if v is not None}


MALFORMED = [
    ({"anchors": {}}, "receipt field 'anchors' is not a list"),
    ({"anchors": None}, "receipt field 'anchors' is not a list"),
    ([[]], "anchors[0] is not a JSON object"),
    ([{"checkpoint": "x"}], "anchors[0] has no string field 'type'"),
    ([_evm(type="opentimestamps")],
     "anchors[0] field 'type' is 'opentimestamps', not one of 'rfc3161' or 'evm'"),
    ([_evm(), _evm(block_number=None)], "anchors[1] has no field 'block_number'"),
    ([_evm(token="AAAA")], "anchors[0] has unknown field 'token'"),
    ([_evm(chain_id=True)], "anchors[0] field 'chain_id' is not an integer"),
    ([_evm(chain_id="1337")], "anchors[0] field 'chain_id' is not an integer"),
    ([_evm(chain_id=0)], "anchors[0] field 'chain_id' is not a positive integer"),
    ([_evm(block_number=-1)], "anchors[0] field 'block_number' is negative"),
    ([_evm(tx_hash="0x1234")], "anchors[0] field 'tx_hash' is not 0x and 64 hex digits"),
    ([_evm(checkpoint=7)], "anchors[0] field 'checkpoint' is not a string"),
    ([_evm(consistency=[])], "anchors[0] field 'consistency' is not a JSON object"),
    ([_evm(consistency={"from": 1, "to": 2, "hashes": "AAAA"})],
     "anchors[0] field 'consistency' field 'hashes' is not a list"),
    ([_evm(consistency={"from": 1, "to": 2})],
     "anchors[0] field 'consistency' has no field 'hashes'"),
    ([_evm(consistency={"from": 1, "to": 2, "hashes": [], "size": 2})],
     "anchors[0] field 'consistency' has unknown field 'size'"),
    ([_evm(consistency={"from": 1.0, "to": 2, "hashes": []})],
     "anchors[0] field 'consistency' field 'from' is not an integer"),
    ([_evm(consistency={"from": 1, "to": 2, "hashes": ["AAAA"]})],
     "anchors[0] field 'consistency' hashes[0] is not base64 of 32 bytes"),
    ([{"type": "rfc3161", "checkpoint": "x", "consistency": {"from": 1, "to": 2, "hashes": []},
       "token": "not base64!"}], "anchors[0] field 'token' is not base64"),
    ([{"type": "rfc3161", "checkpoint": "x", "consistency": {"from": 1, "to": 2, "hashes": []},
       "token": ""}], "anchors[0] field 'token' is not canonical base64 of some bytes"),
]


@pytest.mark.parametrize(("anchors", "reason"), MALFORMED)
def test_malformed_anchors_are_invalid(anchors: Any, reason: str) -> None:
    """Malformed anchors make the receipt invalid (exit 1), naming the index and field."""
    raw = anchors["anchors"] if isinstance(anchors, dict) else anchors
    with pytest.raises(CheckFailed) as caught:
        parse_anchors(raw)
    assert (caught.value.code, caught.value.line) == (INVALID, f"invalid: {reason}")


def test_an_anchor_checkpoint_that_is_not_a_note(history: History, signer: Signer) -> None:
    failed = refused(history.receipt(anchors=[history.evm_anchor(9, checkpoint="x\n")]), signer)
    assert failed.code == INVALID
    assert failed.line.startswith("invalid: anchors[0] checkpoint is not a signed checkpoint: ")


# ------------------------------------------------------------ cosignatures


@pytest.fixture
def witnesses() -> tuple[CosignerKey, CosignerKey]:
    return CosignerKey.generate("witness-one.example"), CosignerKey.generate("witness-two.example")


def _options(*keys: CosignerKey, quorum: int | None = None) -> ReceiptOptions:
    return load_options(witnesses=[k.verifier().format() for k in keys], quorum=quorum)


def test_a_quorum_of_witnesses(
    history: History, signer: Signer, witnesses: tuple[CosignerKey, CosignerKey]
) -> None:
    one, two = witnesses
    stranger = CosignerKey.generate("someone-else.example")
    note = cosigned(history.checkpoint(RECEIPT_SIZE), one, stranger, two)
    receipt = history.receipt(note)
    plain = check(history.receipt(), signer)
    assert check(receipt, signer) == plain  # lines nobody asked about are ignored
    assert check(receipt, signer, _options(one, two)) == (
        f"{plain}; cosigned by witness-one.example, witness-two.example (quorum 2 of 2)"
    )
    only_one = history.receipt(cosigned(history.checkpoint(RECEIPT_SIZE), two))
    assert check(only_one, signer, _options(one, two, quorum=1)) == (
        f"{plain}; cosigned by witness-two.example (quorum 1 of 2)"
    )
    failed = refused(only_one, signer, _options(one, two))
    assert (failed.code, failed.line) == (
        INVALID,
        "invalid: cosignature quorum not met: 1 of 2 witnesses cosigned, 2 needed;"
        f" missing witness-one.example+{one.key_id:08x}",
    )


@pytest.mark.parametrize("forgery", ["flipped signature", "another note's cosignature",
                                     "another key under the name"])
def test_a_forged_cosignature_fails(
    history: History, signer: Signer, witnesses: tuple[CosignerKey, CosignerKey], forgery: str
) -> None:
    one, two = witnesses
    note = cosigned(history.checkpoint(RECEIPT_SIZE), one)
    if forgery == "flipped signature":
        prefix, _, payload = note.rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(payload))
        raw[-1] ^= 0x01
        note = f"{prefix} {b64(bytes(raw))}\n"
    else:
        other_body = Checkpoint(ORIGIN, 9, history.root(9)).format()
        body = note[: note.rfind("\n\n") + 1]
        impostor = CosignerKey(name=two.name, key_id=two.key_id, private_key=one.private_key)
        line = (cosign(other_body, two, WITNESS_TIME) if forgery == "another note's cosignature"
                else cosign(body, impostor, WITNESS_TIME))
        note += line
    failed = refused(history.receipt(note), signer, _options(one, two, quorum=1))
    assert failed.code == INVALID
    key = one if forgery == "flipped signature" else two
    label = f"{key.name}+{key.key_id:08x}"
    assert failed.line == f"invalid: cosignature: invalid cosignature by {label}"


@pytest.mark.parametrize(
    ("make", "line"),
    [
        (lambda k: load_options(witnesses=[k[0], k[1]], quorum=0),
         "vault: --quorum 0 is not between 1 and 2 (the witnesses given)"),
        (lambda k: load_options(witnesses=[k[0], k[1]], quorum=3),
         "vault: --quorum 3 is not between 1 and 2 (the witnesses given)"),
        (lambda k: load_options(quorum=1), "vault: --quorum needs at least one --witness"),
        (lambda k: load_options(witnesses=[k[0], k[0]]),
         "vault: --witness: the same witness key is given twice"),
        (lambda k: load_options(witnesses=["nope"]),
         "vault: --witness is neither a cosigner key nor a file: "),
        (lambda k: load_options(confirmations=2), "vault: --confirmations needs --rpc"),
        (lambda k: load_options(rpc="ftp://chain"),
         "vault: --rpc 'ftp://chain' is not an http(s) URL"),
        (lambda k: load_options(tsa_certs=[Path("/nonexistent/ca.pem")]),
         "vault: cannot read TSA certificate /nonexistent/ca.pem: "),
    ],
)  # fmt: skip
def test_unusable_options_exit_2(
    witnesses: tuple[CosignerKey, CosignerKey], make: Any, line: str
) -> None:
    keys = [w.verifier().format() for w in witnesses]
    with pytest.raises(CheckFailed) as caught:
        make(keys)
    assert caught.value.code == UNUSABLE
    assert caught.value.line.startswith(line), caught.value.line


def test_a_witness_key_file_and_everything_at_once(
    history: History, signer: Signer, tsa: LocalTsa, tmp_path: Path,
    witnesses: tuple[CosignerKey, CosignerKey],
) -> None:
    one, two = witnesses
    key_file = tmp_path / "one.vkey"
    key_file.write_text(one.verifier().format() + "\n")
    receipt = history.receipt(
        cosigned(history.checkpoint(RECEIPT_SIZE), one, two),
        anchors=[rfc3161_anchor(history, tsa, 4), rfc3161_anchor(history, tsa, 9)],
    )
    options = load_options(
        tsa_certs=[tsa.pki.ca_path], witnesses=[str(key_file), two.verifier().format()]
    )
    line = check(receipt, signer, options)
    assert "; cosigned by witness-one.example, witness-two.example (quorum 2 of 2); 2 anchors:" \
        " rfc3161 at " in line
    assert line.count("rfc3161 at ") == 2
    tampered = copy.deepcopy(receipt)
    _tampered_token(tampered["anchors"][1])
    assert refused(tampered, signer, options).line.startswith("invalid: anchors[1] rfc3161 token")


# --------------------------------------------------------------------- evm


def test_a_chain_that_cannot_be_asked_is_unusable(history: History, signer: Signer) -> None:
    """No node at --rpc: exit 2, the anchor and the URL named."""
    receipt = history.receipt(anchors=[history.evm_anchor(9)])
    failed = refused(receipt, signer, load_options(rpc="http://127.0.0.1:9"))
    assert failed.code == UNUSABLE
    assert failed.line.startswith(
        "vault: anchors[0] evm: cannot reach the chain at http://127.0.0.1:9"
    ), failed.line


@pytest.fixture(scope="module")
def chain() -> Iterator[Ganache]:
    with running_ganache() as running:
        yield running


def chain_anchor(history: History, chain: Ganache, size: int, **fields: Any) -> dict[str, Any]:
    """A real evm anchor of the checkpoint at ``size``: a mined transaction on ``chain``."""
    note = history.checkpoint(size)
    with EvmClient(chain.url, private_key=chain.private_key, chain_id=chain.chain_id) as client:
        sent = client.send_anchor(anchored_digest(fields.pop("digest_of", note)))
        followed = client.follow(sent.tx_hash, 1)
    assert isinstance(followed, Confirmed), followed
    return {
        "type": "evm", "checkpoint": note, "consistency": history.consistency(RECEIPT_SIZE, size),
        "chain_id": chain.chain_id, "tx_hash": sent.tx_hash,
        "block_number": followed.anchor.block_number, **fields,
    }


def test_an_evm_anchor_checked_on_the_chain(
    history: History, signer: Signer, chain: Ganache, tsa: LocalTsa
) -> None:
    anchor = chain_anchor(history, chain, 9)
    receipt = history.receipt(anchors=[rfc3161_anchor(history, tsa, 4), anchor])
    line = check(receipt, signer, load_options(rpc=chain.url))
    assert line.endswith(
        "; 2 anchors: rfc3161 (TSA not asked: no --tsa-cert);"
        f" evm chain {chain.chain_id} tx {anchor['tx_hash']} in block {anchor['block_number']}"
    )


def test_confirmations(history: History, signer: Signer, chain: Ganache) -> None:
    """--confirmations N: refused until N blocks hold the transaction, then accepted."""
    receipt = history.receipt(anchors=[chain_anchor(history, chain, 9)])
    tx_hash = receipt["anchors"][0]["tx_hash"]
    failed = refused(receipt, signer, load_options(rpc=chain.url, confirmations=3))
    assert failed.code == INVALID
    assert failed.line.startswith(f"invalid: anchors[0] evm tx {tx_hash}: confirmations: ")
    assert "fewer than 3" in failed.line
    chain.mine(2)
    assert check(receipt, signer, load_options(rpc=chain.url, confirmations=3)).endswith(
        f" in block {receipt['anchors'][0]['block_number']}"
    )


@pytest.mark.parametrize(
    "case", ["a tx hash not on the chain", "another digest", "another chain id", "another block"]
)
def test_an_evm_anchor_that_does_not_hold(
    history: History, signer: Signer, chain: Ganache, case: str
) -> None:
    other = history.checkpoint(8)
    anchor = chain_anchor(history, chain, 9, **({"digest_of": other} if case == "another digest"
                                                 else {}))
    if case == "a tx hash not on the chain":
        anchor["tx_hash"] = "0x" + "0f" * 32
        check_name, said = "transaction", anchor["tx_hash"]
    elif case == "another digest":
        check_name, said = "data", anchored_digest(other).hex()
    elif case == "another chain id":
        anchor["chain_id"] = 1
        check_name, said = "chain", f"is chain {chain.chain_id}, not 1"
    else:
        anchor["block_number"] -= 1
        check_name, said = "", ""
    failed = refused(history.receipt(anchors=[anchor]), signer, load_options(rpc=chain.url))
    assert failed.code == INVALID
    prefix = f"invalid: anchors[0] evm tx {anchor['tx_hash']}"
    if check_name:
        assert failed.line.startswith(f"{prefix}: {check_name}: "), failed.line
        assert said in failed.line
    else:
        assert failed.line == (
            f"{prefix} is in block {anchor['block_number'] + 1},"
            f" not the receipt's {anchor['block_number']}"
        )
