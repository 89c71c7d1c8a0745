"""A vault witnessed by real ``vault witness serve`` processes, for the system tests.

``Witnessed`` is one deployment: the vault's log identity (a signing key the
test made, handed to the server as ``LEDGER_SIGNING_KEY``, and its
``LEDGER_ORIGIN``), the witness processes following that log's key, and the
``vault serve`` process whose ``LEDGER_WITNESSES`` lists them. Everything
across processes is polled (``tests.polling.eventually_sync``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.polling import eventually_sync
from tests.system.service import (
    POLL_INTERVAL,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Server,
    actor,
    free_port,
    launch,
    pdf,
    post_upload,
    vault_env,
)
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.cosignature import CosignerVerifier
from vault.domain.merkle import CompactRange, leaf_hash
from vault.domain.note import Signer
from vault.domain.witness import AddCheckpointRequest

T = TypeVar("T")

ORIGIN = "vault.example/witnessed"
ADD = "/add-checkpoint"
WAIT = 30.0
"""Bound on every wait for the deployment (generous: backoffs of a few seconds)."""
INTERVAL = 0.05
ADMIN = actor("admin")


@attrs.define
class WitnessProcess:
    """One ``vault witness serve``; its port, key file and database survive ``stop``."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text("utf-8", "replace")[-4000:]

    def key(self) -> CosignerVerifier:
        """What ``vault witness key`` prints (it makes the key file on first use)."""
        done = subprocess.run(
            [sys.executable, "-m", "vault", "witness", "key"],
            env=self.env, capture_output=True, text=True, timeout=60, check=True,
        )
        return CosignerVerifier.parse(done.stdout.strip())

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        env = {**self.env, "WITNESS_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vault", "witness", "serve"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        eventually_sync(self._listening, f"{self.name} to listen", within=START_TIMEOUT,
                        interval=POLL_INTERVAL, describe=self.log_tail)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}\n{self.log_tail()}")
        try:
            return httpx.get(self.url + ADD, timeout=2.0).status_code == 405
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} still running after SIGTERM\n{self.log_tail()}")

    def post(self, body: str | bytes) -> httpx.Response:
        return httpx.post(self.url + ADD, content=body, timeout=30.0)


def forged_request(signer: Signer, size: int) -> str:
    """An ``add-checkpoint`` body (old 0) for a checkpoint of ``size`` made-up leaves,
    signed by ``signer``: a tree the vault's log never held."""
    tree, _ = CompactRange().extend(leaf_hash(b"forged %d" % i) for i in range(size))
    note = signed_checkpoint(Checkpoint(signer.name, size, tree.root()), signer)
    return AddCheckpointRequest(0, (), note).format()


