"""Listing the embedded blob store: committed objects under a prefix, a page at a time.

The walk goes through ``root/objects/<prefix>`` with ``os.scandir``, depth
first, holding one open folder per level and one page of results; a key is
a regular file's path below ``objects``, its ``last_modified`` the file's
mtime (the time of its last write: a committed object is never written
again). Temp files are in ``tmp``, so they are never listed; symlinks and
other non-regular entries are not objects and are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from vault.domain.errors import BlobStoreUnavailable
from vault.ports import StoredObject


def list_pages(
    folder: Path, prefix: str, page_size: int
) -> Generator[list[StoredObject], None, None]:
    page: list[StoredObject] = []
    try:
        for key, mtime in walk_files(folder, prefix):
            page.append(StoredObject(key, datetime.fromtimestamp(mtime, UTC)))
            if len(page) == page_size:
                yield page
                page = []
    except OSError as exc:
        raise BlobStoreUnavailable(f"cannot list blobs under {prefix!r}: {exc}") from exc
    if page:
        yield page


def walk_files(folder: Path, prefix: str) -> Iterator[tuple[str, float]]:
    """(key, mtime) of every regular file under ``folder``, depth first, lazily.

    A folder that does not exist holds nothing (no object was ever stored
    under it). Entries removed while the walk runs are skipped.
    """
    try:
        top = os.scandir(folder)
    except FileNotFoundError:
        return
    stack: list[tuple[os._ScandirIterator[str], str]] = [(top, prefix)]
    try:
        while stack:
            entries, base = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                entries.close()
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((os.scandir(entry.path), f"{base}{entry.name}/"))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # a symlink, socket or fifo is not an object
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue  # deleted since the folder was read
            yield base + entry.name, mtime
    finally:
        for entries, _ in stack:
            entries.close()
