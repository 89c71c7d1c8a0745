"""Private folders made durably: what the local blob store and the key files share."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def make_private_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents (mode 0700); returns those created, outermost first.

    A path on the way that exists but is not a folder is ``ENOTDIR``.
    Callers that need the new folders to survive a crash fsync each one's
    parent (``fsync_dir``).
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise OSError(errno.ENOTDIR, "not a directory", str(directory)) from None
            continue
        created.append(directory)
    return created


def fsync_dir(directory: Path) -> None:
    """Make a folder's entries (files renamed or linked into it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