@attrs.define
class Witnessed:
    """A vault, its log identity and its witnesses (``start_vault`` once they are ready)."""

    root: Path
    signer: Signer
    pem: str
    witnesses: dict[str, WitnessProcess]
    keys: dict[str, CosignerVerifier]
    quorum: int
    server: Server | None = None

    @property
    def vault(self) -> Server:
        assert self.server is not None, "the vault is not started"
        return self.server

    def cosigners(self) -> list[CosignerVerifier]:
        return list(self.keys.values())

    def start_vault(self, **env: str) -> Server:
        listed = [{"url": w.url, "key": self.keys[n].format()} for n, w in self.witnesses.items()]
        settings = {
            "LEDGER_SIGNING_KEY": self.pem,
            "LEDGER_ORIGIN": self.signer.name,
            "LEDGER_CHECKPOINT_INTERVAL_SECONDS": "0.2",
            "LEDGER_WITNESSES": json.dumps(listed),
            "LEDGER_WITNESS_QUORUM": str(self.quorum),
            **env,
        }
        self.server = launch(self.root / "data", self.root / "vault.log", settings)
        return self.server

    # ------------------------------------------------------------ looking at the vault

    def health(self) -> dict[str, Any]:
        return self.vault.actor_health("ledger")

    def witness_health(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.health()["witnesses"][name]
        return found

    def until(self, check: Callable[[], T | None], what: str, within: float = WAIT) -> T:
        """Poll ``check`` (failing at once if the vault exited) until it answers."""

        def guarded() -> T | None:
            if not self.vault.running():
                pytest.fail(f"vault exited with {self.vault.process.returncode}\n"
                            f"{self.vault.log_tail()}")
            return check()

        return eventually_sync(guarded, what, within=within, interval=INTERVAL,
                               describe=self.describe)

    def until_health(self, test: Callable[[dict[str, Any]], bool], what: str,
                     within: float = WAIT) -> dict[str, Any]:
        """The ledger's health snapshot, once ``test`` holds for it."""

        def check() -> dict[str, Any] | None:
            snapshot = self.health()
            return snapshot if test(snapshot) else None

        return self.until(check, what, within)

    def describe(self) -> str:
        try:
            snapshot = json.dumps(self.health(), indent=1)
        except (httpx.HTTPError, ValueError) as exc:
            snapshot = f"(no health: {exc})"
        tails = "\n".join(f"--- {n} ---\n{w.log_tail()[-1500:]}" for n, w in
                          self.witnesses.items())
        return f"ledger health: {snapshot}\n--- vault ---\n{self.vault.log_tail(30)}\n{tails}"

    def checkpoint(self) -> httpx.Response:
        with self.vault.client() as client:
            return client.get("/api/v1/ledger/checkpoint")

    def receipt(self, document_id: str) -> httpx.Response:
        with self.vault.client() as client:
            return client.get(f"/api/v1/documents/{document_id}/receipt", headers=ADMIN)

    def upload(self) -> str:
        with self.vault.client() as client:
            created = post_upload(client, ADMIN, uuid.uuid4(), pdf(2_000))
        assert created.status_code == 201, created.text
        document_id: str = created.json()["id"]
        return document_id

    def log_key(self) -> str:
        with self.vault.client() as client:
            return client.get("/api/v1/ledger/key").text

    def logged(self, event: str) -> list[dict[str, Any]]:
        return self.vault.events(event)



def event_time(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))


def log_identity(origin: str = ORIGIN) -> tuple[Signer, str]:
    """A fresh Ed25519 log key under ``origin``, and its PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Signer.from_key(origin, key), pem


@contextmanager
def witnessed(root: Path, names: tuple[str, ...] = ("witness-a", "witness-b"), *,
              quorum: int | None = None, start: bool = True) -> Iterator[Witnessed]:
    """A log identity and witnesses following it (started unless ``start`` is false); the
    vault is started by the test (``start_vault``). Everything still running is stopped at
    the end, each with exit code 0 required."""
    signer, pem = log_identity()
    witnesses = {}
    for name in names:
        home = root / name
        env = vault_env(
            WITNESS_LOGS=json.dumps([signer.verifier().format()]),
            WITNESS_NAME=name,
            WITNESS_KEY_FILE=str(home / "witness.key"),
            WITNESS_DB=str(home / "state.sqlite3"),
            WITNESS_HOST="127.0.0.1",
        )
        witnesses[name] = WitnessProcess(name, env, root / f"{name}.log")
    keys = {name: w.key() for name, w in witnesses.items()}
    deployment = Witnessed(root, signer, pem, witnesses, keys,
                           len(names) if quorum is None else quorum)
    try:
        if start:
            for w in witnesses.values():
                w.start()
        yield deployment
    finally:
        failures = []
        if deployment.server is not None:
            was_running = deployment.server.running()
            code = deployment.server.stop()
            print(f"--- vault (exit {code}) ---\n{deployment.server.log_tail(20)}")
            if was_running and code != 0:
                failures.append(f"vault exited {code} on SIGTERM")
        for name, w in witnesses.items():
            if w.running():
                code = w.stop()
                if code != 0:
                    failures.append(f"{name} exited {code} on SIGTERM")
        if failures:
            pytest.fail("; ".join(failures))
