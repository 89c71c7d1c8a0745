"""eth_account, imported so that it leaves the interpreter as it found it.

eth_account imports py_ecc, which raises the interpreter's recursion limit
to 100,000 for its own sake. Past some 20,000 frames a deeply nested JSON
body overflows the C stack and kills the process (a segmentation fault)
instead of raising the RecursionError that ``load_json`` turns into a 422.
The limit is put back as soon as the import is done; nothing we call from
eth_account (signing a transaction) recurses anywhere near it.
"""

from __future__ import annotations

import sys

_LIMIT = sys.getrecursionlimit()
try:
    from eth_account import Account
    from eth_account.signers.local import LocalAccount
    from eth_account.types import TransactionDictType
finally:
    sys.setrecursionlimit(_LIMIT)

__all__ = ["Account", "LocalAccount", "TransactionDictType"]
