"""``python -m ops.bench``: run the benchmark (see the package's docstring and ops/README.md)."""

import sys

from ops.bench.venv import need_httpx

if __name__ == "__main__":
    need_httpx("ops.bench")
    from ops.bench.cli import main

    sys.exit(main())
