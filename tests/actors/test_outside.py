"""The ledger's outside parts in a running service: RFC 3161 timestamps from the local
openssl TSA, anchors on ganache, and the tlog-tiles mirror on moto's S3.

Each test runs the actors in-process on a real SQLite store, asks for a
checkpoint with ``Publish`` and then watches the store (``ledger_anchors``),
the ledger's health, the chain or the bucket, polling with a bound. Intervals
are a tenth of a second unless the test is about the interval; a test that a
thing does *not* happen watches it for a bounded window (``stays``) and then
shows, where it can, that the same window was long enough for it to happen.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.helpers import publish, store_document
from tests.actors.outside_helpers import (
    AnchorRow,
    LateServer,
    anchor_health,
    anchor_rows,
    done_rows,
    free_port,
    health,
    read_mirror,
    receipt_of,
    receipt_over_http,
    running_vault,
    stays,
)
from tests.ganache import Ganache, ganache  # noqa: F401  (a fixture, used by name)
from tests.polling import eventually
from tests.support import pdf_bytes, test_settings
from tests.tsa import LocalTsa, local_tsa
from tests.vault.blob_helpers import drop_bucket, new_bucket, s3_client
from vault.adapters.blobs.log_mirror import S3LogMirror
from vault.config import Settings
from vault.domain.anchor import anchor_data, intrinsic_gas
from vault.domain.checkpoint import open_checkpoint
from vault.domain.log import SignedCheckpoint
from vault.domain.models import Document
from vault.domain.timestamp import verify_token
from vault.offline import CheckFailed, verify_receipt
from vault.offline_anchors import load_options

SHORT = 0.1
"""Anchor interval (and chain poll) of the tests not about the interval, in seconds."""
WITHIN = 15.0
"""Bound on waiting for an anchor (a failed step backs off 1 s, then 2 s)."""

RFC3161 = "rfc3161"
EVM = "evm"


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path / "tsa") as running:
        yield running


def tsa_settings(data: Path, url: str, tsa: LocalTsa, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ledger_tsa_url": url,
        "ledger_tsa_certs": (tsa.pki.ca_pem,),
        "ledger_timestamp_interval_seconds": SHORT,
    }
    values.update(overrides)
    return test_settings(data, **values)


def chain_settings(data: Path, chain: Ganache, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "blockchain_endpoint_url": chain.url,
        "blockchain_private_key": chain.private_key,
        "blockchain_chain_id": chain.chain_id,
        "ledger_anchor_interval_seconds": SHORT,
    }
    values.update(overrides)
    return test_settings(data, **values)


async def upload_and_publish(vault: Any) -> tuple[Document, SignedCheckpoint]:
    doc = await store_document(vault, pdf_bytes(100))
    state = await publish(vault)
    assert state.checkpoint is not None
    return doc, state.checkpoint


async def done_at(vault: Any, kind: str, count: int = 1) -> list[AnchorRow]:
    """Wait until ``count`` anchors of ``kind`` are done; every row of the kind then."""
    await eventually(
        lambda: len(done_rows(vault, kind)) >= count, f"{count} done {kind} anchor(s)",
        within=WITHIN, interval=0.02, in_thread=True,
        describe=lambda: f"rows: {anchor_rows(vault, kind)}; health: {health(vault)}",
    )
    return await trio.to_thread.run_sync(anchor_rows, vault, kind)


def digest_of(note: str) -> bytes:
    return hashlib.sha256(note.encode("utf-8")).digest()


def offline(receipt: dict[str, Any] | bytes, vault: Any, **options: Any) -> str:
    text = receipt.decode() if isinstance(receipt, bytes) else json.dumps(receipt)
    return verify_receipt(text, vault.log.verifier, options=load_options(**options))


# ---------------------------------------------------------------- rfc3161


async def test_a_timestamp_lands_in_the_receipt_and_verifies_offline(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa
) -> None:
    """Upload, checkpoint: the TSA's token over SHA-256 of the note is stored, served in the
    receipt (HTTP route), verifies alone and in the offline check; health counts it. A later
    checkpoint gets its own token, and the first leaf's receipt keeps the first one, proved
    one history with the newer checkpoint."""
    settings = tsa_settings(tmp_path / "data", tsa.url, tsa)
    async with running_vault(nursery, settings) as vault:
        doc, checkpoint = await upload_and_publish(vault)
        [row] = await done_at(vault, RFC3161)
        assert row.size == checkpoint.size == 1
        assert row.attempts == 0 and row.last_error is None and row.token is not None

        code, body = await receipt_over_http(vault, doc.id)
        assert code == 200
        receipt = json.loads(body)
        assert receipt["tree_size"] == 1 and receipt["leaf_index"] == 0
        [anchor] = receipt["anchors"]
        assert set(anchor) == {"type", "checkpoint", "consistency", "token"}
        assert anchor["type"] == RFC3161
        assert anchor["checkpoint"] == checkpoint.note == receipt["checkpoint"]
        assert anchor["consistency"] == {"from": 1, "to": 1, "hashes": []}
        token = base64.b64decode(anchor["token"])
        assert token == row.token
        gen_time = verify_token(token, digest_of(anchor["checkpoint"]), [tsa.pki.ca_pem])
        assert abs((gen_time - checkpoint.signed_at).total_seconds()) < 60
        line = offline(body, vault, tsa_certs=[tsa.pki.ca_path])
        assert "1 anchor: rfc3161 at " in line, line

        kind_health = anchor_health(vault, RFC3161)
        assert kind_health["anchors"] == 1 and kind_health["last_size"] == 1
        assert kind_health["failures"] == 0 and kind_health["last_error"] is None
        assert kind_health["last_anchored_at"] is not None
        assert kind_health["age_seconds"] is not None and 0 <= kind_health["age_seconds"] < 60

        later, second = await upload_and_publish(vault)
        rows = await done_at(vault, RFC3161, 2)
        assert [r.size for r in rows] == [1, 2]
        first_receipt = await receipt_of(vault, doc.id)
        assert first_receipt["tree_size"] == 2
        [kept] = first_receipt["anchors"]
        assert kept["checkpoint"] == checkpoint.note
        assert kept["consistency"]["from"] == 1 and kept["consistency"]["to"] == 2
        assert len(kept["consistency"]["hashes"]) == 1
        assert "rfc3161 at " in offline(first_receipt, vault, tsa_certs=[tsa.pki.ca_path])
        [own] = (await receipt_of(vault, later.id))["anchors"]
        assert own["checkpoint"] == second.note
        assert own["consistency"] == {"from": 2, "to": 2, "hashes": []}
        assert anchor_health(vault, RFC3161)["anchors"] == 2
        assert len(tsa.requests) == 2


async def test_a_tsa_down_at_first_costs_retries_not_the_job(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa
) -> None:
    """Nothing listens at the TSA's URL: failures are counted and said in health, the job
    stays pending with its attempts; once the TSA answers, that same checkpoint is stamped."""
    late = LateServer(tsa.url)
    settings = tsa_settings(tmp_path / "data", late.url, tsa)
    try:
        async with running_vault(nursery, settings) as vault:
            doc, checkpoint = await upload_and_publish(vault)
            status = await eventually(
                lambda: (s := anchor_health(vault, RFC3161))["failures"] >= 1 and s,
                "a failed timestamp in health", within=WITHIN,
            )
            assert status["anchors"] == 0 and status["age_seconds"] is None
            assert "cannot reach the TSA" in status["last_error"], status
            [row] = await eventually(
                lambda: [r for r in anchor_rows(vault, RFC3161) if r.attempts >= 1],
                "the job to count its attempt", within=WITHIN, in_thread=True,
            )
            assert (row.size, row.state) == (checkpoint.size, "pending")
            assert row.last_error is not None and "cannot reach the TSA" in row.last_error
            assert tsa.requests == []

            late.start()
            [done] = await done_at(vault, RFC3161)
            assert done.size == checkpoint.size
            assert done.last_error is None
            status = anchor_health(vault, RFC3161)
            assert status["anchors"] == 1 and status["failures"] >= 1
            assert status["last_error"] is None and status["last_size"] == checkpoint.size
            assert len(late.posts) == len(tsa.requests) == 1
            line = offline(await receipt_of(vault, doc.id), vault, tsa_certs=[tsa.pki.ca_path])
            assert "rfc3161 at " in line
    finally:
        late.stop()


async def test_one_anchor_an_interval_and_that_of_the_latest_checkpoint(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa
) -> None:
    """Interval 2 s: checkpoints 2 and 3, signed right after the first anchor, get none of
    their own until the interval has passed; then one, of the latest (3), never one of 2."""
    interval = 2.0
    settings = tsa_settings(tmp_path / "data", tsa.url, tsa,
                            ledger_timestamp_interval_seconds=interval)
    async with running_vault(nursery, settings) as vault:
        await upload_and_publish(vault)
        [first] = await done_at(vault, RFC3161)
        doc2, _ = await upload_and_publish(vault)
        _, third = await upload_and_publish(vault)
        assert third.size == 3
        rows = await trio.to_thread.run_sync(anchor_rows, vault, RFC3161)
        assert [r.size for r in rows] == [1], "an anchor came before the interval was up"
        assert (await receipt_of(vault, doc2.id))["anchors"] == []

        rows = await done_at(vault, RFC3161, 2)
        assert [r.size for r in rows] == [1, 3]
        gap = _parse(rows[1].created_at) - _parse(first.created_at)
        assert gap >= interval, f"the second anchor came {gap} s after the first"
        assert len(tsa.requests) == 2
        [anchor] = (await receipt_of(vault, doc2.id))["anchors"]
        assert anchor["checkpoint"] == third.note


async def test_no_growth_no_new_anchor(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa
) -> None:
    """Interval 0.1 s: with the tree unchanged, checkpoints asked for again and many
    intervals passing, nothing more is stamped; the next leaf is, in the same window."""
    settings = tsa_settings(tmp_path / "data", tsa.url, tsa)
    async with running_vault(nursery, settings) as vault:
        await upload_and_publish(vault)
        await done_at(vault, RFC3161)
        for _ in range(3):
            assert (await publish(vault)).tree_size == 1
        await stays(
            lambda: [r.size for r in anchor_rows(vault, RFC3161)] == [1],
            "one anchor while the tree does not grow", seconds=10 * SHORT,
        )
        assert len(tsa.requests) == 1
        assert anchor_health(vault, RFC3161)["anchors"] == 1

        await upload_and_publish(vault)
        with trio.fail_after(10 * SHORT + 5):  # the control: growth is stamped in that window
            rows = await done_at(vault, RFC3161, 2)
        assert [r.size for r in rows] == [1, 2]


async def test_an_idle_kind_does_not_spin(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once anchored and past its interval with no new leaf, a kind looks at the store about
    once an interval (its idle poll), not in a loop."""
    settings = tsa_settings(tmp_path / "data", tsa.url, tsa)
    async with running_vault(nursery, settings) as vault:
        await upload_and_publish(vault)
        await done_at(vault, RFC3161)
        store = vault.backends.store
        calls: list[object] = []
        last_anchor = store.last_anchor

        def counted(kind: Any) -> Any:
            calls.append(kind)
            return last_anchor(kind)

        monkeypatch.setattr(store, "last_anchor", counted)
        # 10 intervals: about 10 looks are expected; 50 is generous.
        await stays(lambda: len(calls) <= 50, "at most 50 schedule looks in 1 s",
                    seconds=10 * SHORT, interval=0.01)


