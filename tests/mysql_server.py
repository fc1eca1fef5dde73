"""A throwaway MariaDB server for the mysql: table tests.

The server runs from a private data directory, listens on a private UNIX
socket and on a free TCP port of 127.0.0.1 only, and is killed at the end.
It is never the system's service: nothing outside its directory changes,
so test runs may go on side by side."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from helpers import free_port

# Debian puts the server in /usr/sbin, which a plain user's PATH lacks.
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


def find_program(*names: str) -> str | None:
    """The first of names found on PATH or in the usual sbin directories."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in SEARCH_DIRS:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                return candidate
    return None


class ServerError(Exception):
    """The server could not be installed, started or used."""


class MariaDB:
    """One server in base (a fresh directory). Use start(), sql(), stop()."""

    def __init__(self, base: Path):
        self.base = base
        self.datadir = base / "data"
        self.socket = base / "sock"
        self.log = base / "error.log"
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.server = find_program("mariadbd", "mysqld")
        self.install_db = find_program("mariadb-install-db", "mysql_install_db")
        self.client = find_program("mariadb", "mysql")
        missing = [
            what
            for what, path in (("mariadbd", self.server), ("mariadb-install-db", self.install_db), ("mariadb", self.client))
            if path is None
        ]
        if missing:
            raise ServerError(f"{', '.join(missing)} not found (install mariadb-server: `make test-tools`)")
        # A UNIX socket path is limited to about 107 bytes.
        if len(str(self.socket)) > 100:
            raise ServerError(f"socket path too long: {self.socket}")

    def _as_root_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def install(self) -> None:
        command = [
            self.install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._as_root_args(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ServerError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self, attempts: int = 3) -> None:
        """Installs the data directory and starts the server. A port taken
        by someone else between choosing and binding it is retried."""
        self.install()
        for _ in range(attempts):
            self.port = free_port()
            if self._spawn_and_wait():
                return
        raise ServerError(f"mariadbd did not start; its log:\n{self._log_tail()}")

    def _spawn_and_wait(self, timeout: float = 60.0) -> bool:
        command = [
            self.server,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-networking=0",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            f"--pid-file={self.base / 'mariadbd.pid'}",
            f"--log-error={self.log}",
            f"--tmpdir={self.base}",
            *self._as_root_args(),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self.socket.exists() and self._ping():
                return True
            time.sleep(0.2)
        self.stop()
        return False

    def _ping(self) -> bool:
        result = subprocess.run(
            [self.client, "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError as err:
            return f"(no log: {err})"

    def sql(self, text: str, database: str | None = None) -> str:
        """Runs SQL as root over the socket; returns tab-separated rows."""
        command = [self.client, "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        if database:
            command.append(f"--database={database}")
        result = subprocess.run(command, input=text, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise ServerError(f"SQL failed: {result.stderr}\n{text}")
        return result.stdout

    def stop(self) -> None:
        """Kills the server (it holds nothing worth a clean shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
