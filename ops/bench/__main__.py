"""``python -m ops.bench``: run the benchmark (see the package's docstring and ops/README.md)."""

import os
import sys
from pathlib import Path


def _need_httpx() -> None:
    """Re-run under the project's venv when this python lacks httpx, or stop saying so."""
    try:
        import anyio  # noqa: F401
        import httpx  # noqa: F401
    except ImportError:
        venv_python = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), "-m", "ops.bench", *sys.argv[1:]])
        sys.exit(
            "ops.bench needs httpx: run it with the project's venv (.venv/bin/python -m ops.bench)"
        )


if __name__ == "__main__":
    _need_httpx()
    from ops.bench.cli import main

    sys.exit(main())
