"""Anchoring checkpoint digests on an EVM chain: the data format, and the client on ganache.

The chain is a real ganache (``tests.ganache``), shared by this module's
tests; each test works relative to the chain's state when it starts. Ganache
mines a transaction as it arrives, so nothing here waits: a sent anchor is
in a block when ``send_anchor`` returns, and blocks come from ``mine``.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import httpx
import pytest
from eth_utils.crypto import keccak

from tests.ganache import Ganache, ganache
from vault.adapters.evm import (
    NONCE_ATTEMPTS,
    AnchorCheckFailed,
    AnchorReverted,
    ChainUnavailable,
    Confirmed,
    Dropped,
    EvmClient,
    NodeRefused,
    Waiting,
    WrongChain,
    check_anchor,
)
from vault.domain.anchor import (
    ANCHOR_PREFIX,
    AnchorDataError,
    EvmAnchor,
    anchor_data,
    anchor_digest,
    anchor_gas_limit,
    checkpoint_digest,
    floor_gas,
    intrinsic_gas,
)

__all__ = ["ganache"]  # the fixture, imported to be found by name

NOTE = (
    "vault.example/log\n7\nq3a9B6xW8H3f2vH2kQ6n8aYlV0m1S2n3b4c5d6e7f8g=\n\n"
    "— vault.example/log AB==\n"
)


def _digest() -> bytes:
    return secrets.token_bytes(32)


def _client(chain: Ganache, **kwargs: Any) -> EvmClient:
    return EvmClient(chain.url, private_key=chain.private_key, chain_id=chain.chain_id, **kwargs)


# --- the data format (no chain) --------------------------------------------------------


def test_anchor_data_round_trip() -> None:
    digest = checkpoint_digest(NOTE)
    data = anchor_data(digest)
    assert ANCHOR_PREFIX == b"document-vault checkpoint v1\n"
    assert data == ANCHOR_PREFIX + digest
    assert len(data) == 61
    assert anchor_digest(data) == digest


@pytest.mark.parametrize("digest", [b"", b"\x01" * 31, b"\x01" * 33])
def test_anchor_data_refuses_a_digest_not_32_bytes(digest: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        anchor_data(digest)


@pytest.mark.parametrize("data", [
    b"",
    b"\x00" * 61,
    b"document-vault checkpoint v2\n" + b"\x01" * 32,
    ANCHOR_PREFIX + b"\x01" * 31,
    ANCHOR_PREFIX + b"\x01" * 33,
    ANCHOR_PREFIX,
])
def test_anchor_digest_refuses_other_data(data: bytes) -> None:
    with pytest.raises(AnchorDataError):
        anchor_digest(data)


def test_gas_figures() -> None:
    assert intrinsic_gas(b"") == 21_000
    assert intrinsic_gas(b"\x00\x01\x00") == 21_000 + 16 + 4 + 4
    assert floor_gas(b"\x00\x01\x00") == 21_000 + 10 * (1 + 4 + 1)
    data = anchor_data(b"\x01" * 32)
    assert intrinsic_gas(data) == 21_000 + 16 * 61
    assert anchor_gas_limit(data) == floor_gas(data) == 21_000 + 40 * 61


def test_evm_anchor_wants_lowercase_hashes() -> None:
    good = "0x" + "ab" * 32
    EvmAnchor(chain_id=1, tx_hash=good, block_number=0, block_hash=good)
    with pytest.raises(ValueError, match="tx_hash"):
        EvmAnchor(chain_id=1, tx_hash=good.upper(), block_number=0, block_hash=good)
    with pytest.raises(ValueError, match="block_number"):
        EvmAnchor(chain_id=1, tx_hash=good, block_number=-1, block_hash=good)


# --- the client on ganache ----------------------------------------------------------


def test_send_then_follow_confirms_in_the_transactions_block(ganache: Ganache) -> None:
    digest = _digest()
    with _client(ganache) as client:
        assert client.address == ganache.address
        sent = client.send_anchor(digest)
        followed = client.follow(sent.tx_hash, 1)
    receipt = ganache.rpc("eth_getTransactionReceipt", sent.tx_hash)
    transaction = ganache.rpc("eth_getTransactionByHash", sent.tx_hash)
    assert followed == Confirmed(EvmAnchor(
        chain_id=1337, tx_hash=sent.tx_hash, block_number=int(receipt["blockNumber"], 16),
        block_hash=receipt["blockHash"],
    ))
    assert int(transaction["nonce"], 16) == sent.nonce
    assert transaction["input"] == "0x" + anchor_data(digest).hex()
    assert transaction["to"] == transaction["from"] == ganache.address.lower()
    assert int(transaction["value"], 16) == 0
    # The fee strategy: EIP-1559 at the node's suggested tip, 2 x base fee + tip at most.
    assert transaction["type"] == "0x2"
    assert transaction["maxPriorityFeePerGas"] == ganache.rpc("eth_maxPriorityFeePerGas")
    assert int(receipt["gasUsed"], 16) == intrinsic_gas(anchor_data(digest))
    assert int(transaction["gas"], 16) == anchor_gas_limit(anchor_data(digest))


def test_follow_waits_for_confirmations(ganache: Ganache) -> None:
    with _client(ganache) as client:
        sent = client.send_anchor(_digest())
        first = client.follow(sent.tx_hash, 3)
        assert isinstance(first, Waiting)
        assert first.seen == 1
        assert first.block_number == ganache.block_number()
        ganache.mine(1)
        assert client.follow(sent.tx_hash, 3) == Waiting(first.block_number, 2)
        ganache.mine(1)
        confirmed = client.follow(sent.tx_hash, 3)
    assert isinstance(confirmed, Confirmed)
    assert confirmed.anchor.block_number == first.block_number


def test_a_reorganisation_drops_the_anchor_and_a_rebroadcast_confirms_it(
    ganache: Ganache,
) -> None:
    with _client(ganache) as client:
        before = ganache.snapshot()
        sent = client.send_anchor(_digest())
        mined = client.follow(sent.tx_hash, 1)
        assert isinstance(mined, Confirmed)
        ganache.revert(before)
        assert client.follow(sent.tx_hash, 1) == Dropped()
        client.rebroadcast(sent.raw_tx)
        again = client.follow(sent.tx_hash, 1)
    assert isinstance(again, Confirmed)
    assert again.anchor.tx_hash == sent.tx_hash
    assert again.anchor.block_number == mined.anchor.block_number


def test_rebroadcasting_a_mined_anchor_is_not_an_error(ganache: Ganache) -> None:
    with _client(ganache) as client:
        sent = client.send_anchor(_digest())
        height = ganache.block_number()
        client.rebroadcast(sent.raw_tx)  # the nonce is used: nothing to do
        assert ganache.block_number() == height
        assert isinstance(client.follow(sent.tx_hash, 1), Confirmed)


@attrs.define
class _RaceTransport(httpx.BaseTransport):
    """Holds a client's first ``eth_sendRawTransaction`` until the other client's is ready."""

    barrier: threading.Barrier
    sends: int = 0
    _inner: httpx.HTTPTransport = attrs.field(factory=httpx.HTTPTransport)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["method"] == "eth_sendRawTransaction":
            self.sends += 1
            if self.sends == 1:
                self.barrier.wait(timeout=10)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_two_processes_racing_on_one_account_both_anchor(ganache: Ganache) -> None:
    barrier = threading.Barrier(2)
    transports = [_RaceTransport(barrier), _RaceTransport(barrier)]
    clients = [_client(ganache, transport=transport) for transport in transports]
    digests = [_digest(), _digest()]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            sent = list(pool.map(EvmClient.send_anchor, clients, digests))
        assert sent[0].nonce != sent[1].nonce
        # The loser signed again: once or more, as ganache's "pending" nonce lags its pool
        # while it mines the winner.
        winner, loser = sorted(t.sends for t in transports)
        assert winner == 1
        assert 2 <= loser <= NONCE_ATTEMPTS
        for client, anchor in zip(clients, sent, strict=True):
            assert isinstance(client.follow(anchor.tx_hash, 1), Confirmed)
        for anchor, digest in zip(sent, digests, strict=True):
            checked = check_anchor(ganache.url, anchor.tx_hash, digest, chain_id=1337,
                                   confirmations=1)
            assert checked.tx_hash == anchor.tx_hash
    finally:
        for client in clients:
            client.close()


def test_an_unfunded_account_is_refused(ganache: Ganache) -> None:
    key = "0x" + secrets.token_hex(32)
    with (
        EvmClient(ganache.url, private_key=key, chain_id=1337) as client,
        pytest.raises(NodeRefused, match="insufficient funds") as refused,
    ):
        client.send_anchor(_digest())
    assert ganache.url in str(refused.value)
    assert isinstance(refused.value, ChainUnavailable)


def test_a_chain_that_is_down_is_unavailable_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    key = "0x" + "11" * 32
    with EvmClient(url, private_key=key, chain_id=1337, timeout=2.0) as client:
        with pytest.raises(ChainUnavailable, match="cannot reach the chain at") as down:
            client.send_anchor(_digest())
        assert url in str(down.value)
        with pytest.raises(ChainUnavailable, match=url):
            client.follow("0x" + "00" * 32, 1)
    with pytest.raises(ChainUnavailable, match=url):
        check_anchor(url, "0x" + "00" * 32, _digest(), chain_id=1337, confirmations=1)


def test_the_wrong_chain_id_is_a_configuration_error(ganache: Ganache) -> None:
    with (
        EvmClient(ganache.url, private_key=ganache.private_key, chain_id=1) as client,
        pytest.raises(WrongChain, match="is chain 1337, not the configured 1") as wrong,
    ):
        client.send_anchor(_digest())
    assert isinstance(wrong.value, ValueError)
    assert isinstance(wrong.value, ChainUnavailable)


@pytest.mark.parametrize(("key", "chain_id"), [
    ("4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d", 1337),
    ("0x" + "00" * 32, 1337),
    ("0x" + "11" * 32, 0),
])
def test_the_client_refuses_a_bad_key_or_chain_id(key: str, chain_id: int) -> None:
    with pytest.raises(ValueError) as refused:
        EvmClient("http://127.0.0.1:1", private_key=key, chain_id=chain_id)
    assert key.removeprefix("0x") not in str(refused.value)


# --- the offline check ---------------------------------------------------------------


@pytest.fixture
def anchored(ganache: Ganache) -> tuple[str, bytes, EvmAnchor]:
    """An anchor confirmed on ganache: its hash, digest and place."""
    digest = _digest()
    with _client(ganache) as client:
        sent = client.send_anchor(digest)
        followed = client.follow(sent.tx_hash, 1)
    assert isinstance(followed, Confirmed)
    return sent.tx_hash, digest, followed.anchor


def test_check_anchor_passes_a_confirmed_anchor(
    ganache: Ganache, anchored: tuple[str, bytes, EvmAnchor]
) -> None:
    tx_hash, digest, anchor = anchored
    ganache.mine(2)
    assert check_anchor(ganache.url, tx_hash, digest, chain_id=1337, confirmations=3) == anchor
    assert check_anchor(ganache.url, tx_hash.upper().replace("0X", "0x"), digest,
                        chain_id=1337, confirmations=1) == anchor


def _not_an_anchor(chain: Ganache) -> str:
    tx_hash: str = chain.rpc("eth_sendTransaction", {
        "from": chain.address, "to": chain.address, "data": "0x" + b"hello".hex(),
    })
    return tx_hash


def _someone_else(chain: Ganache) -> str:
    other = chain.rpc("eth_accounts")[1]
    tx_hash: str = chain.rpc("eth_sendTransaction", {
        "from": chain.address, "to": other, "data": "0x" + anchor_data(b"\x07" * 32).hex(),
    })
    return tx_hash


CASES: dict[str, tuple[str, Callable[[Ganache, str, bytes], dict[str, Any]], str]] = {
    "another digest": ("data", lambda c, h, d: {"digest": _digest()}, "it anchors"),
    "too few confirmations": (
        "confirmations", lambda c, h, d: {"confirmations": 2}, "1, fewer than 2",
    ),
    "an unknown transaction": (
        "transaction", lambda c, h, d: {"tx_hash": "0x" + secrets.token_hex(32)}, "not know",
    ),
    "not an anchor": (
        "data", lambda c, h, d: {"tx_hash": _not_an_anchor(c)}, "not a checkpoint anchor",
    ),
    "not to itself": (
        "self-transfer", lambda c, h, d: {"tx_hash": _someone_else(c), "digest": b"\x07" * 32},
        "is from",
    ),
    "another chain": ("chain", lambda c, h, d: {"chain_id": 1}, "is chain 1337, not 1"),
    "a malformed hash": ("transaction", lambda c, h, d: {"tx_hash": h[:-1]}, "64 hex digits"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_anchor_fails_naming_the_check(
    ganache: Ganache, anchored: tuple[str, bytes, EvmAnchor], case: str
) -> None:
    check, change, reason = CASES[case]
    tx_hash, digest, _ = anchored
    arguments: dict[str, Any] = {"tx_hash": tx_hash, "digest": digest, "chain_id": 1337,
                                 "confirmations": 1}
    arguments.update(change(ganache, tx_hash, digest))
    with pytest.raises(AnchorCheckFailed, match=reason) as failed:
        check_anchor(ganache.url, **arguments)
    assert failed.value.check == check
    assert str(failed.value).startswith(f"{check}: ")
    assert "\n" not in str(failed.value)


def test_check_anchor_fails_once_a_reorganisation_removed_the_anchor(ganache: Ganache) -> None:
    digest = _digest()
    with _client(ganache) as client:
        before = ganache.snapshot()
        sent = client.send_anchor(digest)
        check_anchor(ganache.url, sent.tx_hash, digest, chain_id=1337, confirmations=1)
        ganache.revert(before)
    with pytest.raises(AnchorCheckFailed, match=r"^transaction: "):
        check_anchor(ganache.url, sent.tx_hash, digest, chain_id=1337, confirmations=1)


# --- what ganache cannot show: a fake node ----------------------------------------------


@attrs.define
class _FakeNode:
    """Answers the JSON-RPC methods the client calls, from ``answers`` (a result or an error)."""

    answers: dict[str, Any]
    calls: list[str] = attrs.Factory(list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        asked = json.loads(request.content)
        self.calls.append(asked["method"])
        answer = self.answers[asked["method"]]
        if callable(answer):
            answer = answer(*asked["params"])
        body = answer if isinstance(answer, dict) and "error" in answer else {"result": answer}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": asked["id"], **body})


BASE_ANSWERS: dict[str, Any] = {
    "eth_chainId": "0x539",
    "eth_getTransactionCount": "0x5",
    "eth_getBlockByNumber": {"baseFeePerGas": "0x3b9aca00", "hash": "0x" + "ab" * 32},
    "eth_maxPriorityFeePerGas": "0x1",
    "eth_gasPrice": "0x77359400",
    "eth_blockNumber": "0x10",
}


def _fake_client(**answers: Any) -> tuple[EvmClient, _FakeNode]:
    node = _FakeNode({**BASE_ANSWERS, **answers})
    client = EvmClient("http://node.invalid", private_key="0x" + "11" * 32, chain_id=1337,
                       transport=httpx.MockTransport(node))
    return client, node


def test_the_nonce_race_is_retried_a_bounded_number_of_times() -> None:
    error = {"error": {"code": -32000, "message": "nonce too low"}}
    client, node = _fake_client(eth_sendRawTransaction=error)
    with client, pytest.raises(ChainUnavailable, match=r"no free nonce.*nonce too low"):
        client.send_anchor(_digest())
    assert node.calls.count("eth_sendRawTransaction") == NONCE_ATTEMPTS
    assert node.calls.count("eth_chainId") == 1


def test_already_known_is_success() -> None:
    error = {"error": {"code": -32000, "message": "already known"}}
    client, node = _fake_client(eth_sendRawTransaction=error)
    with client:
        sent = client.send_anchor(_digest())
        client.rebroadcast(sent.raw_tx)
    assert sent.nonce == 5
    assert node.calls.count("eth_sendRawTransaction") == 2


def test_without_eth_max_priority_fee_the_transaction_is_legacy() -> None:
    unsupported = {"error": {"code": -32601, "message": "the method does not exist"}}
    client, node = _fake_client(
        eth_maxPriorityFeePerGas=unsupported,
        eth_sendRawTransaction=lambda raw: "0x" + keccak(hexstr=raw).hex(),
    )
    with client:
        sent = client.send_anchor(_digest())
    assert int(sent.raw_tx[2:4], 16) >= 0xC0  # an RLP list: legacy, not a typed envelope
    assert "eth_gasPrice" in node.calls


def test_a_reverted_receipt_raises() -> None:
    tx_hash = "0x" + "cd" * 32
    receipt = {"blockNumber": "0x10", "blockHash": "0x" + "ab" * 32, "status": "0x0"}
    client, _ = _fake_client(eth_getTransactionReceipt=receipt)
    with client, pytest.raises(AnchorReverted, match="reverted in block 16"):
        client.follow(tx_hash, 1)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"jsonrpc": "2.0", "id": 99}'])
def test_an_answer_that_is_not_json_rpc_is_unavailable(body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with EvmClient("http://node.invalid", private_key="0x" + "11" * 32, chain_id=1337,
                   transport=transport) as client, pytest.raises(ChainUnavailable, match="node"):
        client.follow("0x" + "00" * 32, 1)


def test_the_service_keeps_the_interpreters_recursion_limit() -> None:
    """Importing the chain client (eth_account, py_ecc) leaves the recursion limit alone.

    py_ecc raises it to 100,000; with that, JSON nested a few hundred
    thousand deep crashed the process instead of answering 422.
    """
    import subprocess
    import sys

    code = (
        "import sys; before = sys.getrecursionlimit(); import vault_http.app, actors.system;"
        " import vault.adapters.evm; print(before, sys.getrecursionlimit())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == out[1]
