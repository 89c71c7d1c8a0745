"""What the blob-store suites share: keys and secrets, payloads, and S3 on moto.

The contract suite (``test_blob_contract.py``) and the backend suites
(``test_blobs_local.py``, ``test_blobs_s3.py``) import from here.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
from botocore.config import Config

from vault.adapters.blobs.s3 import ensure_bucket

MiB = 1024 * 1024
KEY = "documents/9b2f3c1e-5d4a-4e8b-a1c2-3d4e5f607182"
MASTER_KEY = bytes(range(32))
SIGNING_SECRET = b"signing-secret-0123456789abcdef!"
BASE_URL = "http://vault.test:8000"
KMS_KEY_ID = "arn:aws:kms:us-east-1:123456789012:key/0b7a4c5e-1f2d-4e3a-9c8b-7a6d5e4f3a2b"


def payload(size: int) -> bytes:
    """Random-looking bytes of any size, cheaply (a random block repeated)."""
    block = os.urandom(4096)
    return (block * (size // len(block) + 1))[:size]


def s3_client(endpoint: str, **config: Any) -> Any:
    """An S3 client as the service builds one (``vault.adapters.aws.clients``), signing SigV4."""
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"max_attempts": 3, "mode": "standard"},
        "signature_version": "s3v4",
    }
    options.update(config)
    session = boto3.session.Session(region_name="us-east-1")
    return session.client("s3", endpoint_url=endpoint, config=Config(**options))


def new_bucket(client: Any, *, versioned: bool = True) -> str:
    """A bucket without Object Lock (so tests can empty it), versioned unless asked not."""
    name = f"vault-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    if versioned:
        ensure_bucket(client, name)  # exists: only turns versioning on
    return name


def drop_bucket(client: Any, bucket: str) -> None:
    """Abort pending uploads, delete every version and marker, then the bucket."""
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=bucket)


def pending_uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def stored_versions(client: Any, bucket: str) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = client.list_object_versions(Bucket=bucket).get("Versions", [])
    return versions
