"""Anchoring a checkpoint on an EVM chain: the transaction data, and what an anchor is.

A checkpoint is anchored by one transaction from the vault's account to
itself, value 0, whose data (calldata) is::

    ANCHOR_PREFIX || SHA-256(checkpoint note text, UTF-8)

``ANCHOR_PREFIX`` is ``b"document-vault checkpoint v1\\n"`` (29 bytes), so
the data is always 61 bytes. The prefix is fixed: it tells a reader of the
chain what the 32 bytes after it are, and the ``v1`` names this layout. A
new layout gets a new prefix; this one never changes.

``anchor_data`` builds the data, ``anchor_digest`` reads it back (refusing
anything else with ``AnchorDataError``, a ``ValueError``), ``EvmAnchor`` is
where an anchor ended up (chain, transaction, block), and ``intrinsic_gas``
and ``floor_gas`` are what the transaction costs in gas (see
``anchor_gas_limit``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import attrs

ANCHOR_PREFIX: Final[bytes] = b"document-vault checkpoint v1\n"
"""The fixed opening of an anchor transaction's data; the digest follows it."""

DIGEST_SIZE: Final = 32
ANCHOR_DATA_SIZE: Final = len(ANCHOR_PREFIX) + DIGEST_SIZE

TX_BASE_GAS: Final = 21_000
"""Every transaction's base cost (yellow paper G_transaction)."""
ZERO_BYTE_GAS: Final = 4
NONZERO_BYTE_GAS: Final = 16
"""Calldata cost per byte since EIP-2028 (Istanbul)."""
FLOOR_GAS_PER_TOKEN: Final = 10
"""EIP-7623 (Prague): a zero byte is one token, a non-zero byte four."""

_HASH_HEX = re.compile(r"0x[0-9a-f]{64}")


class AnchorDataError(ValueError):
    """Transaction data that is not ``ANCHOR_PREFIX`` followed by a 32-byte digest."""


def checkpoint_digest(note_text: str) -> bytes:
    """The digest anchored for a signed checkpoint: SHA-256 of its note text as UTF-8."""
    return hashlib.sha256(note_text.encode("utf-8")).digest()


def anchor_data(digest: bytes) -> bytes:
    """The data of the transaction anchoring ``digest`` (32 bytes; ``ValueError`` otherwise)."""
    if not isinstance(digest, bytes | bytearray) or len(digest) != DIGEST_SIZE:
        raise ValueError(f"an anchored digest is {DIGEST_SIZE} bytes, not {_size(digest)}")
    return ANCHOR_PREFIX + bytes(digest)


def anchor_digest(data: bytes) -> bytes:
    """The digest in anchor transaction ``data``; ``AnchorDataError`` if it is not one."""
    if not data.startswith(ANCHOR_PREFIX):
        raise AnchorDataError("the data does not open with the checkpoint anchor prefix")
    if len(data) != ANCHOR_DATA_SIZE:
        raise AnchorDataError(
            f"the data after the anchor prefix is {len(data) - len(ANCHOR_PREFIX)} bytes,"
            f" not {DIGEST_SIZE}"
        )
    return data[len(ANCHOR_PREFIX):]


def intrinsic_gas(data: bytes) -> int:
    """Gas a plain transfer carrying ``data`` uses: 21000, 16 a non-zero byte, 4 a zero byte.

    What an anchor costs on a chain before Prague (and on ganache 7): the
    receipt's ``gasUsed`` is exactly this.
    """
    zeros = data.count(0)
    return TX_BASE_GAS + NONZERO_BYTE_GAS * (len(data) - zeros) + ZERO_BYTE_GAS * zeros


def floor_gas(data: bytes) -> int:
    """EIP-7623's floor for a transaction carrying ``data``: 21000 + 10 a token.

    From Prague (Ethereum mainnet since May 2025) a transaction uses at
    least this, and one whose gas limit is below it is invalid. An anchor's
    61 bytes are nearly all non-zero, so the floor (about 23,400) is above
    ``intrinsic_gas`` (about 22,000) there.
    """
    zeros = data.count(0)
    tokens = zeros + 4 * (len(data) - zeros)
    return TX_BASE_GAS + FLOOR_GAS_PER_TOKEN * tokens


def anchor_gas_limit(data: bytes) -> int:
    """The gas limit an anchor is sent with: valid before and after Prague.

    Only the gas used is paid, so the limit above ``intrinsic_gas`` costs
    nothing on an older chain.
    """
    return max(intrinsic_gas(data), floor_gas(data))


def _check_hash(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or _HASH_HEX.fullmatch(value) is None:
        raise ValueError(f"{attribute.name} must be 0x and 64 lowercase hex digits: {value!r}")


def _check_natural(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer: {value!r}")


@attrs.frozen
class EvmAnchor:
    """Where a checkpoint's digest is anchored: a mined transaction and the block holding it.

    Hashes are ``0x`` and 64 lowercase hex digits, as JSON-RPC writes them.
    """

    chain_id: int = attrs.field(validator=_check_natural)
    tx_hash: str = attrs.field(validator=_check_hash)
    block_number: int = attrs.field(validator=_check_natural)
    block_hash: str = attrs.field(validator=_check_hash)


@attrs.frozen
class SentAnchor:
    """A signed anchor the node accepted: its hash, nonce and raw bytes (``0x`` hex)."""

    tx_hash: str
    nonce: int
    raw_tx: str


@attrs.frozen
class Confirmed:
    """Mined, with at least the confirmations asked for, in a block still on the chain."""

    anchor: EvmAnchor


@attrs.frozen
class Waiting:
    """Known to the node: pending (``block_number`` None) or mined with ``seen`` < asked."""

    block_number: int | None
    seen: int


@attrs.frozen
class Dropped:
    """Neither mined nor pending (a reorganisation removed it, or the pool evicted it)."""


FollowResult = Confirmed | Waiting | Dropped


def _size(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value).__name__
