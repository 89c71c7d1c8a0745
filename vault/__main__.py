"""``python -m vault``: the same program as the ``vault`` command."""

from vault.cli import main

raise SystemExit(main())
