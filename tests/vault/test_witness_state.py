"""The witness's SQLite state: an atomic compare-and-set per origin, and its key file."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.adapters.witness_state import WitnessStateStore, load_or_create_cosigner_key
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.cosignature import CosignerKey
from vault.domain.errors import ConfigError
from vault.domain.merkle import CompactRange, leaf_hash
from vault.domain.note import Signer
from vault.domain.witness import (
    Accepted,
    AddCheckpointRequest,
    Conflict,
    Outcome,
    WitnessedState,
    decide,
)

ORIGIN = "example.com/test-log"
T = 1_700_000_000
RACERS = 8


@pytest.fixture
def log_signer() -> Signer:
    return Signer.from_key(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def witness() -> CosignerKey:
    return CosignerKey.generate("test-witness")


def first_request(signer: Signer, size: int) -> AddCheckpointRequest:
    tree, _ = CompactRange().extend(leaf_hash(b"leaf %d" % i) for i in range(size))
    note = signed_checkpoint(Checkpoint(ORIGIN, size, tree.root()), signer)
    return AddCheckpointRequest(old_size=0, proof=(), checkpoint=note)




def test_accepted_state_is_stored_and_kept(
    tmp_path: Path, log_signer: Signer, witness: CosignerKey
) -> None:
    store = WitnessStateStore(tmp_path / "w" / "state.sqlite3")
    assert store.state(ORIGIN) is None
    request = first_request(log_signer, 3)
    outcome = store.check_and_store(
        ORIGIN, lambda state: decide(request, [log_signer.verifier()], state, [witness], T)
    )
    assert isinstance(outcome, Accepted)
    reopened = WitnessStateStore(tmp_path / "w" / "state.sqlite3")
    assert reopened.state(ORIGIN) == outcome.state
    assert reopened.checkpoint(ORIGIN) == outcome.note


def test_a_refusal_stores_nothing(
    tmp_path: Path, log_signer: Signer, witness: CosignerKey
) -> None:
    store = WitnessStateStore(tmp_path / "state.sqlite3")
    request = first_request(log_signer, 3)
    outcome = store.check_and_store(
        ORIGIN, lambda state: decide(request, [], state, [witness], T)
    )
    assert outcome.status == 404
    assert store.state(ORIGIN) is None


def test_an_error_in_decide_rolls_back_and_releases_the_lock(tmp_path: Path) -> None:
    store = WitnessStateStore(tmp_path / "state.sqlite3")

    def broken(state: WitnessedState | None) -> Outcome:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.check_and_store(ORIGIN, broken)
    assert store.state(ORIGIN) is None
    assert store.check_and_store(ORIGIN, lambda state: Conflict(0)) == Conflict(0)


def test_racing_requests_from_the_same_old_size_advance_once(
    tmp_path: Path, log_signer: Signer, witness: CosignerKey
) -> None:
    store = WitnessStateStore(tmp_path / "state.sqlite3")
    requests = [first_request(log_signer, size) for size in range(1, RACERS + 1)]
    start = threading.Barrier(RACERS)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def race(request: AddCheckpointRequest) -> None:
        start.wait()
        outcome = store.check_and_store(
            ORIGIN, lambda state: decide(request, [log_signer.verifier()], state, [witness], T)
        )
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=race, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert len(outcomes) == RACERS
    assert len(accepted) == 1
    winner = accepted[0].state
    assert all(o == Conflict(winner.size) for o in outcomes if o is not accepted[0])
    assert store.state(ORIGIN) == winner


def test_key_file_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "witness.key"
    key = load_or_create_cosigner_key(path, "my-witness")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+my-witness+")
    again = load_or_create_cosigner_key(path, "my-witness")
    assert again.verifier() == key.verifier()


def test_key_file_under_another_name_or_garbled_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "witness.key"
    load_or_create_cosigner_key(path, "one")
    with pytest.raises(ConfigError, match="WITNESS_NAME"):
        load_or_create_cosigner_key(path, "two")
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match="WITNESS_KEY_FILE"):
        load_or_create_cosigner_key(path, "one")


def test_sizes_beyond_signed_64_bits_are_kept(tmp_path: Path) -> None:
    store = WitnessStateStore(tmp_path / "state.sqlite3")
    huge = WitnessedState(2**64 - 1, b"\x07" * 32)

    def accept(state: WitnessedState | None) -> Outcome:
        cp = Checkpoint(ORIGIN, huge.size, huge.root_hash)
        return Accepted(checkpoint=cp, signatures="", note=cp.format(), state=huge)

    store.check_and_store(ORIGIN, accept)
    assert store.state(ORIGIN) == huge
