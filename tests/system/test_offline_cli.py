"""``vault receipt verify``, ``vault ledger consistency`` and ``vault ledger monitor``
run as real processes, in an environment whose configuration is broken (``PORT=notaport``)
to show that none of them reads it."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.ganache import running_ganache
from tests.system.service import run_cli, vault_env
from tests.tsa import LocalTsa, local_tsa
from tests.vault.test_offline import Ledger, grown, new_signer, vault_leaf
from tests.vault.test_offline_anchors import (
    RECEIPT_SIZE,
    History,
    chain_anchor,
    cosigned,
    rfc3161_anchor,
)
from vault.domain.cosignature import CosignerKey
from vault.domain.note import Signer

pytestmark = pytest.mark.system

ENV = vault_env(PORT="notaport")


def vault(*args: str) -> tuple[int, str, str]:
    result = run_cli(*args, env=ENV)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_broken_configuration_is_really_broken() -> None:
    """The environment the other tests use stops a command that does read the configuration."""
    code, _, err = vault("check-config")
    assert code == 2
    assert "PORT" in err


@pytest.fixture
def signer() -> Signer:
    return new_signer()


@pytest.fixture
def ledger(signer: Signer) -> Ledger:
    return grown(signer, [f"file {i}".encode() for i in range(5)])


class TestReceiptVerify:
    def test_valid_receipt_with_its_file(
        self, ledger: Ledger, signer: Signer, tmp_path: Path
    ) -> None:
        content = b"%PDF-1.7 the agreement"
        index = ledger.append(vault_leaf(content))
        receipt = tmp_path / "receipt.json"
        receipt.write_text(json.dumps(ledger.receipt(index)))
        document = tmp_path / "agreement.pdf"
        document.write_bytes(content)
        key = tmp_path / "ledger.vkey"
        key.write_text(signer.verifier().format() + "\n")
        code, out, err = vault("receipt", "verify", str(receipt), "--file", str(document),
                               "--key", str(key))
        assert (code, err) == (0, "")
        assert one_line(out).startswith("ok: registered leaf of document ")
        assert out.rstrip().endswith("; file SHA-256 matches")

        document.write_bytes(content + b"!")
        code, out, _ = vault("receipt", "verify", str(receipt), "--file", str(document),
                             "--key", signer.verifier().format())
        assert (code, one_line(out)) == (1, "invalid: file SHA-256 differs from the leaf's")

    def test_bare_tlog_proof_and_the_wrong_key(
        self, ledger: Ledger, signer: Signer, tmp_path: Path
    ) -> None:
        proof = tmp_path / "receipt.tlog-proof"
        proof.write_text(ledger.tlog_proof(2))
        code, out, _ = vault("receipt", "verify", str(proof), "--key", signer.verifier().format())
        assert code == 0
        assert "entry 2 of" in one_line(out)
        code, out, _ = vault("receipt", "verify", str(proof), "--key",
                             new_signer().verifier().format())
        assert code == 1
        assert one_line(out) == f"invalid: checkpoint has no signature by the key {signer.name}"

    @pytest.mark.parametrize("problem", ["missing receipt", "bad json", "bad key"])
    def test_unusable_input_exits_2(
        self, ledger: Ledger, signer: Signer, tmp_path: Path, problem: str
    ) -> None:
        receipt = tmp_path / "receipt.json"
        receipt.write_text("{oops" if problem == "bad json" else json.dumps(ledger.receipt(0)))
        if problem == "missing receipt":
            receipt.unlink()
        key = "nope" if problem == "bad key" else signer.verifier().format()
        code, out, err = vault("receipt", "verify", str(receipt), "--key", key)
        assert (code, out) == (2, "")
        assert one_line(err).startswith("vault: ")


class TestLedgerConsistency:
    def test_valid_then_reversed(self, signer: Signer, tmp_path: Path) -> None:
        ledger = grown(signer, [b"a", b"b", b"c"])
        old = tmp_path / "old"
        old.write_text(ledger.checkpoint())
        for content in (b"d", b"e", b"f", b"g"):
            ledger.append(vault_leaf(content))
        new = tmp_path / "new"
        new.write_text(ledger.checkpoint())
        proof = tmp_path / "proof.json"
        proof.write_text(json.dumps(ledger.consistency(3, 7)))
        key = signer.verifier().format()
        code, out, _ = vault("ledger", "consistency", str(old), str(new), "--proof", str(proof),
                             "--key", key)
        assert (code, one_line(out)) == (0, f"ok: {signer.name} size 7 extends size 3")
        code, out, _ = vault("ledger", "consistency", str(new), str(old), "--proof", str(proof),
                             "--key", key)
        assert (code, one_line(out)) == (1, "invalid: NEW (size 3) is smaller than OLD (size 7)")
        proof.write_text("[]")
        code, _, err = vault("ledger", "consistency", str(old), str(new), "--proof", str(proof),
                             "--key", key)
        assert code == 2
        assert one_line(err) == "vault: consistency proof is not a JSON object"


# ----------------------------------------------------------------- monitor


class LedgerServer:
    """The two ledger routes on 127.0.0.1, answering from whichever ledger is current."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/api/v1/ledger/checkpoint":
                    self._answer(served.ledger.checkpoint().encode(), "text/plain")
                elif url.path == "/api/v1/ledger/consistency":
                    query = parse_qs(url.query)
                    body = served.ledger.consistency(int(query["from"][0]), int(query["to"][0]))
                    self._answer(json.dumps(body).encode(), "application/json")
                else:
                    self.send_error(404)

            def _answer(self, body: bytes, media_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server(ledger: Ledger) -> Iterator[LedgerServer]:
    running = LedgerServer(ledger)
    yield running
    running.stop()


def monitor(server_url: str, signer: Signer, state: Path) -> tuple[int, str, str]:
    return vault("ledger", "monitor", "--url", server_url, "--key", signer.verifier().format(),
                 "--state", str(state))


def test_monitor_first_run_growth_and_same_size(
    server: LedgerServer, ledger: Ledger, signer: Signer, tmp_path: Path
) -> None:
    state = tmp_path / "witness" / "state"
    state.parent.mkdir()
    code, out, _ = monitor(server.url, signer, state)
    assert (code, one_line(out)) == (0, f"first run: {signer.name} size 5 saved")
    assert state.read_text() == ledger.checkpoint()
    ledger.append(vault_leaf(b"six"))
    ledger.append(vault_leaf(b"seven"))
    code, out, _ = monitor(server.url, signer, state)
    assert (code, one_line(out)) == (0, f"ok: {signer.name} size 7 (was 5)")
    assert state.read_text() == ledger.checkpoint()
    code, out, _ = monitor(server.url, signer, state)
    assert (code, one_line(out)) == (0, f"ok: {signer.name} size 7 (was 7)")
    assert sorted(p.name for p in state.parent.iterdir()) == ["state"]


@pytest.mark.parametrize(
    ("served", "line"),
    [
        ("rollback", "invalid: rollback: latest size 4 is smaller than the saved size 5"),
        ("fork", "invalid: consistency proof: calculated old root "),
        (
            "same size fork",
            "invalid: fork: latest checkpoint has the saved size 5 but another root",
        ),
        ("other key", "invalid: latest checkpoint has no signature by the key "),
    ],
)
def test_monitor_refusals_leave_the_state_alone(
    server: LedgerServer, ledger: Ledger, signer: Signer, tmp_path: Path, served: str, line: str
) -> None:
    state = tmp_path / "state"
    assert monitor(server.url, signer, state)[0] == 0
    saved = state.read_text()
    contents = {"rollback": 4, "fork": 8, "same size fork": 5, "other key": 6}[served]
    who = new_signer(signer.name) if served == "other key" else signer
    server.ledger = grown(who, [f"other {i}".encode() for i in range(contents)])
    code, out, _ = monitor(server.url, signer, state)
    assert code == 1
    assert one_line(out).startswith(line)
    assert state.read_text() == saved


def test_monitor_server_down_exits_2(
    server: LedgerServer, signer: Signer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert monitor(server.url, signer, state)[0] == 0
    saved = state.read_text()
    server.stop()
    code, out, err = monitor(server.url, signer, state)
    assert (code, out) == (2, "")
    assert one_line(err).startswith(f"vault: cannot fetch {server.url}/api/v1/ledger/checkpoint")
    assert state.read_text() == saved


# ------------------------------------------------- cosignatures and anchors


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


class TestReceiptAnchors:
    def test_witnesses_and_a_token(self, signer: Signer, tsa: LocalTsa, tmp_path: Path) -> None:
        history = History(signer)
        one, two = CosignerKey.generate("w1.example"), CosignerKey.generate("w2.example")
        receipt = tmp_path / "receipt.json"
        receipt.write_text(json.dumps(history.receipt(
            cosigned(history.checkpoint(RECEIPT_SIZE), one),
            anchors=[rfc3161_anchor(history, tsa, 9)],
        )))
        base = ("receipt", "verify", str(receipt), "--key", signer.verifier().format())
        witnesses = ("--witness", one.verifier().format(), "--witness", two.verifier().format())
        code, out, err = vault(*base)
        assert (code, err) == (0, "")
        assert one_line(out).endswith("; 1 anchor: rfc3161 (TSA not asked: no --tsa-cert)")
        code, out, _ = vault(*base, *witnesses, "--quorum", "1", "--tsa-cert", str(tsa.pki.ca_path))
        assert code == 0
        assert re.search(
            r"; cosigned by w1\.example \(quorum 1 of 2\); 1 anchor: rfc3161 at"
            r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", one_line(out),
        ), out
        code, out, _ = vault(*base, *witnesses)
        assert (code, one_line(out)) == (
            1, "invalid: cosignature quorum not met: 1 of 2 witnesses cosigned, 2 needed;"
            f" missing w2.example+{two.key_id:08x}",
        )
        code, out, err = vault(*base, *witnesses, "--quorum", "3")
        assert (code, out) == (2, "")
        assert one_line(err) == "vault: --quorum 3 is not between 1 and 2 (the witnesses given)"

    def test_an_authority_without_its_anchor(self, ledger: Ledger, signer: Signer,
                                             tsa: LocalTsa, tmp_path: Path) -> None:
        receipt = tmp_path / "receipt.json"
        receipt.write_text(json.dumps(ledger.receipt(1)))
        base = ("receipt", "verify", str(receipt), "--key", signer.verifier().format())
        code, out, _ = vault(*base, "--tsa-cert", str(tsa.pki.ca_path))
        assert (code, one_line(out)) == (
            1, "invalid: no rfc3161 anchor to check (--tsa-cert given)"
        )
        code, out, _ = vault(*base, "--rpc", "http://127.0.0.1:9", "--confirmations", "3")
        assert (code, one_line(out)) == (1, "invalid: no evm anchor to check (--rpc given)")

    def test_an_evm_anchor_asked_of_the_chain(self, signer: Signer, tmp_path: Path) -> None:
        history = History(signer)
        with running_ganache() as chain:
            anchor = chain_anchor(history, chain, 9)
            receipt = tmp_path / "receipt.json"
            receipt.write_text(json.dumps(history.receipt(anchors=[anchor])))
            base = ("receipt", "verify", str(receipt), "--key", signer.verifier().format(),
                    "--rpc", chain.url)
            code, out, _ = vault(*base)
            assert (code, one_line(out).split("; ", 1)[1]) == (
                0, f"1 anchor: evm chain 1337 tx {anchor['tx_hash']}"
                f" in block {anchor['block_number']}",
            )
            code, out, _ = vault(*base, "--confirmations", "2")
            assert code == 1
            assert one_line(out).startswith(
                f"invalid: anchors[0] evm tx {anchor['tx_hash']}: confirmations: "
            )
