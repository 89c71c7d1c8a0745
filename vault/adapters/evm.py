"""A blocking JSON-RPC client anchoring checkpoint digests on an EVM chain.

An anchor is a transaction from the account of ``private_key`` to itself,
value 0, data ``anchor_data(digest)`` (``vault.domain.anchor``), gas limit
``anchor_gas_limit(data)``, signed with eth-account. Fees: EIP-1559 (type 2)
when the latest block has a ``baseFeePerGas`` and the node answers
``eth_maxPriorityFeePerGas``: that tip, ``maxFeePerGas`` = 2 x base fee + tip
(room for six full blocks in a row); otherwise legacy (EIP-155) at ``eth_gasPrice``.

``EvmClient`` checks ``eth_chainId`` at first use (``WrongChain``).
``send_anchor`` takes the ``"pending"`` nonce; when the node says it is taken
(a race with another process on the account: "nonce too low", "replacement
transaction underpriced", ganache's "doesn't have the correct nonce" or
"can't be replaced, mining has already started") it
reads it and signs again, ``NONCE_ATTEMPTS`` times in all, then raises
``ChainUnavailable``; "already known" is success (that very transaction is
in the pool). ``rebroadcast`` re-sends; "already known" or a used nonce is no
error there (the caller follows the hash). ``follow`` answers ``Confirmed``,
``Waiting`` or ``Dropped``. ``check_anchor`` is the offline auditor's check.

Errors: no connection, no answer in time, a status other than 200, not a
JSON-RPC answer, a JSON-RPC error (``NodeRefused``): ``ChainUnavailable``, a
``DependencyUnavailable`` naming the URL; httpx's errors go no further. A
receipt with status 0 is ``AnchorReverted``, not transient: nonce and fee
spent, nothing anchored (an account with code, e.g. EIP-7702, is the cause).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Final

import attrs
import httpx

from vault.adapters.eth import Account, LocalAccount, TransactionDictType
from vault.adapters.http_answers import bounded_answer
from vault.domain import anchor as domain
from vault.domain.anchor import Confirmed, Dropped, EvmAnchor, FollowResult, SentAnchor, Waiting
from vault.domain.errors import DependencyUnavailable, VaultError

__all__ = [
    "AnchorCheckFailed", "AnchorReverted", "ChainUnavailable", "Confirmed", "Dropped",
    "EvmClient", "NodeRefused", "SentAnchor", "Waiting", "WrongChain", "check_anchor",
]

TIMEOUT_SECONDS: Final = 10.0
MAX_ANSWER_BYTES: Final = 1024 * 1024
NONCE_ATTEMPTS: Final = 5
"""Signatures ``send_anchor`` tries, one nonce each, before giving up on a race."""

_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")
_NONCE_TAKEN = (
    "nonce too low", "oldnonce", "replacement transaction underpriced", "transaction underpriced",
    "replacementnotallowed", "doesn't have the correct nonce", "can't be replaced, mining",
)
_HEX = frozenset("0123456789abcdef")
_UNSUPPORTED = ("does not exist", "not supported", "unsupported", "not found", "not available")


class ChainUnavailable(DependencyUnavailable):
    """The chain's node could not be reached, or did not answer a JSON-RPC result in time."""


