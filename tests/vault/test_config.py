"""Configuration from the environment: names, defaults, and one-line failures."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from vault.config import DEFAULT_ALLOWED_MIME_TYPES, Settings
from vault.domain.errors import ConfigError
from vault.domain.models import Role

ROOT = Path(__file__).resolve().parents[2]


class TestDefaults:
    def test_seed_defaults(self) -> None:
        """An empty environment gives the seed's defaults."""
        s = Settings.from_env({})
        assert s.environment == "local"
        assert s.log_level == "INFO" and s.log_format == "json"
        assert s.max_upload_file_size_bytes == 104_857_600
        assert s.allowed_mime_types == DEFAULT_ALLOWED_MIME_TYPES
        assert s.enable_duplicate_hash_detection is True
        assert s.epr_mock_mode is True
        assert s.presigned_url_expiration_seconds == 900
        assert s.enable_document_consumer is True
        assert s.document_consumer_max_messages == 5
        assert s.document_consumer_wait_time == 20
        assert s.document_consumer_visibility_timeout is None
        assert s.database_pool_pre_ping is True

    def test_contract_additions_defaults(self) -> None:
        """The contract's own variables default as it says."""
        s = Settings.from_env({"PORT": "8123"})
        assert (s.host, s.port) == ("0.0.0.0", 8123)
        assert s.vault_data_dir == Path("./var")
        assert s.shutdown_grace_seconds == 20
        assert s.epr_service_timeout == 5
        assert s.effective_public_base_url == "http://127.0.0.1:8123"
        assert s.effective_database_url == "sqlite:///var/vault.sqlite3"

    def test_empty_values_count_as_unset(self) -> None:
        """A variable set to an empty string takes its default (as in a copied .env.example)."""
        assert Settings.from_env({"PORT": "", "ENVIRONMENT": ""}).port == 8000


class TestParsing:
    def test_allowed_mime_types_comma_list(self) -> None:
        """A comma-separated list is trimmed, lowercased and deduplicated."""
        s = Settings.from_env({"ALLOWED_MIME_TYPES": " application/pdf, TEXT/plain,text/plain"})
        assert s.allowed_mime_types == ("application/pdf", "text/plain")

    def test_allowed_mime_types_json_array(self) -> None:
        """A JSON array is accepted too."""
        s = Settings.from_env({"ALLOWED_MIME_TYPES": '["image/png", "image/jpeg"]'})
        assert s.allowed_mime_types == ("image/png", "image/jpeg")

    def test_outbox_and_housekeeping(self) -> None:
        """Retention, lease and orphan grace have their defaults and take numbers."""
        default = Settings.from_env({})
        assert (
            default.outbox_retention_hours,
            default.outbox_lease_seconds,
            default.orphan_blob_grace_seconds,
        ) == (168.0, 60.0, 300.0)
        set_ = Settings.from_env({
            "OUTBOX_RETENTION_HOURS": "0.5", "OUTBOX_LEASE_SECONDS": "5",
            "ORPHAN_BLOB_GRACE_SECONDS": "0",
        })  # fmt: skip
        assert (set_.outbox_retention_hours, set_.outbox_lease_seconds) == (0.5, 5.0)
        assert set_.orphan_blob_grace_seconds == 0.0

    def test_mock_roles(self) -> None:
        """EPR_MOCK_ROLES maps actor UUIDs to roles."""
        actor = uuid.uuid4()
        s = Settings.from_env({"EPR_MOCK_ROLES": f'{{"{actor}": "auditor"}}'})
        assert s.epr_mock_roles == {actor: Role.AUDITOR}

    @pytest.mark.parametrize(
        "url",
        ["postgresql://u:p@h:5432/db", "postgresql+psycopg://u@h/db", "sqlite:///tmp/x.db"],
    )
    def test_database_url_forms(self, url: str) -> None:
        """The three DATABASE_URL forms of the contract are accepted."""
        assert Settings.from_env({"DATABASE_URL": url}).database_url == url


