"""The ledger end to end: a real server signs what it stores, and the offline commands
check its receipts and checkpoints with nothing but the public key."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pg import PgDatabase
from tests.polling import eventually_sync
from tests.system.service import (
    Server,
    StartServer,
    actor,
    pdf,
    post_upload,
    run_cli,
    vault_env,
)
from vault.domain.checkpoint import checkpoint_body, open_checkpoint
from vault.domain.merkle import verify_consistency
from vault.domain.note import Verifier

pytestmark = pytest.mark.system


def _receipt(client: httpx.Client, document_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """The receipt, once the server's timer has put the leaf under a checkpoint."""

    def ready() -> dict[str, Any] | None:
        answer = client.get(f"/api/v1/documents/{document_id}/receipt", headers=headers)
        if answer.status_code == 202:
            assert answer.headers["Retry-After"] == "1"
            return None
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return eventually_sync(ready, "the receipt to be signed")


def test_a_receipt_from_the_server_verifies_offline(server: Server, tmp_path: Path) -> None:
    """Upload, take the receipt and the key over HTTP, then check them with no service."""
    headers, content = actor("admin"), pdf(50_000)
    with server.client() as client:
        created = post_upload(client, headers, uuid.uuid4(), content)
        assert created.status_code == 201, created.text
        doc = created.json()
        receipt = _receipt(client, doc["id"], headers)
        key = client.get("/api/v1/ledger/key").text
    assert doc["on_chain_reference"].startswith("0x")
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    (tmp_path / "proof.tlog").write_text(receipt["tlog_proof"])
    (tmp_path / "doc.pdf").write_bytes(content)
    (tmp_path / "other.pdf").write_bytes(pdf(50_000))
    (tmp_path / "vault.vkey").write_text(key)
    offline = vault_env(PORT="not a port")  # no configuration is read
    key_arg = str(tmp_path / "vault.vkey")

    for receipt_file in ("receipt.json", "proof.tlog"):
        checked = run_cli(
            "receipt", "verify", str(tmp_path / receipt_file), "--file",
            str(tmp_path / "doc.pdf"), "--key", key_arg, env=offline,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("ok"), checked.stdout

    wrong_file = run_cli(
        "receipt", "verify", str(tmp_path / "receipt.json"), "--file",
        str(tmp_path / "other.pdf"), "--key", key_arg, env=offline,
    )
    assert wrong_file.returncode == 1
    assert wrong_file.stdout.startswith("invalid:") and "SHA-256" in wrong_file.stdout

    tampered = dict(receipt, leaf_index=receipt["leaf_index"] + 1)
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    forged = run_cli(
        "receipt", "verify", str(tmp_path / "tampered.json"), "--key", key_arg, env=offline
    )
    assert forged.returncode == 1, forged.stdout + forged.stderr


def test_the_monitor_follows_the_server(server: Server, tmp_path: Path) -> None:
    """The monitor saves the first checkpoint, then accepts only its extensions."""
    headers = actor("admin")
    state, key_file = tmp_path / "checkpoint", tmp_path / "vault.vkey"
    offline = vault_env(PORT="not a port")
    with server.client() as client:
        first = post_upload(client, headers, uuid.uuid4(), pdf(2_000)).json()
        _receipt(client, first["id"], headers)
        key_file.write_text(client.get("/api/v1/ledger/key").text)
        monitor = ("ledger", "monitor", "--url", server.base_url, "--key", str(key_file),
                   "--state", str(state))  # fmt: skip

        started = run_cli(*monitor, env=offline)
        assert started.returncode == 0, started.stdout + started.stderr
        saved = state.read_text()
        assert saved == client.get("/api/v1/ledger/checkpoint").text

        second = post_upload(client, headers, uuid.uuid4(), pdf(2_000)).json()
        _receipt(client, second["id"], headers)
        grown = run_cli(*monitor, env=offline)
        assert grown.returncode == 0, grown.stdout + grown.stderr
        assert state.read_text() != saved
        assert state.read_text() == client.get("/api/v1/ledger/checkpoint").text

        consistency = client.get("/api/v1/ledger/consistency", params={"from": 1})
        assert consistency.status_code == 200
    (tmp_path / "old").write_text(saved)
    (tmp_path / "new").write_text(state.read_text())
    (tmp_path / "proof.json").write_text(consistency.text)
    extends = run_cli(
        "ledger", "consistency", str(tmp_path / "old"), str(tmp_path / "new"),
        "--proof", str(tmp_path / "proof.json"), "--key", str(key_file), env=offline,
    )
    assert extends.returncode == 0, extends.stdout + extends.stderr
    backwards = run_cli(
        "ledger", "consistency", str(tmp_path / "new"), str(tmp_path / "old"),
        "--proof", str(tmp_path / "proof.json"), "--key", str(key_file), env=offline,
    )
    assert backwards.returncode == 1


def test_two_processes_on_one_database_sign_one_history(
    start_server: StartServer, pg_database: PgDatabase
) -> None:
    """Two servers on one PostgreSQL database, uploading at once: one tree, no gap, and
    every checkpoint either of them signed extends the one before it."""
    pg_database.truncate_all(keep=("schema_version",))
    servers = [start_server(DATABASE_URL=pg_database.url) for _ in range(2)]
    headers = actor("admin")

    def upload_many(server: Server) -> list[str]:
        with server.client() as client:
            return [
                post_upload(client, headers, uuid.uuid4(), pdf(2_000)).json()["id"]
                for _ in range(15)
            ]

    with ThreadPoolExecutor(2) as pool:
        ids = [doc for batch in pool.map(upload_many, servers) for doc in batch]
    assert len(set(ids)) == 30

    clients = [server.client() for server in servers]

    def covered() -> bool:
        answers = [client.get("/api/v1/ledger/checkpoint") for client in clients]
        return all(
            answer.status_code == 200 and checkpoint_body(answer.text).size == 30
            for answer in answers
        )

    try:
        eventually_sync(covered, "both servers to serve a checkpoint of all 30 leaves")
        keys = [client.get("/api/v1/ledger/key").text.strip() for client in clients]
    finally:
        for client in clients:
            client.close()
    key = Verifier.parse(keys[0])
    assert keys[1] == keys[0]
    rows = pg_database.query("SELECT size, note FROM ledger_checkpoints ORDER BY size")
    indexes = pg_database.query("SELECT leaf_index FROM ledger_leaves ORDER BY leaf_index")
    assert [row[0] for row in indexes] == list(range(30))
    signed = [open_checkpoint(note, key) for _, note in rows]
    assert [cp.size for cp in signed] == [row[0] for row in rows]
    with servers[1].client() as client:
        for older, newer in itertools.pairwise(signed):
            proof = client.get(
                "/api/v1/ledger/consistency", params={"from": older.size, "to": newer.size}
            ).json()
            verify_consistency(
                older.size, newer.size, [base64.b64decode(h) for h in proof["hashes"]],
                older.root_hash, newer.root_hash,
            )
