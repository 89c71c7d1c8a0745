"""Object keys and listing prefixes every blob store accepts: relative, slash-separated,
never escaping."""

from __future__ import annotations


def check_key(key: str) -> None:
    """Refuse keys that could name anything outside the store's own folder or prefix.

    ``ValueError`` for an empty key, an absolute one, a backslash, a NUL, or
    an empty, ``.`` or ``..`` segment.
    """
    if not key or "\\" in key or "\x00" in key or key.startswith("/"):
        raise ValueError(f"invalid blob key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")


def check_prefix(prefix: str) -> None:
    """Refuse listing prefixes that are not a folder of valid keys.

    ``""`` (everything) or one or more valid segments, each followed by
    ``/`` (``"documents/"``); anything else is ``ValueError``.
    """
    if prefix == "":
        return
    if not prefix.endswith("/"):
        raise ValueError(f"invalid blob prefix {prefix!r}: it must end with '/'")
    try:
        check_key(prefix[:-1])
    except ValueError:
        raise ValueError(f"invalid blob prefix {prefix!r}") from None


MAX_PAGE_SIZE = 1000
"""The most objects one listing page may hold (S3's own bound on ``MaxKeys``)."""


def check_page_size(page_size: int) -> None:
    """``ValueError`` unless a listing page may hold ``page_size`` objects (1..1000)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
