"""What the benchmark says on stderr while it runs, and the error that stops it."""

import sys

_quiet = False
_prefix = "bench"


class BenchError(Exception):
    """The benchmark cannot go on (server did not start, warm-up failed)."""


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) the progress lines, for --quiet."""
    global _quiet
    _quiet = quiet


def set_prefix(prefix: str) -> None:
    """Name the tool that speaks in the progress lines (``bench`` unless told)."""
    global _prefix
    _prefix = prefix


def progress(message: str) -> None:
    """One ``bench: ...`` line (or the set prefix's) on stderr, unless quiet."""
    if not _quiet:
        print(f"{_prefix}: {message}", file=sys.stderr, flush=True)
