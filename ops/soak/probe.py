"""The server's process tree in /proc: resident memory, open file descriptors, threads."""

import contextlib
from collections import Counter
from pathlib import Path

from ops.bench.server import process_tree, read_proc_status
from ops.soak.records import ProcFigures

CLOSE_WAIT_SOCKET = "socket (close-wait)"
_TCP_STATES = {"08": "CLOSE_WAIT"}


def parse_proc_net_tcp(text: str) -> dict[int, str]:
    """Socket inode -> TCP state ('01' established, '08' close-wait, '0A' listen, ...)
    from the text of /proc/PID/net/tcp or tcp6."""
    states: dict[int, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[9].isdigit():
            states[int(fields[9])] = fields[3].upper()
    return states


def tcp_states(pid: int) -> dict[int, str]:
    """The TCP states of the sockets in pid's network namespace, by inode."""
    states: dict[int, str] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            states.update(parse_proc_net_tcp(Path(f"/proc/{pid}/net/{name}").read_text()))
    return states


def fd_kind(target: str, states: dict[int, str] | None = None) -> str:
    """What an open descriptor is, from its /proc/PID/fd link: 'socket' (or
    CLOSE_WAIT_SOCKET for a TCP socket whose peer has closed, by states), 'pipe',
    'anon_inode:[eventpoll]', a database file by name ('vault.sqlite3-wal'), or
    the folder of any other file ('/data/objects/documents/*')."""
    if target.startswith("socket:["):
        inode = target.removeprefix("socket:[").removesuffix("]")
        closing = states and inode.isdigit() and states.get(int(inode)) == "08"
        return CLOSE_WAIT_SOCKET if closing else "socket"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("anon_inode:") or not target.startswith("/"):
        return target
    path = Path(target.removesuffix(" (deleted)"))
    if ".sqlite" in path.name or path.suffix in (".db", ".db-wal", ".db-shm"):
        return path.name
    return f"{path.parent}/*"


def read_fds(
    pid: int, *, kinds: bool = False, states: dict[int, str] | None = None
) -> tuple[int, Counter[str]] | None:
    """The open descriptors of one process: how many, and (with kinds) how many of each
    kind; None when /proc/PID/fd cannot be read."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    by_kind: Counter[str] = Counter()
    for entry in entries if kinds else ():
        with contextlib.suppress(OSError):  # closed between listdir and readlink
            by_kind[fd_kind(str(entry.readlink()), states)] += 1
    return len(entries), by_kind


def count_threads(pid: int) -> int:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0


def snapshot(pid: int | None, *, kinds: bool = False) -> ProcFigures | None:
    """RSS, descriptors and threads summed over pid's process tree; None without a pid or
    once it is gone. ``kinds`` also sorts the descriptors by kind (slower)."""
    if pid is None:
        return None
    members = process_tree(pid)
    rss, fds, threads, alive = 0, 0, 0, 0
    fds_known = True
    by_kind: Counter[str] = Counter()
    states = tcp_states(pid) if kinds else None
    for member in members:
        status = read_proc_status(member)
        if status is None:
            continue
        alive += 1
        rss += status.get("VmRSS", 0)
        threads += count_threads(member)
        found = read_fds(member, kinds=kinds, states=states)
        if found is None:
            fds_known = False
            continue
        fds += found[0]
        if kinds:
            by_kind.update(found[1])
    if not alive:
        return None
    return ProcFigures(
        rss_bytes=rss,
        fds=fds if fds_known else None,
        threads=threads,
        processes=alive,
        fd_kinds=dict(sorted(by_kind.items())),
        close_wait=by_kind[CLOSE_WAIT_SOCKET] if kinds else None,
    )