class NodeRefused(ChainUnavailable):
    """The node answered a JSON-RPC error (``code``, ``message``)."""

    def __init__(self, url: str, method: str, code: object, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{url} refused {method}: {message} (JSON-RPC error {code})")


class WrongChain(ChainUnavailable, ValueError):
    """The node's ``eth_chainId`` is not the configured chain id: a configuration error."""


class AnchorReverted(VaultError):
    """A mined anchor's receipt has status 0: nonce and fee spent, nothing anchored."""

    def __init__(self, tx_hash: str, block_number: int) -> None:
        self.tx_hash = tx_hash
        self.block_number = block_number
        super().__init__(f"anchor transaction {tx_hash} reverted in block {block_number}")


class AnchorCheckFailed(ValueError):
    """An anchor failed the offline check named by ``check``; the message says why."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        super().__init__(f"{check}: {reason}")


class _Rpc:
    """JSON-RPC calls to one node; every failure is a ``ChainUnavailable`` naming the URL."""

    def __init__(self, url: str, timeout: float, transport: httpx.BaseTransport | None) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"not a JSON-RPC URL: {url!r}: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"not an http(s) JSON-RPC URL: {url!r}")
        self.url = url
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, *params: object) -> Any:
        request_id = next(self._ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        body = bounded_answer(
            self._client, "POST", self.url, limit=MAX_ANSWER_BYTES, error=ChainUnavailable,
            unreachable="cannot reach the chain at", content=json.dumps(request).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise ChainUnavailable(f"{self.url} did not answer {method} with its JSON-RPC answer")
        error = answer.get("error")
        if error is not None:
            said = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise NodeRefused(self.url, method, code, " ".join(str(said).split())[:300])
        if "result" not in answer:
            raise ChainUnavailable(f"{self.url} answered {method} without a result")
        return answer["result"]

    def quantity(self, method: str, *params: object) -> int:
        return self.integer(self.call(method, *params), method)

    def integer(self, value: object, what: str) -> int:
        if isinstance(value, str) and value[:2] in ("0x", "0X"):
            try:
                return int(value[2:], 16)
            except ValueError:
                pass
        raise ChainUnavailable(f"{self.url} answered a malformed quantity for {what}: {value!r}")

    def mapping(self, method: str, *params: object) -> dict[str, Any] | None:
        value = self.call(method, *params)
        if value is None or isinstance(value, dict):
            return value
        raise ChainUnavailable(f"{self.url} answered {method} with {type(value).__name__}")

    def hash32(self, value: object, what: str) -> str:
        if isinstance(value, str) and _is_hash(value.lower()):
            return value.lower()
        raise ChainUnavailable(f"{self.url} answered a malformed hash for {what}: {value!r}")

    def receipt(self, tx_hash: str) -> _Receipt | None:
        found = self.mapping("eth_getTransactionReceipt", tx_hash)
        if found is None:
            return None
        return _Receipt(
            block_number=self.integer(found.get("blockNumber"), "a receipt's blockNumber"),
            block_hash=self.hash32(found.get("blockHash"), "a receipt's blockHash"),
            status=self.integer(found.get("status"), "a receipt's status"),
        )

    def block_hash(self, number: int) -> str | None:
        block = self.mapping("eth_getBlockByNumber", hex(number), False)
        return None if block is None else self.hash32(block.get("hash"), "a block's hash")

    def seen(self, receipt: _Receipt) -> int | None:
        """Confirmations of ``receipt``'s block; None once that block is no longer the chain's."""
        latest = self.quantity("eth_blockNumber")
        if self.block_hash(receipt.block_number) != receipt.block_hash:
            return None
        return max(0, latest - receipt.block_number + 1)


@attrs.frozen
class _Receipt:
    block_number: int
    block_hash: str
    status: int


class EvmClient:
    """Anchors digests on the chain at ``url`` from the account of ``private_key`` (0x hex)."""

    def __init__(
        self, url: str, *, private_key: str, chain_id: int, timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id < 1:
            raise ValueError(f"a chain id is a positive integer, not {chain_id!r}")
        self._account = _account(private_key)
        self.address: str = self._account.address
        self.chain_id = chain_id
        self.url = url
        self._rpc = _Rpc(url, timeout, transport)
        self._chain_checked = False

    def close(self) -> None:
        self._rpc.close()

    def __enter__(self) -> EvmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_anchor(self, digest: bytes) -> SentAnchor:
        """Sign and send the anchor of ``digest`` (32 bytes) at the account's next nonce."""
        data = domain.anchor_data(digest)
        self._check_chain()
        last = ""
        for _ in range(NONCE_ATTEMPTS):
            nonce = self._rpc.quantity("eth_getTransactionCount", self.address, "pending")
            sent = self._sign(data, nonce)
            try:
                answered = self._rpc.call("eth_sendRawTransaction", sent.raw_tx)
            except NodeRefused as exc:
                if _said(exc, _ALREADY_KNOWN):
                    return sent
                if not _said(exc, _NONCE_TAKEN):
                    raise
                last = exc.message
                continue
            if not isinstance(answered, str) or answered.lower() != sent.tx_hash:
                raise ChainUnavailable(f"{self.url} took {sent.tx_hash} but named {answered!r}")
            return sent
        raise ChainUnavailable(
            f"{self.url}: no free nonce for an anchor in {NONCE_ATTEMPTS} tries (last: {last})"
        )

    def rebroadcast(self, raw_tx: str) -> None:
        """Send the signed ``raw_tx`` again; already known or a used nonce is not an error."""
        self._check_chain()
        try:
            self._rpc.call("eth_sendRawTransaction", raw_tx)
        except NodeRefused as exc:
            if not _said(exc, _ALREADY_KNOWN + _NONCE_TAKEN):
                raise

    def follow(self, tx_hash: str, confirmations: int) -> FollowResult:
        """How far ``tx_hash`` is towards ``confirmations`` (1: mined in the latest block).

        ``Confirmed`` needs the receipt's block to be the chain's block at that
        height still; a receipt from a block reorganised away is ``Waiting`` (or
        ``Dropped`` once the node does not know the transaction at all).
        ``AnchorReverted`` for a receipt with status 0.
        """
        tx_hash = _tx_hash(tx_hash)
        _check_confirmations(confirmations)
        self._check_chain()
        receipt = self._rpc.receipt(tx_hash)
        if receipt is not None:
            if receipt.status == 0:
                raise AnchorReverted(tx_hash, receipt.block_number)
            seen = self._rpc.seen(receipt)
            if seen is not None and seen >= confirmations:
                block_number, block_hash = receipt.block_number, receipt.block_hash
                return Confirmed(EvmAnchor(self.chain_id, tx_hash, block_number, block_hash))
            if seen is not None:
                return Waiting(receipt.block_number, seen)
        transaction = self._rpc.mapping("eth_getTransactionByHash", tx_hash)
        if transaction is None:
            return Dropped()
        number = transaction.get("blockNumber")
        return Waiting(None if number is None else self._rpc.integer(number, "blockNumber"), 0)

    def _check_chain(self) -> None:
        found = self.chain_id if self._chain_checked else self._rpc.quantity("eth_chainId")
        if found != self.chain_id:
            raise WrongChain(f"{self.url} is chain {found}, not the configured {self.chain_id}")
        self._chain_checked = True

    def _fees(self) -> dict[str, int]:
        latest = self._rpc.mapping("eth_getBlockByNumber", "latest", False) or {}
        if latest.get("baseFeePerGas") is not None:
            base_fee = self._rpc.integer(latest["baseFeePerGas"], "baseFeePerGas")
            try:
                tip = self._rpc.quantity("eth_maxPriorityFeePerGas")
            except NodeRefused as exc:
                if exc.code != -32601 and not _said(exc, _UNSUPPORTED):
                    raise
            else:
                return {"type": 2, "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip}
        return {"gasPrice": self._rpc.quantity("eth_gasPrice")}

    def _sign(self, data: bytes, nonce: int) -> SentAnchor:
        transaction: TransactionDictType = {
            "chainId": self.chain_id, "nonce": nonce, "to": self._account.address, "value": 0,
            "gas": domain.anchor_gas_limit(data), "data": data, **self._fees(),
        }
        signed = self._account.sign_transaction(transaction)
        raw_tx = "0x" + bytes(signed.raw_transaction).hex()
        return SentAnchor(tx_hash="0x" + bytes(signed.hash).hex(), nonce=nonce, raw_tx=raw_tx)


def check_anchor(
    url: str, tx_hash: str, digest: bytes, *, chain_id: int, confirmations: int,
    timeout: float = TIMEOUT_SECONDS, transport: httpx.BaseTransport | None = None,
) -> EvmAnchor:
    """Check, without a key, that ``tx_hash`` on the chain at ``url`` anchors ``digest``.

    The checks, in order, each named first in its ``AnchorCheckFailed``: ``chain``
    (``eth_chainId``), ``transaction`` (known), ``chain id`` (its field, if any),
    ``data`` (``anchor_data(digest)``), ``self-transfer`` (to its sender, value 0),
    ``receipt`` (status 1), ``block`` (the block at its height still has the
    receipt's hash), ``confirmations``. ``ChainUnavailable``: the chain cannot be asked.
    """
    expected = domain.anchor_data(digest)
    _check_confirmations(confirmations)
    try:
        tx_hash = _tx_hash(tx_hash)
    except ValueError as exc:
        raise AnchorCheckFailed("transaction", str(exc)) from None
    rpc = _Rpc(url, timeout, transport)
    try:
        found_chain = rpc.quantity("eth_chainId")
        if found_chain != chain_id:
            raise AnchorCheckFailed("chain", f"{url} is chain {found_chain}, not {chain_id}")
        transaction = rpc.mapping("eth_getTransactionByHash", tx_hash)
        if transaction is None:
            raise AnchorCheckFailed("transaction", f"{url} does not know {tx_hash}")
        _check_transaction(rpc, transaction, expected, chain_id)
        receipt = rpc.receipt(tx_hash)
        if receipt is None or receipt.status != 1:
            said = "no receipt: not mined" if receipt is None else f"status {receipt.status}"
            raise AnchorCheckFailed("receipt", f"{tx_hash} has {said}")
        seen, number, block_hash = rpc.seen(receipt), receipt.block_number, receipt.block_hash
        if seen is None:
            raise AnchorCheckFailed("block", f"block {number} is no longer {block_hash}")
        if seen < confirmations:
            raise AnchorCheckFailed("confirmations", f"{seen}, fewer than {confirmations}")
        return EvmAnchor(chain_id, tx_hash, number, block_hash)
    finally:
        rpc.close()


def _check_transaction(rpc: _Rpc, tx: dict[str, Any], expected: bytes, chain_id: int) -> None:
    if tx.get("chainId") is not None:
        tx_chain = rpc.integer(tx["chainId"], "a transaction's chainId")
        if tx_chain != chain_id:
            raise AnchorCheckFailed("chain id", f"the transaction is for chain {tx_chain}")
    data = _data(rpc, tx.get("input", tx.get("data")))
    if data != expected:
        try:
            other = domain.anchor_digest(data).hex()
        except domain.AnchorDataError as exc:
            raise AnchorCheckFailed("data", f"not a checkpoint anchor: {exc}") from None
        raise AnchorCheckFailed("data", f"it anchors {other}, not {expected[-32:].hex()}")
    sender, to = tx.get("from"), tx.get("to")
    value = rpc.integer(tx.get("value"), "a transaction's value")
    if not isinstance(sender, str) or not isinstance(to, str) or sender.lower() != to.lower():
        raise AnchorCheckFailed("self-transfer", f"the transaction is from {sender} to {to}")
    if value != 0:
        raise AnchorCheckFailed("self-transfer", f"the transaction carries value {value}")


def _data(rpc: _Rpc, text: object) -> bytes:
    if isinstance(text, str) and text[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    raise ChainUnavailable(f"{rpc.url} answered malformed transaction data: {text!r}"[:300])


def _account(private_key: str) -> LocalAccount:
    if not isinstance(private_key, str) or not _is_hash(private_key.lower()):
        raise ValueError("the private key is 0x and 64 hex digits")
    try:
        account: LocalAccount = Account.from_key(private_key)
    except ValueError:
        raise ValueError("the private key is not a valid secp256k1 key") from None
    return account


def _check_confirmations(confirmations: int) -> None:
    if isinstance(confirmations, bool) or not isinstance(confirmations, int) or confirmations < 1:
        raise ValueError(f"confirmations is an integer, at least 1: {confirmations!r}")


def _tx_hash(tx_hash: str) -> str:
    if not isinstance(tx_hash, str) or not _is_hash(tx_hash.lower()):
        raise ValueError(f"a transaction hash is 0x and 64 hex digits: {tx_hash!r}")
    return tx_hash.lower()


def _is_hash(text: str) -> bool:
    return len(text) == 66 and text[:2] == "0x" and all(c in _HEX for c in text[2:])


def _said(error: NodeRefused, phrases: tuple[str, ...]) -> bool:
    return any(phrase in error.message.lower() for phrase in phrases)
