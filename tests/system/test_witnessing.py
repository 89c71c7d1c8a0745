"""Witnessing end to end: ``vault serve`` and real ``vault witness serve`` processes.

The vault signs with a key the test made (``LEDGER_SIGNING_KEY``, origin
``LEDGER_ORIGIN``), so the test can check its notes and forge checkpoints
of its own log. Each witness follows that log key; the vault lists them in
``LEDGER_WITNESSES`` with quorum 2 and publishes a checkpoint only once
both cosigned it. Covered: both up (and how long cosigning takes), one down
then back, and witnesses that hold a history the vault's log does not extend.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.service import run_cli, vault_env
from tests.system.witness_support import Witnessed, event_time, forged_request, witnessed
from vault.domain.checkpoint import checkpoint_body, open_checkpoint
from vault.domain.cosignature import CosignerKey, check_quorum, verify_cosignature
from vault.domain.note import Verifier

pytestmark = pytest.mark.system

A, B, C = "witness-a", "witness-b", "witness-c"
LATENCY_UPLOADS = 10


def _receipt_ready(d: Witnessed, document_id: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        answer = d.receipt(document_id)
        if answer.status_code == 202:
            return None
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return d.until(ready, f"the receipt of {document_id} to be published")


def _pending(d: Witnessed, document_id: str) -> None:
    answer = d.receipt(document_id)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "pending"
    assert answer.headers["Retry-After"] == "1"


def _assert_cosigned_by_both(d: Witnessed, note: str) -> None:
    """The log signed ``note`` and both witnesses cosigned it (quorum 2)."""
    open_checkpoint(note, Verifier.parse(d.log_key().strip()))
    result = check_quorum(note, d.cosigners(), 2)
    assert result.met, result
    assert [c.witness.name for c in result.cosigned] == [A, B]


def _published(d: Witnessed, size: int) -> dict[str, Any]:
    return d.until_health(lambda h: h["published_size"] >= size,
                          f"a published checkpoint of size {size}")


def _quantiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (f"n={len(ms)} p50={statistics.median(ms):.0f} ms"
            f" p90={ms[int(0.9 * (len(ms) - 1))]:.0f} ms max={ms[-1]:.0f} ms")


def test_both_witnesses_cosign_what_is_published(tmp_path: Path) -> None:
    """The checkpoint route, the receipt and ``vault receipt verify`` all carry both
    cosignatures; and how long a signed checkpoint waits for them."""
    with witnessed(tmp_path, quorum=2) as d:
        d.start_vault()
        assert d.checkpoint().status_code == 404  # nothing signed, nothing published
        first = d.upload()
        receipt = _receipt_ready(d, first)
        _assert_cosigned_by_both(d, receipt["checkpoint"])
        route = d.checkpoint()
        assert route.status_code == 200, route.text
        _assert_cosigned_by_both(d, route.text)
        assert checkpoint_body(route.text).size >= receipt["tree_size"] >= 1

        (tmp_path / "receipt.json").write_text(json.dumps(receipt))
        (tmp_path / "vault.vkey").write_text(d.log_key())
        offline = vault_env(PORT="not a port")
        keys = [arg for w in (A, B) for arg in ("--witness", d.keys[w].format())]
        verify = ("receipt", "verify", str(tmp_path / "receipt.json"),
                  "--key", str(tmp_path / "vault.vkey"))  # fmt: skip
        checked = run_cli(*verify, *keys, "--quorum", "2", env=offline)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        stranger = CosignerKey.generate("witness-z").verifier().format()
        short = run_cli(*verify, *keys, "--witness", stranger, "--quorum", "3", env=offline)
        assert short.returncode == 1, short.stdout + short.stderr

        # Latency: each upload is signed within the interval (0.2 s), then cosigned.
        upload_to_published = []
        for size in range(2, LATENCY_UPLOADS + 2):  # one leaf an upload
            started = time.monotonic()
            d.upload()
            _published(d, size)
            upload_to_published.append(time.monotonic() - started)
        health = d.health()
        assert health["published_size"] == health["checkpoint_size"] == LATENCY_UPLOADS + 1
        for name in (A, B):
            status = health["witnesses"][name]
            assert status["cosigned_size"] == health["published_size"]
            assert status["latency_ms"] is not None and status["latency_ms"] > 0
            assert status["failures"] == 0 and status["last_error"] is None
            assert status["cosignatures"] >= 1 and status["last_cosigned_at"] is not None

        signed = {line["tree_size"]: event_time(line) for line in d.logged("checkpoint_signed")}
        published = {line["tree_size"]: event_time(line)
                     for line in d.logged("checkpoint_published")}
        assert all(line["cosignatures"] == 2 for line in d.logged("checkpoint_published"))
        assert set(published) <= set(signed)
        signed_to_published = [(published[n] - signed[n]).total_seconds() for n in published]
        print(f"\nwitnessing latency, checkpoint_signed -> checkpoint_published (vault log):"
              f" {_quantiles(signed_to_published)};"
              f" upload returned -> published_size (health polled every 50 ms):"
              f" {_quantiles(upload_to_published)};"
              f" witness round trips: {health['witnesses'][A]['latency_ms']} ms (A),"
              f" {health['witnesses'][B]['latency_ms']} ms (B);"
              f" {len(signed)} signed, {len(published)} published")
        assert max(signed_to_published) < 5.0


def test_one_witness_down_holds_publication_until_it_is_back(tmp_path: Path) -> None:
    """With B stopped, signing and A's cosigning go on but nothing is published; once B
    is back (same port, key and state) publication catches up."""
    with witnessed(tmp_path, quorum=2) as d:
        d.start_vault()
        before = d.upload()
        _receipt_ready(d, before)
        old = d.health()["published_size"]
        assert old == 1

        d.witnesses[B].stop()
        during = d.upload()
        down = d.until_health(
            lambda h: h["checkpoint_size"] >= 2 and h["witnesses"][A]["cosigned_size"] >= 2
            and h["witnesses"][B]["failures"] > 0,
            "a new checkpoint, cosigned by A and failed at B",
        )
        b = down["witnesses"][B]
        assert b["cosigned_size"] == old
        assert b["last_error"] is not None
        assert "Connection refused" in b["last_error"], b["last_error"]
        assert d.witnesses[B].url in b["last_error"]
        assert down["witnesses"][A]["last_error"] is None
        assert down["published_size"] == old
        assert d.logged("witness_failed")

        d.upload()  # signing goes on; A keeps cosigning
        down = d.until_health(
            lambda h: h["checkpoint_size"] >= 3 and h["witnesses"][A]["cosigned_size"] >= 3,
            "A to cosign the next checkpoint too",
        )
        assert down["published_size"] == old
        route = d.checkpoint()
        assert route.status_code == 200
        assert checkpoint_body(route.text).size == old
        _assert_cosigned_by_both(d, route.text)
        _pending(d, during)
        assert _receipt_ready(d, before)["tree_size"] == old
        failures_while_down = d.witness_health(B)["failures"]

        restarted = time.monotonic()
        d.witnesses[B].start()
        back = d.until_health(
            lambda h: h["published_size"] == h["checkpoint_size"] >= 3,
            "publication to catch up once B is back",
        )
        catch_up = time.monotonic() - restarted
        print(f"\nB back after {failures_while_down} failures: published again"
              f" {catch_up:.2f} s after it listened; B: {back['witnesses'][B]}")
        b = back["witnesses"][B]
        assert b["cosigned_size"] == back["published_size"]
        assert b["last_error"] is None
        assert b["failures"] >= failures_while_down > 0

        receipt = _receipt_ready(d, during)
        assert receipt["tree_size"] == back["published_size"]
        _assert_cosigned_by_both(d, receipt["checkpoint"])
        _assert_cosigned_by_both(d, d.checkpoint().text)


def test_a_new_checkpoint_cuts_a_failing_couriers_backoff_short(tmp_path: Path) -> None:
    """B never came up: after two failures the courier waits 2 s, unless a new checkpoint
    is signed (module docstring of actors/witnessing.py), then it tries at once."""
    with witnessed(tmp_path, quorum=2, start=False) as d:
        d.witnesses[A].start()  # B's port stays closed: connection refused
        d.start_vault()
        d.upload()
        d.until_health(lambda h: h["witnesses"][B]["failures"] >= 2, "B to fail twice")
        d.upload()
        d.until_health(lambda h: h["checkpoint_size"] >= 2, "the second checkpoint")
        d.until_health(lambda h: h["witnesses"][B]["failures"] >= 3,
                       "B to be tried again for the new checkpoint", within=1.0)


# ------------------------------------------------------------ split view


def _stored(d: Witnessed, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the vault's SQLite file, read behind its back (WAL readers see commits)."""
    conn = sqlite3.connect(d.vault.data_dir / "vault.sqlite3")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _b_answered_409(d: Witnessed) -> bool:
    return any(
        line.get("event") == "add_checkpoint" and line.get("status") == 409
        for line in map(_json_or_empty, d.witnesses[B].log_tail().splitlines())
    )


