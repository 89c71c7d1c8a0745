"""The server under test: spawning and stopping it, and reading its CPU and memory in /proc."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from ops.bench.console import BenchError, progress
from ops.bench.records import MemoryFigures

HEALTH_TRIES = 60
HEALTH_INTERVAL_S = 0.5
STOP_WAIT_S = 30.0
SERVER_LOG_TAIL = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(base: Mapping[str, str], overrides: Mapping[str, str | None]) -> dict[str, str]:
    """base updated with overrides; a None value removes that variable."""
    env = dict(base)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def source_env(src: Path, folder: Path) -> dict[str, str | None]:
    """Variables that make ``python -m vault`` import another source tree's packages.

    ``PYTHONPATH`` puts ``src`` (``vault``, ``actors``) ahead of the venv's
    editable install; ``vault_http`` (the tree's ``http/``) comes from a
    folder made under ``folder`` holding only a link of that name, so the
    HTTP layer is the same tree's too.
    """
    src = src.resolve()
    if not (src / "vault" / "__init__.py").is_file() or not (src / "http").is_dir():
        raise BenchError(f"{src} is not a Document Vault source tree (no vault/ and http/)")
    shim = folder / "src-path"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "vault_http"
    if not link.exists():
        link.symlink_to(src / "http", target_is_directory=True)
    return {"PYTHONPATH": f"{src}{os.pathsep}{shim}"}


def imported_from(env: Mapping[str, str | None], cwd: Path) -> str:
    """Where ``vault``, ``actors`` and ``vault_http`` import from under env, run in cwd
    as the server is (``python -m`` puts its working folder first on the path)."""
    code = (
        "import os, actors, vault, vault_http.app as a;"
        " print(*(os.path.realpath(m.__file__) for m in (vault, actors, a)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=server_env(os.environ, env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"cannot import the server's packages: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


class SpawnedServer:
    """``python -m vault serve`` in its own session, logging to a file.

    ``src``: run another source tree's server (``source_env``) with this venv.
    """

    def __init__(
        self, folder: Path, env: Mapping[str, str | None] | None = None, src: Path | None = None
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self.extra_env = dict(env or {})
        if src is not None:
            self.extra_env.update(source_env(src, folder))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data_dir = self.folder / "data"
        data_dir.mkdir()
        env = server_env(
            os.environ,
            {
                "VAULT_DATA_DIR": str(data_dir),
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "ENVIRONMENT": "local",
                **self.extra_env,
            },
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vault", "serve"],
                env=env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_WAIT_S, then SIGKILL; the exit code (negative: signal)."""
        return None if self.proc is None else stop_process(self.proc, "server")

    def log_tail(self, lines: int = SERVER_LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_process(proc: subprocess.Popen[bytes], name: str) -> int:
    """SIGTERM, wait up to STOP_WAIT_S, then SIGKILL; the exit code (negative: signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            progress(f"{name} did not stop within {STOP_WAIT_S:g} s of SIGTERM; killing it")
            proc.kill()
            proc.wait(timeout=STOP_WAIT_S)
    return proc.returncode


def wait_healthy(url: str, server: SpawnedServer | None) -> None:
    """Poll GET /healthz until 200, at most HEALTH_TRIES times."""
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        for _ in range(HEALTH_TRIES):
            if server is not None and server.exited() is not None:
                raise BenchError(f"server exited with code {server.exited()} before it was healthy")
            try:
                r = client.get(f"{url}/healthz")
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(HEALTH_INTERVAL_S)
    raise BenchError(f"GET /healthz not 200 after {HEALTH_TRIES} tries; last: {last}")


# --------------------------------------------------------------------------- /proc


def parse_proc_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of /proc/PID/status (VmRSS, VmHWM, ...) in bytes."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * 1024
    return values


def parse_proc_stat_cpu(text: str, ticks_per_second: int) -> float:
    """User plus system CPU seconds from the text of /proc/PID/stat."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields_after_name = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields_after_name[11]), int(fields_after_name[12])
    return (utime + stime) / ticks_per_second


def memory_figures(
    before: Sequence[Mapping[str, int]], after: Sequence[Mapping[str, int]], *, reset: bool
) -> MemoryFigures:
    """Peak RSS growth over a window, summed over the processes measured.

    With ``reset`` (VmHWM was cleared at the start) the baseline is VmRSS at
    the start; otherwise it is VmHWM at the start, so an older peak is not
    counted as growth (the figure may then be an underestimate).
    """
    baseline_key = "VmRSS" if reset else "VmHWM"
    baseline = sum(s.get(baseline_key, 0) for s in before)
    peak = sum(s.get("VmHWM", 0) for s in after)
    return MemoryFigures(
        baseline_bytes=baseline,
        peak_bytes=peak,
        growth_bytes=max(0, peak - baseline),
        rss_after_bytes=sum(s.get("VmRSS", 0) for s in after),
        method="clear_refs" if reset else "vmhwm",
        processes=len(before),
    )


def read_proc_status(pid: int) -> dict[str, int] | None:
    """Parsed /proc/PID/status, or None when the process is gone or unreadable."""
    try:
        return parse_proc_status(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds used so far by pid and its descendants, or None without a pid."""
    if pid is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += parse_proc_stat_cpu(Path(f"/proc/{member}/stat").read_text(), ticks)
    return total


def process_tree(pid: int) -> list[int]:
    """pid and its live descendants (via /proc/PID/task/*/children)."""
    seen: list[int] = []
    todo = [pid]
    while todo and len(seen) < 256:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in children.read_text().split())
    return seen


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed or not supported."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class MemoryWindow:
    """Peak RSS of a process tree between start() and finish()."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.pids: list[int] = []
        self.before: list[dict[str, int]] = []
        self.reset = False

    def start(self) -> None:
        if self.pid is None:
            return
        self.pids = process_tree(self.pid)
        self.reset = all([reset_peak_rss(p) for p in self.pids])
        self.before = [read_proc_status(p) or {} for p in self.pids]

    def finish(self) -> MemoryFigures | None:
        if self.pid is None or not self.before:
            return None
        after = [read_proc_status(p) or {} for p in self.pids]
        return memory_figures(self.before, after, reset=self.reset)
