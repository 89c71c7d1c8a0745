"""Building the adapters the configuration asks for.

No Trio here, and nothing connects yet except where a constructor must
(opening the SQLite file); ``open_adapters`` also applies the schema and
clears what a crashed writer left behind, so it blocks: call it from a
worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.adapters.aws.clients import aws_client
from vault.adapters.aws.sinks import SnsSink, SqsSink
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.blobs.log_mirror import S3LogMirror
from vault.adapters.blobs.s3 import S3BlobStore
from vault.adapters.blobs.signing import UrlSigner
from vault.adapters.key_files import load_or_create_key
from vault.adapters.log_sink import LogSink
from vault.adapters.stores.postgres import PostgresMetadataStore
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.adapters.webhook import WebhookSink
from vault.config import Settings
from vault.domain.errors import ConfigError
from vault.domain.events import Destination
from vault.domain.note import load_signing_key
from vault.ports import BlobStore, EventSink, MetadataStore


@attrs.frozen
class Adapters:
    """Every outside system the service talks to, opened and ready."""

    store: MetadataStore
    blobs: BlobStore
    sinks: dict[Destination, EventSink]
    signer: UrlSigner | None
    """Set when this service serves its blob store's signed URLs itself (the embedded default)."""
    ledger_key: Ed25519PrivateKey
    """The key that signs the ledger's checkpoints."""
    log_mirror: S3LogMirror | None = None
    """The log's static copy under ``ledger/`` in the documents' bucket, with S3 configured."""


def open_adapters(settings: Settings) -> Adapters:
    """Open the store (schema applied), the blob store and the sinks. Blocks."""
    signer = url_signer(settings)
    store = open_metadata_store(settings)
    store.migrate()
    check_size_limit(settings, store)
    blobs = open_blob_store(settings, signer)
    if isinstance(blobs, LocalBlobStore):
        blobs.clean_stale_tmp()
    return Adapters(
        store=store,
        blobs=blobs,
        sinks=event_sinks(settings),
        signer=signer if isinstance(blobs, LocalBlobStore) else None,
        ledger_key=ledger_signing_key(settings),
        log_mirror=log_mirror(settings),
    )


def log_mirror(settings: Settings) -> S3LogMirror | None:
    """The S3 mirror of the log, in the documents' bucket, when one is configured."""
    if settings.document_vault_bucket is None:
        return None
    return S3LogMirror(aws_client(settings, "s3"), settings.document_vault_bucket)


def ledger_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """``LEDGER_SIGNING_KEY``, or the key file under ``VAULT_DATA_DIR`` (made on first start).

    The file holds the key's 32-byte seed, mode 0600; outside ``local`` and
    ``test`` the settings already insist on the variable.
    """
    if settings.ledger_signing_key is not None:
        return load_signing_key(settings.ledger_signing_key, "LEDGER_SIGNING_KEY")
    seed = load_or_create_key(settings.vault_data_dir / "keys" / "ledger-signing.key")
    return Ed25519PrivateKey.from_private_bytes(seed)


def check_size_limit(settings: Settings, store: MetadataStore) -> None:
    """Refuse to start with a size limit whose documents the store could not record."""
    limit = store.size_limit()
    if settings.max_upload_file_size_bytes > limit:
        raise ConfigError(
            "MAX_UPLOAD_FILE_SIZE_BYTES",
            f"{settings.max_upload_file_size_bytes} is more than the database can record"
            f" as a document's size (at most {limit})",
        )


def open_metadata_store(settings: Settings) -> MetadataStore:
    """SQLite for ``sqlite:///path`` (the default), PostgreSQL otherwise."""
    url = settings.effective_database_url
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteMetadataStore(path)
    try:
        return PostgresMetadataStore(url, pre_ping=settings.database_pool_pre_ping)
    except ValueError as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from None


def url_signer(settings: Settings) -> UrlSigner:
    return UrlSigner(load_or_create_key(settings.vault_data_dir / "keys" / "url-signing.key"))


def open_blob_store(settings: Settings, signer: UrlSigner) -> BlobStore:
    """S3 with SSE-KMS when ``DOCUMENT_VAULT_BUCKET`` is set, else encrypted local files."""
    if settings.document_vault_bucket is not None:
        assert settings.aws_s3_kms_key_id is not None  # checked with the settings
        return S3BlobStore(
            aws_client(settings, "s3"), settings.document_vault_bucket, settings.aws_s3_kms_key_id
        )
    root = settings.vault_data_dir / "blobs"
    master = load_or_create_key(settings.vault_data_dir / "keys" / "blob-master.key")
    return LocalBlobStore(root, master, signer, settings.effective_public_base_url)


SINK_READ_TIMEOUT = 10.0
SINK_ATTEMPTS = 2
"""A send must end well inside the publisher's send window (half its 60 s
lease), or another replica could claim and send the same rows meanwhile."""


def _sink_client(settings: Settings, service: str) -> Any:
    return aws_client(settings, service, read_timeout=SINK_READ_TIMEOUT, attempts=SINK_ATTEMPTS)


def event_sinks(settings: Settings) -> dict[Destination, EventSink]:
    """A queue, topic or webhook sink where one is configured, else the log."""
    sinks: dict[Destination, EventSink] = {}
    if settings.document_events_queue_url:
        sinks[Destination.DOCUMENT_EVENTS] = SqsSink(
            "sqs:document_events", _sink_client(settings, "sqs"),
            settings.document_events_queue_url,
        )
    if settings.audit_sns_topic_arn:
        sinks[Destination.AUDIT_EVENTS] = SnsSink(
            "sns:audit_events", _sink_client(settings, "sns"), settings.audit_sns_topic_arn
        )
    if settings.compliance_alert_queue_url:
        sinks[Destination.INTEGRITY_ALERTS] = SqsSink(
            "sqs:integrity_alerts", _sink_client(settings, "sqs"),
            settings.compliance_alert_queue_url,
        )
    if settings.incident_webhook_url:
        sinks[Destination.INCIDENT_NOTIFICATIONS] = WebhookSink(settings.incident_webhook_url)
    for destination in Destination:
        sinks.setdefault(destination, LogSink(f"log:{destination.value}"))
    return sinks
