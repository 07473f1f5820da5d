"""A watchdog that ends the processes a process started once that process is gone, however it ended.

Test fixtures start Kafka, Postgres and services in sessions of their own, and pg_ctl leaves the
postmaster orphaned on purpose, so a pytest ended by SIGKILL or a timeout takes none of them with
it. The watchdog runs in a session of its own as well (a signal to the test run's process group
does not reach it) and reads a pipe only its parent holds: end of file means the parent exited,
for whatever reason. It then ends the parent's descendants as it last saw them (it looks every
POLL_SECONDS), what is left of the parent's process group when the parent led it, and every
process whose pid file (`*.pid`, Postgres's `postmaster.pid`) lies under the folders it was given.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from launcher.stack.processes import pid_alive

POLL_SECONDS = 1.0
# How long a process may take to stop after its first signal before it gets SIGKILL.
GRACE_SECONDS = 5.0
# A pid file written at most this long before its process started names another, older process
# whose pid was reused (/proc's boot time has whole seconds).
PID_FILE_SLACK_SECONDS = 2.0
POSTMASTER_PID_FILE = "postmaster.pid"


def start(folders: Sequence[Path]) -> subprocess.Popen[bytes]:
    """Watch this process; when it exits (or closes the watchdog's stdin), end what it started.

    Whoever calls this keeps the returned process: `finish` it at a normal end to clean up at once.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "launcher.stack.watchdog", str(os.getpid()), *(str(folder) for folder in folders)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def finish(watchdog: subprocess.Popen[bytes], timeout: float = GRACE_SECONDS + 10) -> None:
    """Fire the watchdog now (what is left running is ended) and wait for it."""
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def main(argv: Sequence[str]) -> int:
    parent = int(argv[0])
    folders = [Path(folder) for folder in argv[1:]]
    found = _read_stat(parent)
    if found is None or os.getppid() != parent:
        return 1  # the parent is gone already: what it started is not ours to tell
    grandparent, parent_group, parent_started = found
    # A group the parent leads is its own; one it merely belongs to may be a shell's or make's. In
    # its own, its parent's other children are the rest of a pipeline (`pytest | tail`): spared.
    own_group = parent_group == parent
    seen: dict[int, int] = {}
    while True:
        # Kept after they leave the parent's tree (pg_ctl's child, say), while each lives.
        table = _process_table()
        seen = {pid: start for pid, start in seen.items() if table.get(pid, (0, 0, -1))[2] == start}
        seen.update(_descendants(parent, table))
        if _parent_gone(parent):
            break
    if own_group:
        # Children started since the last look, that did not leave the parent's group.
        table = _process_table()
        seen.update(
            {
                pid: start
                for pid, (ppid, group, start) in table.items()
                if group == parent and start >= parent_started and ppid != grandparent
            }
        )
    for spared in (parent, os.getpid()):  # the parent when it fired the watchdog itself (`finish`)
        seen.pop(spared, None)
    end_processes(seen, _pid_file_processes(folders, parent_started))
    return 0


def end_processes(descendants: dict[int, int], pid_file_processes: dict[int, tuple[int, bool]]) -> None:
    """SIGKILL each process (and the group it leads); a postmaster gets SIGQUIT first, Postgres's
    immediate shutdown, so that it removes its shared memory."""
    targets = {pid: started for pid, started in descendants.items()}
    gentle = set()
    for pid, (started, is_postmaster) in pid_file_processes.items():
        targets[pid] = started
        if is_postmaster:
            gentle.add(pid)
    for pid in targets:
        if pid in gentle:
            _signal(pid, signal.SIGQUIT, group=False)
        else:
            _signal(pid, signal.SIGKILL, group=True)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and any(_same_process(pid, started) for pid, started in targets.items()):
        time.sleep(0.1)
    for pid, started in targets.items():
        if _same_process(pid, started):
            _signal(pid, signal.SIGKILL, group=True)


def started_at(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat); None when it is gone."""
    entry = _read_stat(pid)
    return None if entry is None else entry[2]


def _parent_gone(parent: int) -> bool:
    """Wait up to POLL_SECONDS for the parent's end: the pipe's end of file, or being reparented
    (a process the parent forked may still hold the pipe open)."""
    readable, _, _ = select.select([sys.stdin.buffer], [], [], POLL_SECONDS)
    if readable and not os.read(sys.stdin.fileno(), 4096):
        return True
    return os.getppid() != parent


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, start time) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, int]]) -> dict[int, int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = table[pid][2]
        stack.extend(children.get(pid, []))
    return found


def _pid_file_processes(folders: Iterable[Path], not_before: int) -> dict[int, tuple[int, bool]]:
    """pid -> (start time, is a postmaster) of the live processes the pid files under `folders` name,
    started after the watched process and before their pid file was last written."""
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for folder in folders:
        for path in _pid_files(folder):
            try:
                pid = int(path.read_text().split()[0])
                written = path.stat().st_mtime
            except (OSError, ValueError, IndexError):
                continue
            started = started_at(pid)
            if started is None or started < not_before or boot + started / ticks > written + PID_FILE_SLACK_SECONDS:
                continue
            found[pid] = (started, path.name == POSTMASTER_PID_FILE)
    return found


def _pid_files(folder: Path) -> Iterable[Path]:
    for directory, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".pid"):
                yield Path(directory) / name


def _read_stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name comes in parentheses and may hold spaces or parentheses itself.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _same_process(pid: int, started: int) -> bool:
    return pid_alive(pid) and started_at(pid) == started


def _signal(pid: int, signum: int, *, group: bool) -> None:
    """Signal `pid`, and the process group it leads if it leads one (never a group it merely
    belongs to: that may be the shell's or make's)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