def _parse(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------- evm


def check_on_chain(chain: Ganache, row: AnchorRow, note: str) -> dict[str, Any]:
    """The anchor's transaction is on the chain, carries the note's digest, and sits in
    the block the row names; its receipt."""
    assert row.tx_hash is not None
    tx = chain.rpc("eth_getTransactionByHash", row.tx_hash)
    assert tx is not None, f"{row.tx_hash} is not on the chain"
    data = anchor_data(digest_of(note))
    assert tx["input"] == "0x" + data.hex()
    assert tx["from"].lower() == tx["to"].lower() == chain.address.lower()
    assert int(tx["value"], 16) == 0
    receipt: dict[str, Any] = chain.rpc("eth_getTransactionReceipt", row.tx_hash)
    assert int(receipt["status"], 16) == 1
    assert int(receipt["blockNumber"], 16) == row.block_number
    assert receipt["blockHash"] == row.block_hash
    block = chain.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
    assert block["hash"] == row.block_hash, "the anchor's block is no longer the chain's"
    assert int(receipt["gasUsed"], 16) == intrinsic_gas(data)
    return receipt


async def test_an_anchor_on_the_chain_in_the_receipt_verifies_offline(
    tmp_path: Path, nursery: trio.Nursery, ganache: Ganache  # noqa: F811
) -> None:
    settings = chain_settings(tmp_path / "data", ganache)
    async with running_vault(nursery, settings) as vault:
        doc, checkpoint = await upload_and_publish(vault)
        [row] = await done_at(vault, EVM)
        assert (row.size, row.chain_id) == (checkpoint.size, ganache.chain_id)
        check_on_chain(ganache, row, checkpoint.note)

        receipt = await receipt_of(vault, doc.id)
        [anchor] = receipt["anchors"]
        assert anchor == {
            "type": EVM, "checkpoint": checkpoint.note,
            "consistency": {"from": 1, "to": 1, "hashes": []},
            "chain_id": ganache.chain_id, "tx_hash": row.tx_hash,
            "block_number": row.block_number,
        }
        line = offline(receipt, vault, rpc=ganache.url)
        assert f"evm chain {ganache.chain_id} tx {row.tx_hash} in block {row.block_number}" in line
        status = anchor_health(vault, EVM)
        assert (status["anchors"], status["failures"], status["last_size"]) == (1, 0, 1)
        assert status["age_seconds"] is not None


async def test_an_anchor_waits_for_its_confirmations(
    tmp_path: Path, nursery: trio.Nursery, ganache: Ganache  # noqa: F811
) -> None:
    """Confirmations 3: mined at once (ganache), the job stays ``sent`` through one and two
    confirmations, and is done at the third block the test mines."""
    settings = chain_settings(tmp_path / "data", ganache, blockchain_confirmations=3)
    async with running_vault(nursery, settings) as vault:
        doc, checkpoint = await upload_and_publish(vault)
        [sent] = await eventually(
            lambda: [r for r in anchor_rows(vault, EVM) if r.state == "sent"],
            "the anchor to be sent", within=WITHIN, in_thread=True,
        )
        assert sent.tx_hash is not None and sent.nonce is not None
        mined = ganache.rpc("eth_getTransactionReceipt", sent.tx_hash)
        assert mined is not None  # ganache mines as it receives

        def still_sent() -> bool:
            return [r.state for r in anchor_rows(vault, EVM)] == ["sent"]

        await stays(still_sent, "the job unfinished at 1 confirmation", seconds=4 * SHORT)
        ganache.mine(1)
        await stays(still_sent, "the job unfinished at 2 confirmations", seconds=4 * SHORT)
        assert anchor_health(vault, EVM)["anchors"] == 0
        ganache.mine(1)
        [row] = await done_at(vault, EVM)
        assert row.tx_hash == sent.tx_hash
        assert row.block_number == int(mined["blockNumber"], 16)
        check_on_chain(ganache, row, checkpoint.note)
        receipt = await receipt_of(vault, doc.id)
        assert "in block" in offline(receipt, vault, rpc=ganache.url, confirmations=3)
        with pytest.raises(CheckFailed, match="confirmations"):
            offline(receipt, vault, rpc=ganache.url, confirmations=4)


async def test_an_anchor_dropped_by_a_reorganisation_is_sent_again(
    tmp_path: Path, nursery: trio.Nursery, ganache: Ganache  # noqa: F811
) -> None:
    """Snapshot, let the anchor be mined (``sent``, short of its confirmations), revert the
    chain: the transaction is gone, the actor sends it again, and the anchor completes in a
    block that is the chain's."""
    settings = chain_settings(tmp_path / "data", ganache, blockchain_confirmations=3)
    before = ganache.block_number()
    snapshot = ganache.snapshot()
    async with running_vault(nursery, settings) as vault:
        doc, checkpoint = await upload_and_publish(vault)
        [sent] = await eventually(
            lambda: [r for r in anchor_rows(vault, EVM) if r.state == "sent"],
            "the anchor to be sent", within=WITHIN, in_thread=True,
        )
        assert sent.tx_hash is not None
        first = ganache.rpc("eth_getTransactionReceipt", sent.tx_hash)
        assert int(first["blockNumber"], 16) == before + 1

        ganache.revert(snapshot)
        assert ganache.block_number() == before

        def resent() -> AnchorRow | None:
            rows = anchor_rows(vault, EVM)
            if len(rows) != 1 or rows[0].tx_hash is None:
                return None
            receipt = ganache.rpc("eth_getTransactionReceipt", rows[0].tx_hash)
            return rows[0] if receipt is not None else None

        again = await eventually(resent, "the anchor sent again after the reorganisation",
                                 within=WITHIN, in_thread=True)
        assert again.state == "sent"
        assert ganache.block_number() == before + 1  # mined again, after the revert
        ganache.mine(2)
        [row] = await done_at(vault, EVM)
        assert row.size == checkpoint.size
        check_on_chain(ganache, row, checkpoint.note)
        assert anchor_health(vault, EVM)["anchors"] == 1
        line = offline(await receipt_of(vault, doc.id), vault, rpc=ganache.url, confirmations=3)
        assert f"in block {row.block_number}" in line


async def test_a_chain_down_keeps_the_job_until_it_answers(
    tmp_path: Path, nursery: trio.Nursery, ganache: Ganache  # noqa: F811
) -> None:
    """Nothing listens at the endpoint: failures are counted, the job stays ``pending``
    with its attempts. Restarted on the same database with a live chain, the service
    anchors that very checkpoint, and no other job appears."""
    data = tmp_path / "data"
    closed = f"http://127.0.0.1:{free_port()}"
    async with running_vault(nursery, chain_settings(data, ganache,
                                                      blockchain_endpoint_url=closed)) as vault:
        doc, checkpoint = await upload_and_publish(vault)
        status = await eventually(
            lambda: (s := anchor_health(vault, EVM))["failures"] >= 1 and s,
            "a failed anchor in health", within=WITHIN,
        )
        assert status["anchors"] == 0 and "cannot reach the chain" in status["last_error"]
        [row] = await eventually(
            lambda: [r for r in anchor_rows(vault, EVM) if r.attempts >= 1],
            "the job to count its attempt", within=WITHIN, in_thread=True,
        )
        assert (row.size, row.state, row.tx_hash) == (checkpoint.size, "pending", None)
        assert row.last_error is not None and closed in row.last_error

    async with running_vault(nursery, chain_settings(data, ganache)) as vault:
        [done] = await done_at(vault, EVM)
        assert done.size == checkpoint.size and done.attempts >= 1
        check_on_chain(ganache, done, checkpoint.note)
        assert "in block" in offline(await receipt_of(vault, doc.id), vault, rpc=ganache.url)


async def test_both_kinds_in_one_receipt(
    tmp_path: Path, nursery: trio.Nursery, tsa: LocalTsa, ganache: Ganache  # noqa: F811
) -> None:
    settings = chain_settings(
        tmp_path / "data", ganache, ledger_tsa_url=tsa.url, ledger_tsa_certs=(tsa.pki.ca_pem,),
        ledger_timestamp_interval_seconds=SHORT,
    )
    async with running_vault(nursery, settings) as vault:
        doc, _ = await upload_and_publish(vault)
        await done_at(vault, RFC3161)
        await done_at(vault, EVM)
        status, body = await receipt_over_http(vault, doc.id)
        assert status == 200
        assert [a["type"] for a in json.loads(body)["anchors"]] == [EVM, RFC3161]
        line = offline(body, vault, tsa_certs=[tsa.pki.ca_path], rpc=ganache.url)
        assert "2 anchors: evm chain" in line and "rfc3161 at " in line
        assert set(health(vault)["anchors"]) == {EVM, RFC3161}


# ---------------------------------------------------------------- mirror


@pytest.fixture
def s3(aws_env: str) -> Iterator[tuple[Any, str]]:
    client = s3_client(aws_env)
    bucket = new_bucket(client)
    try:
        yield client, bucket
    finally:
        drop_bucket(client, bucket)
        client.close()


async def test_the_bucket_alone_rebuilds_the_signed_tree(
    tmp_path: Path, nursery: trio.Nursery, s3: tuple[Any, str]
) -> None:
    """A service with an S3 mirror: after uploads and a checkpoint, a client reading only
    ``ledger/`` rebuilds the tree from its tiles to the root ``ledger/checkpoint`` signs,
    finds the documents' leaves in its bundles, and health's mirror size is that size;
    the next checkpoint moves the bucket on."""
    client, bucket = s3
    mirror = S3LogMirror(client, bucket)
    settings = test_settings(tmp_path / "data")
    async with running_vault(nursery, settings, log_mirror=mirror) as vault:
        store = vault.backends.store
        docs = [await store_document(vault, pdf_bytes(100)) for _ in range(3)]
        state = await publish(vault)
        assert state.checkpoint is not None and state.checkpoint.size == 3

        async def mirrored(size: int) -> None:
            await eventually(lambda: health(vault)["mirror"]["size"] == size,
                             f"the mirror at size {size}", within=WITHIN,
                             describe=lambda: str(health(vault)["mirror"]))

        await mirrored(3)
        cp, leaves = await trio.to_thread.run_sync(read_mirror, client, bucket, vault.log.verifier)
        assert (cp.size, cp.root_hash) == (3, state.checkpoint.root_hash)
        stored_note = client.get_object(Bucket=bucket, Key="ledger/checkpoint")["Body"].read()
        assert stored_note == state.checkpoint.note.encode()
        assert open_checkpoint(stored_note, vault.log.verifier).origin == vault.log.origin
        assert leaves == await vault.backends.in_db(store.ledger_leaves, 0, 3)
        for doc in docs:
            leaf = await vault.backends.in_db(store.registered_leaf, doc.id)
            assert leaf is not None and leaf.leaf in leaves
        mirror_status = health(vault)["mirror"]
        assert mirror_status["failures"] == 0 and mirror_status["last_error"] is None
        assert mirror_status["objects"] >= 3 and mirror_status["last_mirrored_at"] is not None

        later = await store_document(vault, pdf_bytes(100))
        state = await publish(vault)
        assert state.checkpoint is not None and state.checkpoint.size == 4
        await mirrored(4)
        cp, leaves = await trio.to_thread.run_sync(read_mirror, client, bucket, vault.log.verifier)
        assert (cp.size, cp.root_hash) == (4, state.checkpoint.root_hash)
        leaf = await vault.backends.in_db(store.registered_leaf, later.id)
        assert leaf is not None and leaves[-1] == leaf.leaf
