"""A real local EVM chain for tests: ganache 7.9.2 on a free loopback port.

ganache comes from ``tools/ganache`` (``package.json`` and its lock pin
``ganache@7.9.2``; ``make tools`` runs ``npm ci --prefix tools/ganache``).
``running_ganache()`` starts

    tools/ganache/node_modules/.bin/ganache --server.host 127.0.0.1
        --server.port N --wallet.deterministic --chain.chainId 1337 --logging.quiet

in its own process group, polls ``eth_chainId`` until it answers (bounded),
and kills the group on exit. It yields a ``Ganache``: ``url``, ``chain_id``,
``private_key`` / ``address`` (the deterministic wallet's first funded
account), ``rpc(method, *params)``, ``mine(n)``, ``snapshot()`` and
``revert(id)`` (``evm_snapshot``/``evm_revert``: reverting drops the
transactions mined since, as a reorganisation would).

Ganache mines each transaction as it arrives (eager instamine): a sent
transaction is in a block when ``eth_sendRawTransaction`` answers, and one
with a future nonce makes that call hang. It also accepts a signed
transaction with nonce 0 again and again (7.9.2 mines each copy), so
``running_ganache`` spends the account's nonce 0 on a plain self-transfer
before yielding: from then on the chain refuses a reused nonce as a node does.

``require_ganache`` skips a test when node or the installed ganache is
missing, and fails it under ``CI=true``. ``ganache`` is a module-scoped
fixture: import it into a test module or conftest (``from tests.ganache
import ganache``) and ask for it by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.polling import eventually_sync

GANACHE_VERSION = "7.9.2"
CHAIN_ID = 1337
FUNDED_KEY = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
"""``--wallet.deterministic``'s first account (1000 ETH), the one anchors are sent from."""
FUNDED_ADDRESS = "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1"
TOOLS = Path(__file__).resolve().parents[1] / "tools" / "ganache"
START_TIMEOUT = 30.0


class GanacheError(AssertionError):
    """ganache answered a JSON-RPC error to a call the test made directly."""

    def __init__(self, method: str, error: object) -> None:
        self.error = error
        super().__init__(f"ganache refused {method}: {error}")


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing ganache fails the run)", pytrace=False)
    pytest.skip(reason)


def require_ganache() -> list[str]:
    """The command starting ganache; skips the test without it (fails it under CI=true)."""
    node = shutil.which("node")
    if node is None:
        _missing("no node binary on PATH: the EVM tests run ganache (npm) on node")
    binary = TOOLS / "node_modules" / ".bin" / "ganache"
    manifest = TOOLS / "node_modules" / "ganache" / "package.json"
    if not binary.exists() or not manifest.exists():
        _missing(f"ganache is not installed in {TOOLS}: run `make tools` (npm ci there)")
    version = json.loads(manifest.read_text()).get("version")
    if version != GANACHE_VERSION:
        _missing(f"{TOOLS} holds ganache {version}, not {GANACHE_VERSION}: run `make tools`")
    return [str(node), str(binary.resolve())]


@attrs.define
class Ganache:
    """A running ganache and a JSON-RPC client of it."""

    url: str
    chain_id: int
    private_key: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    _client: httpx.Client = attrs.field(factory=lambda: httpx.Client(timeout=10.0))

    def rpc(self, method: str, *params: Any) -> Any:
        """The result of ``method(params)``; ``GanacheError`` for a JSON-RPC error."""
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        answer = self._client.post(self.url, json=request).json()
        if "error" in answer:
            raise GanacheError(method, answer["error"].get("message", answer["error"]))
        return answer["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, n: int = 1) -> int:
        """Mine ``n`` empty blocks; the new latest block number."""
        for _ in range(n):
            self.rpc("evm_mine")
        return self.block_number()

    def snapshot(self) -> str:
        """The id of a snapshot of the chain as it is now."""
        snapshot_id: str = self.rpc("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot_id: str) -> None:
        """Put the chain back as it was at ``snapshot_id`` (later blocks and their txs go)."""
        if self.rpc("evm_revert", snapshot_id) is not True:
            raise GanacheError("evm_revert", f"no snapshot {snapshot_id}")

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "ganache's output:\n" + "\n".join(text.splitlines()[-20:])

    def close(self) -> None:
        self._client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass
    else:
        process.wait()


def _ready(chain: Ganache) -> bool:
    if chain.process.poll() is not None:
        pytest.fail(f"ganache exited with {chain.process.returncode}\n{chain.log_tail()}")
    try:
        return int(chain.rpc("eth_chainId"), 16) == chain.chain_id
    except (httpx.TransportError, ValueError):
        return False


@contextmanager
def running_ganache() -> Iterator[Ganache]:
    """A fresh ganache chain (chain id 1337) on 127.0.0.1, stopped on exit."""
    command = require_ganache()
    with tempfile.TemporaryDirectory(prefix="ganache-") as folder:
        log = Path(folder) / "ganache.log"
        port = _free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, "--server.host", "127.0.0.1", "--server.port", str(port),
                 "--wallet.deterministic", "--chain.chainId", str(CHAIN_ID), "--logging.quiet"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        chain = Ganache(
            url=f"http://127.0.0.1:{port}", chain_id=CHAIN_ID, private_key=FUNDED_KEY,
            address=FUNDED_ADDRESS, process=process, log=log,
        )
        try:
            eventually_sync(
                lambda: _ready(chain), "ganache to answer eth_chainId",
                within=START_TIMEOUT, interval=0.05, describe=chain.log_tail,
            )
            # Spend nonce 0 (see the module's docstring): ganache replays nonce-0 transactions.
            chain.rpc("eth_sendTransaction", {"from": FUNDED_ADDRESS, "to": FUNDED_ADDRESS})
            assert int(chain.rpc("eth_getTransactionCount", FUNDED_ADDRESS, "latest"), 16) == 1
            yield chain
        finally:
            chain.close()
            _stop(process)


@pytest.fixture(scope="module")
def ganache() -> Iterator[Ganache]:
    """A ganache chain shared by one test module's tests."""
    with running_ganache() as chain:
        yield chain
