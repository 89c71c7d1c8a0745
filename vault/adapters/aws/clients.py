"""boto3 clients as the service builds them, and the mapping of botocore's errors.

Every AWS adapter (S3, SQS, SNS) gets its client here, so region, keys,
endpoint overrides, timeouts and retries are decided in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vault.config import Settings
from vault.domain.errors import DependencyUnavailable


def aws_client(
    settings: Settings, service: str, *, read_timeout: float = 30.0, attempts: int = 3
) -> Any:
    """A boto3 client honouring the region, the keys and the endpoint overrides."""
    endpoint = settings.aws_endpoint_url
    if service == "s3" and settings.aws_s3_endpoint_url:
        endpoint = settings.aws_s3_endpoint_url
    session = boto3.session.Session(
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region or "us-east-1",
    )
    config = Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        # Presigned download URLs must be SigV4 (botocore signs V2 in us-east-1).
        signature_version="s3v4" if service == "s3" else None,
    )
    return session.client(service, endpoint_url=endpoint, config=config)


@contextmanager
def map_aws_errors(what: str) -> Iterator[None]:
    """botocore's errors become ``DependencyUnavailable`` naming ``what`` failed."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise DependencyUnavailable(f"{what}: {exc}") from exc
