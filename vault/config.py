"""Configuration from the environment: the seed's variables, names and defaults,
plus the contract's additions.

``Settings.from_env`` reads and checks everything at once; the first bad
value raises ``ConfigError`` naming its variable, which the command line
prints as one line. Nothing here connects to anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs

from vault.config_reader import (
    DEFAULT_ALLOWED_MIME_TYPES,
    Reader,
    WitnessSpec,
    mask_url_password,
)
from vault.domain.errors import ConfigError
from vault.domain.models import Role
from vault.domain.note import load_signing_key
from vault.domain.tokens import load_verification_key

__all__ = [
    "DEFAULT_ALLOWED_MIME_TYPES", "ConfigError", "Settings", "WitnessSpec", "mask_url_password",
]

ENVIRONMENTS = ("local", "dev", "staging", "prod", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_URL_EXPIRY_SECONDS = 3600


@attrs.frozen
class Settings:
    """Every setting the service reads, already parsed and checked."""

    # Core
    environment: str = "local"
    database_url: str | None = None
    database_pool_pre_ping: bool = True
    log_level: str = "INFO"
    log_format: str = "json"
    vault_data_dir: Path = Path("./var")
    host: str = "0.0.0.0"
    port: int = 8000
    public_base_url: str | None = None
    shutdown_grace_seconds: float = 20.0
    # AWS and storage
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_endpoint_url: str | None = None
    aws_s3_endpoint_url: str | None = None
    document_vault_bucket: str | None = None
    aws_s3_kms_key_id: str | None = None
    # Events and queues
    document_events_queue_url: str | None = None
    audit_sns_topic_arn: str | None = None
    compliance_alert_queue_url: str | None = None
    # Entity-deletion consumer
    enable_document_consumer: bool = True
    document_vault_sqs_url: str | None = None
    document_consumer_max_messages: int = 5
    document_consumer_wait_time: int = 20
    document_consumer_visibility_timeout: int | None = None
    # Outbox and housekeeping
    outbox_retention_hours: float = 168.0
    outbox_lease_seconds: float = 60.0
    orphan_blob_grace_seconds: float = 300.0
    # Upload validation
    max_upload_file_size_bytes: int = 104_857_600
    allowed_mime_types: tuple[str, ...] = DEFAULT_ALLOWED_MIME_TYPES
    enable_duplicate_hash_detection: bool = True
    # Access control
    epr_service_url: str | None = None
    epr_mock_mode: bool = True
    epr_mock_roles: Mapping[UUID, Role] = attrs.field(factory=dict)
    epr_service_timeout: float = 5.0
    epr_cache_ttl_seconds: float = 30.0
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    presigned_url_expiration_seconds: int = 900
    # The verifiable ledger
    ledger_origin: str | None = None
    """None: ``document-vault.local/<log id>``, the log id kept in the database."""
    ledger_signing_key: str | None = attrs.field(default=None, repr=False)
    """An Ed25519 private key (PEM); None: a key file under VAULT_DATA_DIR (local/test)."""
    ledger_checkpoint_interval_seconds: float = 1.0
    # The log's checkpoints outside: witnesses, timestamps, a chain
    ledger_witnesses: tuple[WitnessSpec, ...] = ()
    ledger_witness_quorum: int | None = None
    """None: every witness listed."""
    ledger_tsa_url: str | None = None
    ledger_tsa_certs: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    ledger_timestamp_interval_seconds: float = 3600.0
    blockchain_endpoint_url: str | None = None
    blockchain_private_key: str | None = attrs.field(default=None, repr=False)
    blockchain_chain_id: int | None = None
    blockchain_confirmations: int = 1
    ledger_anchor_interval_seconds: float = 3600.0
    # Continuous integrity
    integrity_sweep_period_hours: float = 168.0
    """Every document is re-verified at least this often; 0 turns the sweep off."""
    integrity_sweep_max_mb_per_second: float = 50.0
    entity_freeze_on_mismatch: bool = True
    incident_webhook_url: str | None = attrs.field(default=None, repr=False)
    """Where incident and freeze notifications are POSTed (a secret: Slack's holds a token)."""
    # ECS deployment (read by ops/ scripts; listed so check-config shows them)
    log_group_name: str | None = None
    ecs_execution_role_arn: str | None = None
    ecs_task_role_arn: str | None = None

    @property
    def effective_public_base_url(self) -> str:
        return (self.public_base_url or f"http://127.0.0.1:{self.port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.vault_data_dir / 'vault.sqlite3'}"

    @property
    def header_identity_allowed(self) -> bool:
        return self.jwt_public_key is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse every variable; raise ``ConfigError`` naming the first bad one."""
        r = Reader(env)
        settings = cls(
            environment=r.choice("ENVIRONMENT", ENVIRONMENTS, "local"),
            database_url=r.database_url("DATABASE_URL"),
            database_pool_pre_ping=r.boolean("DATABASE_POOL_PRE_PING", True),
            log_level=r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            log_format=r.choice("LOG_FORMAT", ("json", "text"), "json"),
            vault_data_dir=Path(r.text("VAULT_DATA_DIR") or "./var"),
            host=r.text("HOST") or "0.0.0.0",
            port=r.integer("PORT", 8000, low=0, high=65535),
            public_base_url=r.url("PUBLIC_BASE_URL"),
            shutdown_grace_seconds=r.number(
                "SHUTDOWN_GRACE_SECONDS", 20.0, low=0.0, high=3600.0
            ),
            aws_region=r.text("AWS_REGION"),
            aws_access_key_id=r.text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=r.text("AWS_SECRET_ACCESS_KEY"),
            aws_endpoint_url=r.url("AWS_ENDPOINT_URL"),
            aws_s3_endpoint_url=r.url("AWS_S3_ENDPOINT_URL"),
            document_vault_bucket=r.text("DOCUMENT_VAULT_BUCKET"),
            aws_s3_kms_key_id=r.text("AWS_S3_KMS_KEY_ID"),
            document_events_queue_url=r.url("DOCUMENT_EVENTS_QUEUE_URL"),
            audit_sns_topic_arn=r.arn("AUDIT_SNS_TOPIC_ARN"),
            compliance_alert_queue_url=r.url("COMPLIANCE_ALERT_QUEUE_URL"),
            enable_document_consumer=r.boolean("ENABLE_DOCUMENT_CONSUMER", True),
            document_vault_sqs_url=r.url("DOCUMENT_VAULT_SQS_URL"),
            document_consumer_max_messages=r.integer(
                "DOCUMENT_CONSUMER_MAX_MESSAGES", 5, low=1, high=10
            ),
            document_consumer_wait_time=r.integer(
                "DOCUMENT_CONSUMER_WAIT_TIME", 20, low=0, high=20
            ),
            document_consumer_visibility_timeout=r.optional_integer(
                "DOCUMENT_CONSUMER_VISIBILITY_TIMEOUT", low=0, high=43200
            ),
            outbox_retention_hours=r.number(
                "OUTBOX_RETENTION_HOURS", 168.0, low=0.0, high=24.0 * 3650
            ),
            outbox_lease_seconds=r.number("OUTBOX_LEASE_SECONDS", 60.0, low=1.0, high=3600.0),
            orphan_blob_grace_seconds=r.number(
                "ORPHAN_BLOB_GRACE_SECONDS", 300.0, low=0.0, high=7 * 86400.0
            ),
            max_upload_file_size_bytes=r.integer("MAX_UPLOAD_FILE_SIZE_BYTES", 104_857_600, low=1),
            allowed_mime_types=r.mime_types("ALLOWED_MIME_TYPES"),
            enable_duplicate_hash_detection=r.boolean("ENABLE_DUPLICATE_HASH_DETECTION", True),
            epr_service_url=r.url("EPR_SERVICE_URL"),
            epr_mock_mode=r.boolean("EPR_MOCK_MODE", True),
            epr_mock_roles=r.mock_roles("EPR_MOCK_ROLES"),
            epr_service_timeout=r.number("EPR_SERVICE_TIMEOUT", 5.0, low=0.001, high=300.0),
            epr_cache_ttl_seconds=r.number(
                "EPR_CACHE_TTL_SECONDS", 30.0, low=0.0, high=3600.0
            ),
            jwt_public_key=r.text("JWT_PUBLIC_KEY"),
            jwt_issuer=r.text("JWT_ISSUER"),
            jwt_audience=r.text("JWT_AUDIENCE"),
            presigned_url_expiration_seconds=r.integer(
                "PRESIGNED_URL_EXPIRATION_SECONDS", 900, low=1, high=MAX_URL_EXPIRY_SECONDS
            ),
            ledger_origin=r.key_name("LEDGER_ORIGIN"),
            ledger_signing_key=r.text("LEDGER_SIGNING_KEY"),
            ledger_checkpoint_interval_seconds=r.number(
                "LEDGER_CHECKPOINT_INTERVAL_SECONDS", 1.0, low=0.01, high=3600.0
            ),
            ledger_witnesses=r.witnesses("LEDGER_WITNESSES"),
            ledger_witness_quorum=r.optional_integer("LEDGER_WITNESS_QUORUM", low=1, high=64),
            ledger_tsa_url=r.url("LEDGER_TSA_URL"),
            ledger_tsa_certs=r.certificates("LEDGER_TSA_CERTS"),
            ledger_timestamp_interval_seconds=r.number(
                "LEDGER_TIMESTAMP_INTERVAL_SECONDS", 3600.0, low=0.01, high=86400.0 * 366
            ),
            blockchain_endpoint_url=r.url("BLOCKCHAIN_ENDPOINT_URL"),
            blockchain_private_key=r.private_key("BLOCKCHAIN_PRIVATE_KEY"),
            blockchain_chain_id=r.optional_integer("BLOCKCHAIN_CHAIN_ID", low=1, high=2**63 - 1),
            blockchain_confirmations=r.integer("BLOCKCHAIN_CONFIRMATIONS", 1, low=1, high=1000),
            ledger_anchor_interval_seconds=r.number(
                "LEDGER_ANCHOR_INTERVAL_SECONDS", 3600.0, low=0.01, high=86400.0 * 366
            ),
            integrity_sweep_period_hours=r.number(
                "INTEGRITY_SWEEP_PERIOD_HOURS", 168.0, low=0.0, high=24.0 * 3660
            ),
            integrity_sweep_max_mb_per_second=r.number(
                "INTEGRITY_SWEEP_MAX_MB_PER_SECOND", 50.0, low=0.001, high=100_000.0
            ),
            entity_freeze_on_mismatch=r.boolean("ENTITY_FREEZE_ON_MISMATCH", True),
            incident_webhook_url=r.url("INCIDENT_WEBHOOK_URL"),
            log_group_name=r.text("LOG_GROUP_NAME"),
            ecs_execution_role_arn=r.text("ECS_EXECUTION_ROLE_ARN"),
            ecs_task_role_arn=r.text("ECS_TASK_ROLE_ARN"),
        )
        settings.check_combinations()
        return settings

    def check_combinations(self) -> None:
        """Rules that involve more than one variable."""
        if self.environment not in ("local", "test") and self.jwt_public_key is None:
            raise ConfigError(
                "JWT_PUBLIC_KEY",
                f"required when ENVIRONMENT={self.environment} (header identity is only "
                "allowed in local and test)",
            )
        if self.jwt_public_key is not None:
            load_verification_key(self.jwt_public_key)  # ConfigError naming JWT_PUBLIC_KEY
        if self.environment not in ("local", "test") and self.ledger_signing_key is None:
            raise ConfigError(
                "LEDGER_SIGNING_KEY",
                f"required when ENVIRONMENT={self.environment} (a key file under"
                " VAULT_DATA_DIR is only made in local and test)",
            )
        if self.ledger_signing_key is not None:
            load_signing_key(self.ledger_signing_key, "LEDGER_SIGNING_KEY")
        self._check_outside()
        if not self.epr_mock_mode and self.epr_service_url is None:
            raise ConfigError("EPR_SERVICE_URL", "required when EPR_MOCK_MODE=false")
        if self.document_vault_bucket is not None and self.aws_s3_kms_key_id is None:
            raise ConfigError("AWS_S3_KMS_KEY_ID", "required when DOCUMENT_VAULT_BUCKET is set")

    @property
    def witness_quorum(self) -> int:
        """How many witnesses must cosign a checkpoint before it is published (0: none listed)."""
        if self.ledger_witness_quorum is None:
            return len(self.ledger_witnesses)
        return self.ledger_witness_quorum

    def _check_outside(self) -> None:
        quorum = self.ledger_witness_quorum
        if quorum is not None and not 1 <= quorum <= len(self.ledger_witnesses):
            raise ConfigError(
                "LEDGER_WITNESS_QUORUM",
                f"must be between 1 and the {len(self.ledger_witnesses)} LEDGER_WITNESSES listed",
            )
        if self.ledger_tsa_url is not None and not self.ledger_tsa_certs:
            raise ConfigError(
                "LEDGER_TSA_CERTS", "required when LEDGER_TSA_URL is set (to check its answers)"
            )
        if self.blockchain_endpoint_url is not None:
            for name, value in (("BLOCKCHAIN_PRIVATE_KEY", self.blockchain_private_key),
                                ("BLOCKCHAIN_CHAIN_ID", self.blockchain_chain_id)):
                if value is None:
                    raise ConfigError(name, "required when BLOCKCHAIN_ENDPOINT_URL is set")

    def describe(self) -> list[tuple[str, str]]:
        """``(NAME, value)`` for every variable, secrets masked, for ``check-config``."""
        out: list[tuple[str, str]] = []
        for name, field in _ENV_NAMES.items():
            value = getattr(self, field)
            if name == "DATABASE_URL":
                value = self.effective_database_url
            elif name == "PUBLIC_BASE_URL":
                value = self.effective_public_base_url
            out.append((name, _show(name, value)))
        return out


_ENV_NAMES: dict[str, str] = {
    field.name.upper(): field.name for field in attrs.fields(Settings)
}

_SECRET_NAMES = {
    "AWS_SECRET_ACCESS_KEY", "LEDGER_SIGNING_KEY", "BLOCKCHAIN_PRIVATE_KEY", "INCIDENT_WEBHOOK_URL",
}


def _show(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _SECRET_NAMES:
        return "****"
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "LEDGER_WITNESSES":
        return json.dumps([{"url": w.url, "key": w.key.format()} for w in value]) if value else ""
    if name == "LEDGER_TSA_CERTS":
        return f"{len(value)} certificate(s)" if value else ""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, Mapping):
        return json.dumps({str(k): str(v) for k, v in value.items()})
    text = str(value)
    if "://" in text:
        text = mask_url_password(text)
    if name == "JWT_PUBLIC_KEY":
        return text.strip().splitlines()[0] + " … (set)"
    return text


