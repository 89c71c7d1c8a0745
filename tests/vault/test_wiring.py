"""Building the adapters the configuration asks for, and what start-up refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import test_settings
from vault.adapters.blobs.local import LocalBlobStore
from vault.adapters.log_sink import LogSink
from vault.adapters.stores.sqlite import SQLiteMetadataStore
from vault.domain.errors import ConfigError
from vault.domain.events import Destination
from vault.wiring import open_adapters


def test_the_embedded_default_is_sqlite_local_files_and_the_log(tmp_path: Path) -> None:
    """No configuration: SQLite and encrypted files under the data dir, events to the log."""
    adapters = open_adapters(test_settings(tmp_path))
    try:
        assert isinstance(adapters.store, SQLiteMetadataStore)
        assert isinstance(adapters.blobs, LocalBlobStore)
        assert adapters.signer is not None
        assert all(isinstance(adapters.sinks[d], LogSink) for d in Destination)
        assert (tmp_path / "vault.sqlite3").exists()
    finally:
        adapters.store.close()


def test_a_size_limit_the_database_cannot_record_stops_start_up(tmp_path: Path) -> None:
    """MAX_UPLOAD_FILE_SIZE_BYTES beyond what size_bytes holds is a ConfigError naming it."""
    settings = test_settings(tmp_path, max_upload_file_size_bytes=2**63)
    with pytest.raises(ConfigError) as refused:
        open_adapters(settings)
    assert refused.value.variable == "MAX_UPLOAD_FILE_SIZE_BYTES"
    assert str(2**63 - 1) in str(refused.value)


def test_the_largest_recordable_size_is_accepted(tmp_path: Path) -> None:
    """The limit may be exactly what the store holds."""
    adapters = open_adapters(test_settings(tmp_path, max_upload_file_size_bytes=2**63 - 1))
    try:
        assert adapters.store.size_limit() == 2**63 - 1
    finally:
        adapters.store.close()
