"""``--backends postgres-s3``: a fresh PostgreSQL database and moto's server for S3 and KMS."""

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from ops.bench.console import BenchError, progress
from ops.bench.records import Backends
from ops.bench.server import HEALTH_INTERVAL_S, HEALTH_TRIES, free_port, stop_process

BACKENDS = ("embedded", "postgres-s3")
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_CONNECT_TIMEOUT_S = 5
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
MOTO_REGION = "us-east-1"
# What could send the spawned server's AWS clients anywhere but moto.
AWS_REDIRECTS = ("AWS_S3_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def with_database(url: str, dbname: str) -> str:
    """A PostgreSQL URL naming another database on the same server, query kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise ValueError(f"not a postgresql:// URL: {mask_password(url)}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


def mask_password(url: str) -> str:
    """The URL with its password, if any, shown as ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def postgres_s3_env(
    database_url: str, aws_endpoint: str, bucket: str, kms_key_id: str
) -> dict[str, str | None]:
    """Variables that put a server on PostgreSQL and S3 at aws_endpoint (None: unset it)."""
    return {
        "DATABASE_URL": database_url,
        "DOCUMENT_VAULT_BUCKET": bucket,
        "AWS_S3_KMS_KEY_ID": kms_key_id,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_REGION": MOTO_REGION,
        **MOTO_CREDENTIALS,
        **dict.fromkeys(AWS_REDIRECTS),
    }


def create_database(admin_url: str, run_tag: str) -> tuple[str, Callable[[], None]]:
    """A new database on admin_url's server: its URL, and a function that drops it."""
    import psycopg
    from psycopg import sql

    name = f"vault_bench_{run_tag}"
    try:
        with psycopg.connect(
            admin_url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
        ) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise BenchError(
            f"cannot create a database on {mask_password(admin_url)}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            " (--pg-admin-url names a server and a user allowed to CREATE DATABASE)"
        ) from None

    def drop() -> None:
        with psycopg.connect(
            admin_url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
        ) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        progress(f"dropped database {name}")

    return with_database(admin_url, name), drop


class MotoServer:
    """moto's server (``python -m moto.server``) on a free loopback port, in its own session."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            for _ in range(HEALTH_TRIES):
                if proc.poll() is not None:
                    raise BenchError(
                        f"moto's server exited with code {proc.returncode}: "
                        f"{self.log_path.read_text(errors='replace')[-500:]}"
                    )
                try:
                    r = client.get(f"{self.url}/moto-api/data.json")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(HEALTH_INTERVAL_S)
        raise BenchError(f"moto's server did not answer after {HEALTH_TRIES} tries; last: {last}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "moto's server")


def create_bucket_and_key(endpoint: str, run_tag: str) -> tuple[str, str]:
    """A versioned bucket and a KMS key on moto at endpoint: (bucket, key id)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from vault.adapters.blobs.s3 import ensure_bucket
    from vault.domain.errors import BlobStoreUnavailable

    session = boto3.session.Session(
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_REGION,
    )
    bucket = f"vault-bench-{run_tag}"
    try:
        s3 = session.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
        ensure_bucket(s3, bucket)
        kms = session.client("kms", endpoint_url=endpoint)
        key = kms.create_key(Description=f"{bucket} documents")["KeyMetadata"]["KeyId"]
    except (BotoCoreError, ClientError, BlobStoreUnavailable) as exc:
        raise BenchError(f"cannot prepare S3 and KMS on moto at {endpoint}: {exc}") from None
    return bucket, str(key)


def start_postgres_s3(
    stack: contextlib.ExitStack, admin_url: str, folder: Path
) -> tuple[dict[str, str | None], Backends]:
    """A fresh database on admin_url's server and moto's server, cleaned up by stack: the
    server's variables and a description for the report."""
    run_tag = uuid.uuid4().hex[:12]
    database_url, drop = create_database(admin_url, run_tag)
    stack.callback(drop)
    progress(f"created database {urlsplit(database_url).path.lstrip('/')}")
    moto = MotoServer(folder)
    stack.callback(moto.stop)
    moto.start()
    progress(f"moto's server pid {moto.proc.pid if moto.proc else 'n/a'} on {moto.url}")
    bucket, key = create_bucket_and_key(moto.url, run_tag)
    progress(f"bucket {bucket} (versioned), KMS key {key}")
    described = Backends(
        database=mask_password(database_url),
        s3=f"{moto.url}/{bucket} (moto)",
        kms=key,
    )
    return postgres_s3_env(database_url, moto.url, bucket, key), described
