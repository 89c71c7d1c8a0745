"""Re-running a ``python -m ops.…`` tool under the project's venv when this python lacks httpx.

It imports nothing outside the standard library, so a bare python can run it.
"""

import os
import sys
from pathlib import Path


def need_httpx(module: str) -> None:
    """Re-run ``python -m module`` under the project's venv when this python lacks httpx,
    or stop saying so."""
    try:
        import anyio  # noqa: F401
        import httpx  # noqa: F401
    except ImportError:
        venv_python = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), "-m", module, *sys.argv[1:]])
        sys.exit(
            f"{module} needs httpx: run it with the project's venv (.venv/bin/python -m {module})"
        )
