"""``vault witness serve`` as a process: the c2sp.org/tlog-witness answers, over HTTP.

A log is built here (a note signer, made-up leaves, compact ranges and
consistency proofs) and its checkpoints are sent to the real process; the
cosignatures are checked with the key ``vault witness key`` prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.system.service import vault_env
from tests.system.witness_support import WitnessProcess
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.cosignature import verify_cosignature
from vault.domain.merkle import CompactRange, consistency_proof, leaf_hash
from vault.domain.note import Signer
from vault.domain.witness import AddCheckpointRequest

pytestmark = pytest.mark.system

ORIGIN = "example.com/witnessed-log"


@attrs.define
class Log:
    """A tiny append-only log that keeps every node, to sign checkpoints and prove them."""

    signer: Signer
    tree: CompactRange = attrs.field(factory=CompactRange)
    nodes: dict[tuple[int, int], bytes] = attrs.field(factory=dict)

    def grow(self, count: int) -> None:
        start = self.tree.size
        leaves = [leaf_hash(b"leaf %d" % i) for i in range(start, start + count)]
        self.tree, completed = self.tree.extend(leaves)
        self.nodes.update({(level, index): value for level, index, value in completed})

    def checkpoint(self) -> str:
        return signed_checkpoint(Checkpoint(ORIGIN, self.tree.size, self.tree.root()), self.signer)

    def request(self, old: int, proof: list[bytes] | None = None) -> str:
        if proof is None:
            proof = [] if old == 0 else consistency_proof(
                old, self.tree.size, lambda lv, ix: self.nodes[(lv, ix)]
            )
        return AddCheckpointRequest(old, tuple(proof), self.checkpoint()).format()


@pytest.fixture
def log() -> Log:
    return Log(Signer.from_key(ORIGIN, Ed25519PrivateKey.generate()))


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Iterator[WitnessProcess]:
    env = vault_env(
        WITNESS_LOGS=json.dumps([log.signer.verifier().format()]),
        WITNESS_NAME="test-witness",
        WITNESS_KEY_FILE=str(tmp_path / "witness" / "witness.key"),
        WITNESS_DB=str(tmp_path / "witness" / "state.sqlite3"),
        WITNESS_HOST="127.0.0.1",
    )
    server = WitnessProcess("witness", env, tmp_path / "witness.log")
    yield server
    if server.process is not None and server.process.poll() is None:
        assert server.stop() == 0, server.log_tail()


def test_the_witness_cosigns_extensions_and_refuses_everything_else(
    witness: WitnessProcess, log: Log
) -> None:
    key = witness.key()
    assert key.name == "test-witness"
    witness.start()

    log.grow(5)
    first = witness.post(log.request(0))
    assert first.status_code == 200, first.text
    assert verify_cosignature(log.checkpoint() + first.text, key) > 0

    log.grow(6)
    extended = witness.post(log.request(5))
    assert extended.status_code == 200, extended.text
    assert verify_cosignature(log.checkpoint() + extended.text, key) > 0

    stale = witness.post(log.request(0))
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "text/x.tlog.size"
    assert stale.text == "11\n"

    log.grow(2)
    bad = witness.post(log.request(11, proof=[b"\x01" * 32, b"\x02" * 32]))
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"].startswith("text/plain")

    stranger = Log(Signer.from_key(ORIGIN, Ed25519PrivateKey.generate()))
    stranger.grow(13)
    assert witness.post(stranger.request(0)).status_code == 403
    elsewhere = Log(Signer.from_key("example.org/other", Ed25519PrivateKey.generate()))
    elsewhere.tree, _ = CompactRange().extend([leaf_hash(b"x")])
    other_cp = signed_checkpoint(
        Checkpoint("example.org/other", 1, elsewhere.tree.root()), elsewhere.signer
    )
    assert witness.post(AddCheckpointRequest(0, (), other_cp).format()).status_code == 404

    assert witness.post(b"old 01\n\nnot a checkpoint").status_code == 400
    assert witness.post(b"\xff\xfe").status_code == 400
    assert witness.post(b"x" * (64 * 1024 + 1)).status_code == 413

    assert witness.stop() == 0
    witness.start()
    assert witness.post(log.request(0)).text == "11\n"
    resumed = witness.post(log.request(11))
    assert resumed.status_code == 200, resumed.text
    assert verify_cosignature(log.checkpoint() + resumed.text, witness.key()) > 0


def test_a_bad_witness_logs_value_is_one_line_naming_it(tmp_path: Path) -> None:
    env = vault_env(WITNESS_LOGS="[\"nope\"]", WITNESS_KEY_FILE=str(tmp_path / "k"))
    for command in ("serve", "key"):
        done = subprocess.run(
            [sys.executable, "-m", "vault", "witness", command],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1
        assert "WITNESS_LOGS" in done.stderr
    assert not (tmp_path / "k").exists()
