"""What the benchmark measures (sizes, clients, request counts) and the marks it must meet."""

import attrs

from ops.bench.units import KB, MB

DEFAULT_SIZES = (1 * MB, 10 * MB, 100 * MB)
# The memory and upload-rate verdicts look at the smallest size at least this large.
LARGE_SIZE = 100 * MB
# The verify verdict compares this size with hashlib SHA-256 on the same bytes.
VERIFY_SIZE = 10 * MB
SMALL_SIZE = 100 * KB
SMALL_CLIENTS = (1, 32)
DEFAULT_SMALL_REQUESTS = (200, 640)
READ_CLIENTS = 8
DEFAULT_READ_REQUESTS = 2000
LIST_ENTITY_DOCUMENTS = 50
LIST_DOCUMENT_SIZE = 10 * KB
DEFAULT_TIMEOUT_S = 600.0


@attrs.frozen
class Targets:
    """Pass marks; each is a floor or a ceiling as its name says."""

    large_rss_growth_mib: float = 64.0
    large_upload_mbps: float = 150.0
    verify_vs_sha256: float = 1 / 3
    small_rps: float = 100.0
    small_p99_s: float = 1.0
    list_rps: float = 500.0
    download_url_rps: float = 500.0


TARGET_PROFILES: dict[str, Targets] = {
    "embedded": Targets(),
    "postgres-s3": Targets(
        large_upload_mbps=100.0,
        small_rps=50.0,
        small_p99_s=2.0,
        list_rps=300.0,
        download_url_rps=300.0,
    ),
}


def profile_for(backends: str, targets: str | None) -> str:
    """The target profile: the one asked for, else the one named like the backends."""
    return targets or ("postgres-s3" if backends == "postgres-s3" else "embedded")
