"""The master key file: created once, atomically, privately."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from vault.adapters.key_files import load_or_create_key
from vault.domain.errors import ConfigError


class TestCreation:
    def test_creates_a_key_of_the_requested_size(self, tmp_path: Path) -> None:
        """A missing key file is created holding ``size`` random bytes."""
        path = tmp_path / "master.key"

        key = load_or_create_key(path, size=32)

        assert len(key) == 32
        assert path.read_bytes() == key

    def test_honours_a_custom_size(self, tmp_path: Path) -> None:
        """The size argument decides the key length."""
        assert len(load_or_create_key(tmp_path / "k", size=48)) == 48

    def test_two_new_keys_differ(self, tmp_path: Path) -> None:
        """Keys are random, not derived from the path."""
        assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")

    def test_key_file_is_private(self, tmp_path: Path) -> None:
        """The key file is readable and writable by its owner only."""
        path = tmp_path / "master.key"
        load_or_create_key(path)

        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_missing_parent_folders_are_created_private(self, tmp_path: Path) -> None:
        """Every folder created on the way to the key has mode 0700."""
        path = tmp_path / "var" / "keys" / "master.key"

        load_or_create_key(path)

        for folder in (tmp_path / "var", tmp_path / "var" / "keys"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    def test_leaves_no_temp_files(self, tmp_path: Path) -> None:
        """Only the key itself remains in its folder after creation."""
        load_or_create_key(tmp_path / "master.key")

        assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


class TestLoading:
    def test_existing_key_is_returned_unchanged(self, tmp_path: Path) -> None:
        """A second call reads the key the first one created."""
        path = tmp_path / "master.key"
        first = load_or_create_key(path)

        assert load_or_create_key(path) == first

    def test_key_written_by_someone_else_is_used(self, tmp_path: Path) -> None:
        """An operator-provided key file of the right size is taken as is."""
        path = tmp_path / "master.key"
        path.write_bytes(b"k" * 32)

        assert load_or_create_key(path) == b"k" * 32

    @pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
    def test_wrong_length_is_a_config_error(self, tmp_path: Path, length: int) -> None:
        """A key file of the wrong size stops start-up naming VAULT_DATA_DIR."""
        path = tmp_path / "master.key"
        path.write_bytes(b"x" * length)

        with pytest.raises(ConfigError) as caught:
            load_or_create_key(path)

        assert caught.value.variable == "VAULT_DATA_DIR"
        assert path.read_bytes() == b"x" * length

    def test_unusable_location_is_a_config_error(self, tmp_path: Path) -> None:
        """A key path under a regular file is a ConfigError, not an OSError."""
        blocker = tmp_path / "not-a-folder"
        blocker.write_bytes(b"")

        with pytest.raises(ConfigError) as caught:
            load_or_create_key(blocker / "master.key")

        assert caught.value.variable == "VAULT_DATA_DIR"


class TestRace:
    def test_concurrent_first_starts_agree_on_one_key(self, tmp_path: Path) -> None:
        """Many callers racing to create the key all end up with the same one."""
        path = tmp_path / "data" / "master.key"
        callers = 16
        barrier = threading.Barrier(callers)
        results: list[bytes] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def start() -> None:
            barrier.wait()
            try:
                key = load_or_create_key(path)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                raise
            with lock:
                results.append(key)

        threads = [threading.Thread(target=start) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len(results) == callers
        assert set(results) == {path.read_bytes()}
        assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"]
