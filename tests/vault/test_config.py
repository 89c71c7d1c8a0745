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


def _self_signed(tmp_path: Path) -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TSA root")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class TestOutsideSettings:
    """Witnesses, the TSA and the chain: parsed whole, or refused naming the variable."""

    def witness(self, name: str = "w1.example") -> str:
        from vault.domain.cosignature import CosignerKey

        return CosignerKey.generate(name).verifier().format()

    def test_defaults(self) -> None:
        s = Settings.from_env({})
        assert s.ledger_witnesses == () and s.witness_quorum == 0
        assert s.ledger_tsa_url is None and s.ledger_timestamp_interval_seconds == 3600
        assert s.blockchain_endpoint_url is None and s.blockchain_confirmations == 1
        assert s.ledger_anchor_interval_seconds == 3600

    def test_witnesses_and_quorum(self) -> None:
        import json

        keys = [self.witness("w1.example"), self.witness("w2.example")]
        raw = json.dumps([{"url": "https://w1/", "key": keys[0]},
                          {"url": "http://w2:8181", "key": keys[1]}])
        s = Settings.from_env({"LEDGER_WITNESSES": raw})
        assert [(w.url, w.key.format()) for w in s.ledger_witnesses] == [
            ("https://w1", keys[0]), ("http://w2:8181", keys[1]),
        ]
        assert s.witness_quorum == 2
        one = Settings.from_env({"LEDGER_WITNESSES": raw, "LEDGER_WITNESS_QUORUM": "1"})
        assert one.witness_quorum == 1
        shown = dict(one.describe())["LEDGER_WITNESSES"]
        assert [w["key"] for w in json.loads(shown)] == keys

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("not json", "JSON array"),
            ("[]", "at least one"),
            ('[{"url": "https://w"}]', "entry 0"),
            ('[{"url": "ftp://w", "key": "KEY"}]', "not an http(s) URL"),
            ('[{"url": "https://w", "key": "w+1+AAAA"}]', "entry 0: key"),
            ('[{"url": "https://w", "key": 7}]', "not a verifier key string"),
        ],
    )
    def test_bad_witnesses_are_refused(self, value: str, says: str) -> None:
        value = value.replace("KEY", self.witness())
        with pytest.raises(ConfigError, match="LEDGER_WITNESSES") as caught:
            Settings.from_env({"LEDGER_WITNESSES": value})
        assert says in str(caught.value)

    def test_a_witness_listed_twice_is_refused(self) -> None:
        key = self.witness()
        raw = f'[{{"url": "https://a", "key": "{key}"}}, {{"url": "https://b", "key": "{key}"}}]'
        with pytest.raises(ConfigError, match="listed twice"):
            Settings.from_env({"LEDGER_WITNESSES": raw})

    @pytest.mark.parametrize("quorum", ["0", "3"])
    def test_a_quorum_beyond_the_witnesses_is_refused(self, quorum: str) -> None:
        raw = f'[{{"url": "https://a", "key": "{self.witness()}"}}]'
        with pytest.raises(ConfigError, match="LEDGER_WITNESS_QUORUM"):
            Settings.from_env({"LEDGER_WITNESSES": raw, "LEDGER_WITNESS_QUORUM": quorum})
        with pytest.raises(ConfigError, match="LEDGER_WITNESS_QUORUM"):
            Settings.from_env({"LEDGER_WITNESS_QUORUM": "1"})

    def test_tsa_certificates_from_a_file_or_inline(self, tmp_path: Path) -> None:
        pem = _self_signed(tmp_path)
        path = tmp_path / "tsa.pem"
        path.write_bytes(pem + pem)
        from_file = Settings.from_env(
            {"LEDGER_TSA_URL": "https://tsa.example", "LEDGER_TSA_CERTS": str(path)}
        )
        assert from_file.ledger_tsa_certs == (pem, pem)
        inline = pem.decode().replace("\n", "\\n")
        assert Settings.from_env({"LEDGER_TSA_CERTS": inline}).ledger_tsa_certs == (pem,)
        assert dict(from_file.describe())["LEDGER_TSA_CERTS"] == "2 certificate(s)"

    def test_a_tsa_needs_its_certificates(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"LEDGER_TSA_CERTS.*required"):
            Settings.from_env({"LEDGER_TSA_URL": "https://tsa.example"})
        with pytest.raises(ConfigError, match=r"LEDGER_TSA_CERTS.*cannot read"):
            Settings.from_env({"LEDGER_TSA_CERTS": str(tmp_path / "missing.pem")})
        (tmp_path / "empty.pem").write_text("nothing here")
        with pytest.raises(ConfigError, match=r"LEDGER_TSA_CERTS.*PEM"):
            Settings.from_env({"LEDGER_TSA_CERTS": str(tmp_path / "empty.pem")})

    def test_a_chain_needs_its_key_and_id(self) -> None:
        key = "0x" + "1f" * 32
        url = "http://127.0.0.1:8545"
        with pytest.raises(ConfigError, match="BLOCKCHAIN_PRIVATE_KEY"):
            Settings.from_env({"BLOCKCHAIN_ENDPOINT_URL": url, "BLOCKCHAIN_CHAIN_ID": "1"})
        with pytest.raises(ConfigError, match="BLOCKCHAIN_CHAIN_ID"):
            Settings.from_env({"BLOCKCHAIN_ENDPOINT_URL": url, "BLOCKCHAIN_PRIVATE_KEY": key})
        s = Settings.from_env({
            "BLOCKCHAIN_ENDPOINT_URL": url, "BLOCKCHAIN_PRIVATE_KEY": key,
            "BLOCKCHAIN_CHAIN_ID": "1337", "BLOCKCHAIN_CONFIRMATIONS": "3",
        })
        assert (s.blockchain_chain_id, s.blockchain_confirmations) == (1337, 3)
        assert dict(s.describe())["BLOCKCHAIN_PRIVATE_KEY"] == "****"
        assert key not in repr(s)

    @pytest.mark.parametrize("key", ["1f" * 32, "0x" + "1f" * 31, "0x" + "zz" * 32])
    def test_a_malformed_chain_key_is_refused_without_showing_it(self, key: str) -> None:
        with pytest.raises(ConfigError, match="BLOCKCHAIN_PRIVATE_KEY") as caught:
            Settings.from_env({"BLOCKCHAIN_PRIVATE_KEY": key})
        assert key not in str(caught.value)
