"""The dependency rule, checked: import-linter's contracts on the tree, and on a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts (pyproject.toml under ``root``) on the code under ``root``."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extras (make test does)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def copy_of_the_tree(tmp_path: Path) -> Path:
    """The packages as Python sees them: ``http/`` under its import name ``vault_http``."""
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("vault", "actors", "ops"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    shutil.copytree(ROOT / "http", tmp_path / "vault_http", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    """The code as it is keeps all four contracts."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("vault/cli.py", "import vault_http.serve", "Nothing imports the HTTP layer"),
        ("vault/adapters/log_sink.py", "import actors.runtime", "Layers"),
        ("vault/domain/models.py", "import vault.adapters.folders", "Layers"),
        ("vault/domain/events.py", "import trio", "The domain does no I/O"),
        ("actors/reads.py", "import psycopg", "Only adapters talk to drivers"),
    ],
    ids=["cli imports http", "adapter imports actors", "domain imports adapters",
         "domain imports trio", "actor imports a driver"],
)  # fmt: skip
def test_an_import_against_the_rule_breaks_the_build(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """One import against the rule, in a copy of the tree, fails with the contract named."""
    tree = copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # against the rule\n")
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