class TestRejections:
    @pytest.mark.parametrize(
        ("env", "variable"),
        [
            ({"PORT": "abc"}, "PORT"),
            ({"PORT": "70000"}, "PORT"),
            ({"ENVIRONMENT": "production"}, "ENVIRONMENT"),
            ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
            ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
            ({"EPR_MOCK_MODE": "maybe"}, "EPR_MOCK_MODE"),
            ({"PRESIGNED_URL_EXPIRATION_SECONDS": "3601"}, "PRESIGNED_URL_EXPIRATION_SECONDS"),
            ({"PRESIGNED_URL_EXPIRATION_SECONDS": "0"}, "PRESIGNED_URL_EXPIRATION_SECONDS"),
            ({"MAX_UPLOAD_FILE_SIZE_BYTES": "0"}, "MAX_UPLOAD_FILE_SIZE_BYTES"),
            ({"ALLOWED_MIME_TYPES": "pdf"}, "ALLOWED_MIME_TYPES"),
            ({"ALLOWED_MIME_TYPES": "[1, 2]"}, "ALLOWED_MIME_TYPES"),
            ({"DATABASE_URL": "mysql://h/db"}, "DATABASE_URL"),
            ({"DOCUMENT_EVENTS_QUEUE_URL": "not a url"}, "DOCUMENT_EVENTS_QUEUE_URL"),
            ({"AUDIT_SNS_TOPIC_ARN": "topic"}, "AUDIT_SNS_TOPIC_ARN"),
            ({"EPR_MOCK_ROLES": '{"x": "admin"}'}, "EPR_MOCK_ROLES"),
            ({"EPR_MOCK_ROLES": "[]"}, "EPR_MOCK_ROLES"),
            ({"DOCUMENT_CONSUMER_MAX_MESSAGES": "11"}, "DOCUMENT_CONSUMER_MAX_MESSAGES"),
            ({"SHUTDOWN_GRACE_SECONDS": "-1"}, "SHUTDOWN_GRACE_SECONDS"),
            ({"SHUTDOWN_GRACE_SECONDS": "inf"}, "SHUTDOWN_GRACE_SECONDS"),
            ({"EPR_CACHE_TTL_SECONDS": "inf"}, "EPR_CACHE_TTL_SECONDS"),
            ({"EPR_SERVICE_TIMEOUT": "nan"}, "EPR_SERVICE_TIMEOUT"),
            ({"OUTBOX_RETENTION_HOURS": "-1"}, "OUTBOX_RETENTION_HOURS"),
            ({"OUTBOX_RETENTION_HOURS": "a week"}, "OUTBOX_RETENTION_HOURS"),
            ({"OUTBOX_LEASE_SECONDS": "0"}, "OUTBOX_LEASE_SECONDS"),
            ({"OUTBOX_LEASE_SECONDS": "inf"}, "OUTBOX_LEASE_SECONDS"),
            ({"ORPHAN_BLOB_GRACE_SECONDS": "-5"}, "ORPHAN_BLOB_GRACE_SECONDS"),
            ({"ENVIRONMENT": "prod"}, "JWT_PUBLIC_KEY"),
            ({"EPR_MOCK_MODE": "false"}, "EPR_SERVICE_URL"),
            ({"DOCUMENT_VAULT_BUCKET": "b"}, "AWS_S3_KMS_KEY_ID"),
            ({"LEDGER_ORIGIN": "vault example"}, "LEDGER_ORIGIN"),
            ({"LEDGER_ORIGIN": "vault+example"}, "LEDGER_ORIGIN"),
            ({"LEDGER_SIGNING_KEY": "not a key"}, "LEDGER_SIGNING_KEY"),
            ({"LEDGER_CHECKPOINT_INTERVAL_SECONDS": "0"}, "LEDGER_CHECKPOINT_INTERVAL_SECONDS"),
            ({"LEDGER_CHECKPOINT_INTERVAL_SECONDS": "soon"}, "LEDGER_CHECKPOINT_INTERVAL_SECONDS"),
        ],
    )
    def test_bad_value_names_its_variable(self, env: dict[str, str], variable: str) -> None:
        """Each bad value raises ConfigError naming the variable, in one line."""
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(env)
        assert caught.value.variable == variable
        assert str(caught.value).startswith(f"{variable}: ")
        assert "\n" not in str(caught.value)

    def test_database_password_never_in_the_error(self) -> None:
        """A rejected DATABASE_URL is echoed with its password masked."""
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"DATABASE_URL": "mysql://user:hunter2@h/db"})
        assert "hunter2" not in str(caught.value)


class TestDescribe:
    def test_secrets_masked(self) -> None:
        """check-config output masks URL passwords and the AWS secret key."""
        s = Settings.from_env({
            "DATABASE_URL": "postgresql://vault:s3cret@db:5432/vault",
            "AWS_SECRET_ACCESS_KEY": "abcdef",
        })
        shown = dict(s.describe())
        assert shown["DATABASE_URL"] == "postgresql://vault:****@db:5432/vault"
        assert shown["AWS_SECRET_ACCESS_KEY"] == "****"
        assert "s3cret" not in repr(shown) and "abcdef" not in repr(shown)

    def test_every_variable_listed_once(self) -> None:
        """describe() names every variable, and .env.example lists the same set."""
        names = [name for name, _ in Settings.from_env({}).describe()]
        assert len(names) == len(set(names))
        example = (ROOT / ".env.example").read_text()
        assert set(re.findall(r"^([A-Z0-9_]+)=", example, re.M)) == set(names)


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class TestLedgerSettings:
    def test_defaults(self) -> None:
        s = Settings.from_env({})
        assert (s.ledger_origin, s.ledger_signing_key) == (None, None)
        assert s.ledger_checkpoint_interval_seconds == 1.0

    def test_a_signing_key_is_required_outside_local_and_test(self) -> None:
        """With JWT set, ENVIRONMENT=prod still stops without LEDGER_SIGNING_KEY."""
        jwt = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ENVIRONMENT": "prod", "JWT_PUBLIC_KEY": jwt})
        assert caught.value.variable == "LEDGER_SIGNING_KEY"
        key = _pem(ed25519.Ed25519PrivateKey.generate())
        s = Settings.from_env(
            {"ENVIRONMENT": "prod", "JWT_PUBLIC_KEY": jwt, "LEDGER_SIGNING_KEY": key}
        )
        assert s.ledger_signing_key == key.strip()

    def test_a_key_of_another_kind_is_refused(self) -> None:
        rsa_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        with pytest.raises(ConfigError, match="not an Ed25519 private key"):
            Settings.from_env({"LEDGER_SIGNING_KEY": rsa_key})

    def test_a_key_on_one_line_is_accepted(self) -> None:
        key = _pem(ed25519.Ed25519PrivateKey.generate())
        one_line = key.strip().replace("\n", "\\n")
        assert Settings.from_env({"LEDGER_SIGNING_KEY": one_line}).ledger_signing_key

    def test_the_signing_key_is_masked(self) -> None:
        key = _pem(ed25519.Ed25519PrivateKey.generate())
        shown = dict(Settings.from_env({"LEDGER_SIGNING_KEY": key}).describe())
        assert shown["LEDGER_SIGNING_KEY"] == "****"
        assert "PRIVATE" not in repr(Settings.from_env({"LEDGER_SIGNING_KEY": key}))
