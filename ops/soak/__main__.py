"""``python -m ops.soak``: run the soak (see the package's docstring and ops/README.md)."""

import sys

from ops.bench.venv import need_httpx

if __name__ == "__main__":
    need_httpx("ops.soak")
    from ops.soak.cli import main

    sys.exit(main())
