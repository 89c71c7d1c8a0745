"""Choosing adapters from the configuration (no Trio here; nothing connects yet
except where a constructor must, such as opening the SQLite file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vault.aws_sinks import SnsSink, SqsSink
from vault.blobs_local import LocalBlobStore
from vault.blobs_s3 import S3BlobStore
from vault.config import Settings
from vault.errors import ConfigError
from vault.events import Destination
from vault.keys import load_or_create_key
from vault.ports import BlobStore, EventSink, MetadataStore
from vault.postgres_store import PostgresMetadataStore
from vault.signing import UrlSigner
from vault.sinks import LogSink
from vault.sqlite_store import SQLiteMetadataStore
from vault.sqs import aws_client


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
    """A queue or topic sink where one is configured, else the log."""
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
    for destination in Destination:
        sinks.setdefault(destination, LogSink(f"log:{destination.value}"))
    return sinks