def _json_or_empty(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    """A vault whose witnesses B and C were first shown checkpoints of *another* tree,
    signed with the vault's own key and origin (the key leaked, or the log lied to them):
    B a tree of 1000 leaves, larger than the vault's; C a tree of 1 leaf, the size the
    vault's first checkpoint will have. A is honest; quorum 2 of the 3."""
    with witnessed(tmp_path_factory.mktemp("split"), (A, B, C), quorum=2, start=False) as d:
        for name in (A, B, C):
            d.witnesses[name].start()
        for name, size in ((B, 1000), (C, 1)):
            body = forged_request(d.signer, size)
            fed = d.witnesses[name].post(body)
            assert fed.status_code == 200, fed.text
            forged_note = body.partition("\n\n")[2]
            assert verify_cosignature(forged_note + fed.text, d.keys[name]) > 0
        d.start_vault()
        d.upload()
        d.until_health(
            lambda h: h["witnesses"][A]["cosigned_size"] >= 1
            and h["witnesses"][C]["failures"] > 0,
            "A to cosign the first checkpoint and C to refuse it",
        )
        d.until(lambda: _b_answered_409(d), "B to answer the vault with its own size")
        d.until_health(
            lambda h: h["witnesses"][B]["cosigned_size"] != 0 or h["witnesses"][B]["failures"],
            "the vault to take in B's answer",
        )
        yield d


def test_a_split_view_is_never_published_as_cosigned(split: Witnessed) -> None:
    """Neither B nor C cosigns the vault's tree; with only A, quorum 2 is never met:
    nothing is published, no receipt is served, no cosignature of B or C is kept."""
    d = split
    document_id = d.upload()
    health = d.until_health(
        lambda h: h["checkpoint_size"] >= 2 and h["witnesses"][A]["cosigned_size"] >= 2,
        "A to cosign the second checkpoint",
    )
    print("\nsplit view, what the operator sees:", json.dumps(
        {k: health[k] for k in ("checkpoint_size", "published_size", "witnesses")}, indent=1))
    assert health["published_size"] == 0
    assert d.checkpoint().status_code == 404
    _pending(d, document_id)
    assert _stored(d, "SELECT size FROM ledger_published") == []
    kept = {witness for witness, in _stored(d, "SELECT witness FROM ledger_cosignatures")}
    assert kept == {d.keys[A].format()}
    for name in (B, C):
        assert health["witnesses"][name]["cosignatures"] == 0
        assert health["witnesses"][name]["last_cosigned_at"] is None

    # C holds a tree of size 1 the vault's size-1 checkpoint contradicts: a 422, shown.
    c = health["witnesses"][C]
    assert c["failures"] > 0
    assert c["last_error"] is not None and "HTTP 422" in c["last_error"], c["last_error"]
    assert c["cosigned_size"] <= health["checkpoint_size"]

    # The witnesses themselves keep their own history: B still answers 1000 to the vault's
    # real checkpoint, C refuses any extension of the vault's tree.
    ((note,),) = _stored(d, "SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
    assert d.witnesses[B].post(f"old 0\n\n{note}").text == "1000\n"
    refused = d.witnesses[C].post(f"old 0\n\n{note}")
    assert (refused.status_code, refused.text) == (409, "1\n")


def test_health_names_a_witness_ahead_of_the_log(split: Witnessed) -> None:
    """B's size is beyond anything the vault's log signed: health says something is wrong
    with B, and does not claim B cosigned a size the log never had."""
    health = split.health()
    b = health["witnesses"][B]
    assert b["cosigned_size"] <= health["checkpoint_size"], b
    assert b["failures"] > 0, b
    assert b["last_error"] is not None, b
