"""What the benchmark says on stderr while it runs, and the error that stops it."""

import sys

_quiet = False


class BenchError(Exception):
    """The benchmark cannot go on (server did not start, warm-up failed)."""


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) the progress lines, for --quiet."""
    global _quiet
    _quiet = quiet


def progress(message: str) -> None:
    """One ``bench: ...`` line on stderr, unless quiet."""
    if not _quiet:
        print(f"bench: {message}", file=sys.stderr, flush=True)
