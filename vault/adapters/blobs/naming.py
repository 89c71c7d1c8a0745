"""Object keys every blob store accepts: relative, slash-separated, never escaping."""

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
