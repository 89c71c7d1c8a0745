"""``migrate`` opens the log on a database made by the release before it.

The fixtures are dumps of real databases that release wrote (commit
15b7d6d, hash-chained ledger): five documents uploaded in order, one then
verified, one archived. Their chain entries must become the first
``registered`` leaves, in the chain's order; their documents keep their
references; a receipt's proof and a verification hold for them as for any
document; and migrating again changes nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from actors.log_reads import evidence_for
from tests.pg import PgDatabase, with_database
from tests.vault.store_helpers import integrate_all, make_document, upload
from vault.adapters.stores.postgres import PostgresMetadataStore
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.checkpoint import Checkpoint, signed_checkpoint
from vault.domain.leaf import Leaf, LeafKind
from vault.domain.lifecycle import log_problem
from vault.domain.log import SignedCheckpoint
from vault.domain.models import DocumentStatus
from vault.domain.note import Signer
from vault.ports import MetadataStore

FIXTURES = Path(__file__).with_name("fixtures")
DOCUMENTS = [UUID(int=0x1000 + i) for i in range(5)]
REFERENCES = {
    DOCUMENTS[0]: "0x16838474ee58404829ba55ea6cadb7a1dda26e96862537c553c08605408597ab",
    DOCUMENTS[1]: "0x49bcc7b030b7d64636b0b899ea95728f91289600860e3a37c251673952c8f314",
    DOCUMENTS[2]: "0x7f6633c2348f4113a332e2f564efe516050163eefd7c3daa0a8417ac3f5c7f31",
    DOCUMENTS[3]: "0x2e24eea433ad32acb4c205527734a676508435956699ec5374c6dcce2c91b80d",
    DOCUMENTS[4]: "0x8d70934617297aac345727d997a63d7077632ebb80f79c5fceb58077b44d5f84",
}
"""What the release before the log recorded as each document's on_chain_reference."""


@pytest.fixture
def sqlite_release(tmp_path: Path) -> Iterator[MetadataStore]:
    path = tmp_path / "vault.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "release-1.sqlite.sql").read_text())
    conn.close()
    store = SQLiteMetadataStore(path)
    yield store
    store.close()


@pytest.fixture
def postgres_release(pg_database: PgDatabase) -> Iterator[MetadataStore]:
    name = f"vault_release1_{secrets.token_hex(4)}"
    dump = "\n".join(
        line
        for line in (FIXTURES / "release-1.postgres.sql").read_text().splitlines()
        if not line.startswith("\\")  # psql's \restrict guard, not SQL
    )
    with pg_database.connect(pg_database.admin_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_database.admin_url, name)
    try:
        with pg_database.connect(url) as conn:
            conn.execute(dump.encode())
        store = PostgresMetadataStore(url)
        try:
            yield store
        finally:
            store.close()
    finally:
        with pg_database.connect(pg_database.admin_url) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            ))


@pytest.fixture(params=["sqlite", "postgres"])
def release(request: pytest.FixtureRequest) -> MetadataStore:
    store: MetadataStore = request.getfixturevalue(f"{request.param}_release")
    return store


def _sign(store: MetadataStore) -> Signer:
    signer = Signer.from_key("vault.test/log", Ed25519PrivateKey.generate())
    head = store.ledger_head()
    note = signed_checkpoint(Checkpoint("vault.test/log", head.size, head.tree.root()), signer)
    store.add_checkpoint(SignedCheckpoint(head.size, head.tree.root(), note, datetime.now(UTC)))
    return signer


def test_the_chain_opens_the_log_in_its_order(release: MetadataStore) -> None:
    """Every chain entry is a registered leaf, in chain order; references are kept."""
    release.migrate()

    assert release.pending_leaves() == 5
    assert integrate_all(release) == 5
    leaves = [Leaf.parse(raw) for raw in release.ledger_leaves(0, 5)]
    assert [leaf.document_id for leaf in leaves] == DOCUMENTS
    assert {leaf.kind for leaf in leaves} == {LeafKind.REGISTERED}
    for leaf in leaves:
        doc = release.get_document(leaf.document_id)
        assert doc.on_chain_reference == REFERENCES[doc.id]
        assert (leaf.sha256, leaf.size) == (doc.sha256_hash, doc.size_bytes)
        assert (leaf.entity_type, leaf.entity_id) == (doc.entity_type, doc.entity_id)
        millis = doc.created_at.microsecond // 1000 * 1000
        assert leaf.time == doc.created_at.replace(microsecond=millis)
    statuses = [release.get_document(d).status for d in DOCUMENTS]
    assert statuses[1:3] == [DocumentStatus.VERIFIED, DocumentStatus.ARCHIVED]


def test_migrating_again_changes_nothing(release: MetadataStore) -> None:
    release.migrate()
    integrate_all(release)
    log_id = release.ledger_head().log_id

    release.migrate()

    assert release.pending_leaves() == 0
    assert release.ledger_head().size == 5
    assert release.ledger_head().log_id == log_id


def test_old_documents_verify_and_new_ones_follow(release: MetadataStore) -> None:
    """The log's checks hold for documents the chain registered; new leaves come after."""
    release.migrate()
    fresh = upload(release, make_document())
    integrate_all(release)
    signer = _sign(release)

    for document_id in [*DOCUMENTS, fresh.id]:
        doc = release.get_document(document_id)
        evidence = evidence_for(release, doc)
        assert log_problem(doc, evidence, signer.verifier()) is None, document_id
    assert release.registered_leaf(fresh.id) is not None
    assert release.registered_leaf(fresh.id).leaf_index == 5  # type: ignore[union-attr]


def test_an_old_reference_naming_no_entry_is_a_problem(release: MetadataStore) -> None:
    """A legacy document whose reference was rewritten no longer names its chain entry."""
    release.migrate()
    integrate_all(release)
    signer = _sign(release)
    doc = release.get_document(DOCUMENTS[0])
    changed = attrs.evolve(doc, on_chain_reference="0x" + "ab" * 32)
    problem = log_problem(changed, evidence_for(release, changed), signer.verifier())
    assert problem == "ledger reference names neither the registered leaf nor a hash-chain entry"
