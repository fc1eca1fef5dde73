"""A real, running mail system for the end-to-end tests: installed with
postfix-install into a temporary install_root, pointed at itself with
`postconf -e`, started with `postfix -c CONFIG start` on a free loopback
port, stopped (and anything left behind killed) afterwards.

    from mailsystem import MailSystem, mail_system_fixture

    mailsystem = mail_system_fixture()          # module scope, shared
    def test_x(mail):                           # per test: reset to baseline
        mail.postconf("disable_vrfy_command = yes"); mail.reload()
        with mail.raw() as c: c.expect(220, ...)

MAILSYSTEM_REFERENCE=debian runs the same tests against Debian's Postfix
(/usr/sbin/postfix, /usr/lib/postfix/sbin) instead of the build, with its
own config and queue directories in the same temporary tree: a way to
check what the tests expect against the specification.  Never on port 25.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import IS_ROOT, alive, free_port, run_install, wait_until  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
REFERENCE = os.environ.get("MAILSYSTEM_REFERENCE", "") == "debian"

HOSTNAME = "mail.test.example"
DOMAIN = "test.example"
RELAY_DOMAIN = "relay.example"
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
SHORT_ID = r"[0-9A-F]{6,}"
LONG_ID = r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+"
QUEUE_ID = rf"(?:{LONG_ID}|{SHORT_ID})"


class Reply:
    def __init__(self, code: int, lines: list[str]):
        self.code = code
        self.lines = lines  # the text of each line, without "250-"

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class RawClient:
    """A socket for byte-exact dialogs."""

    def __init__(self, port: int, source: str | None = None, host: str = "127.0.0.1", timeout: float = 60):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self) -> bytes | None:
        """One line without its CRLF; None at end of file."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> Reply | None:
        """One (multi-line) reply; None when the server closed."""
        lines = []
        while True:
            line = self.line()
            if line is None:
                if lines:
                    raise AssertionError(f"connection closed inside a reply: {lines}")
                return None
            text = line.decode("utf-8", "replace")
            assert re.match(r"^\d{3}[- ]", text) or re.match(r"^\d{3}$", text), f"not a reply line: {text!r}"
            lines.append(text[4:])
            if len(text) == 3 or text[3] == " ":
                return Reply(int(text[:3]), lines)

    def cmd(self, command: str | bytes) -> Reply:
        if isinstance(command, str):
            command = command.encode()
        self.send(command + b"\r\n")
        reply = self.reply()
        assert reply is not None, f"connection closed after {command!r}"
        return reply

    def expect(self, code: int, text: str | None = None) -> Reply:
        """The next reply has this code (and, when given, this exact last
        line of text)."""
        reply = self.reply()
        assert reply is not None, f"connection closed, expected {code} {text}"
        assert reply.code == code, f"expected {code} {text or ''}, got {reply}"
        if text is not None:
            assert reply.lines[-1] == text, f"expected {code} {text}, got {reply}"
        return reply

    def closed(self) -> bool:
        """True once the server has closed the connection (reads what is
        left)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


class MailSystem:
    """One installed, configured instance.  Paths as installed below
    root; programs run from there."""

    def __init__(self, base: Path, mail_accounts: tuple[str, str], reference: bool = REFERENCE, delivery: bool = False):
        self.base = base
        self.reference = reference
        # With delivery, qmgr and local run and mail leaves the queue;
        # without, accepted mail stays in incoming/ for the tests to read.
        self.delivery = delivery
        self.mail_owner, self.setgid_group = mail_accounts
        self.port = free_port()
        self.smtpd_options: list[str] = []
        self.extra_master_cf = ""
        if reference:
            self._make_reference()
        else:
            self._install()
        self.baseline_main_cf = (self.config / "main.cf").read_bytes()
        self.write_master_cf()
        self.baseline_master_cf = (self.config / "master.cf").read_bytes()
        self.dirty = False

    # --- building -----------------------------------------------------------

    def _install(self):
        self.root = self.base / "root"
        result = run_install(REPO, f"install_root={self.root}", f"tempdir={self.base}", cwd=self.base)
        assert result.returncode == 0, f"install failed:\n{result.stdout}\n{result.stderr}"
        self.config = self.root / "etc/postfix"
        self.queue = self.root / "var/spool/postfix"
        self.sbin = self.root / "usr/sbin"
        self.daemons = self.root / "usr/libexec/postfix"
        self.maillog = self.root / "var/log/maillog"
        self.maillog.parent.mkdir(parents=True, exist_ok=True)
        self.postconf(
            f"command_directory = {self.sbin}",
            f"daemon_directory = {self.daemons}",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.root}/var/lib/postfix",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {self.root}",
            f"alias_database = hash:{self.config}/aliases",
            f"alias_maps = hash:{self.config}/aliases",
            f"manpage_directory = {self.root}/usr/local/man",
            f"newaliases_path = {self.root}/usr/bin/newaliases",
            f"mailq_path = {self.root}/usr/bin/mailq",
            f"sendmail_path = {self.sbin}/sendmail",
            *self._common_settings(),
        )
        self._aliases()

    def _make_reference(self):
        """Debian's Postfix with a private config, queue and data
        directory (for checking the expectations, not for CI)."""
        self.root = self.base
        self.config = self.base / "etc"
        self.queue = self.base / "spool"
        self.sbin = Path("/usr/sbin")
        self.daemons = Path("/usr/lib/postfix/sbin")
        self.maillog = self.base / "maillog"
        self.config.mkdir()
        self.queue.mkdir()
        (self.base / "data").mkdir()
        shutil.chown(self.base / "data", self.mail_owner)
        (self.config / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {self.queue}\n"
            f"data_directory = {self.base}/data\n"
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {self.base}\n"
            f"alias_database = hash:{self.config}/aliases\n"
            f"alias_maps = hash:{self.config}/aliases\n"
            "smtpd_forbid_bare_newline = normalize\n"
        )
        self.postconf(*self._common_settings())
        self._aliases()

    def _common_settings(self) -> list[str]:
        return [
            f"mail_owner = {self.mail_owner}",
            f"setgid_group = {self.setgid_group}",
            f"myhostname = {HOSTNAME}",
            f"mydomain = {DOMAIN}",
            "myorigin = $mydomain",
            "mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain",
            "mynetworks = 127.0.0.1/32",
            f"relay_domains = {RELAY_DOMAIN}",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "smtputf8_enable = yes",
            # A fresh smtpd for each connection: it reads main.cf as it is
            # now, so a test's postconf takes effect at its next connection.
            "max_use = 1",
        ]

    def _aliases(self):
        (self.config / "aliases").write_text("postmaster: root\nalias1: root\n")
        result = self.run("postalias", f"hash:{self.config}/aliases")
        assert result.returncode == 0, result.stderr

    def write_master_cf(self):
        port = f"127.0.0.1:{self.port}"
        options = "".join(f"\n  -o {o}" for o in self.smtpd_options)
        if self.reference:
            text = (
                f"{port} inet n - n - - smtpd{options}\n"
                "pickup unix n - n 60 1 pickup\n"
                "cleanup unix n - n - 0 cleanup\n"
                "rewrite unix - - n - - trivial-rewrite\n"
                "bounce unix - - n - 0 bounce\n"
                "defer unix - - n - 0 bounce\n"
                "trace unix - - n - 0 bounce\n"
                "flush unix n - n 1000? 0 flush\n"
                "proxymap unix - - n - - proxymap\n"
                "anvil unix - - n - 1 anvil\n"
                "postlog unix-dgram n - n - 1 postlogd\n"
            )
        else:
            text = (
                f"{port} inet n - n - - smtpd{options}\npickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n"
                # smtpd's ETRN asks it, as in the reference.
                "flush unix n - n 1000? 0 flush\n"
            )
        if self.delivery:
            text += "qmgr unix n - n 300 1 qmgr\nlocal unix - n n - - local\n"
        (self.config / "master.cf").write_text(text + self.extra_master_cf)

    # --- commands -----------------------------------------------------------

    def command(self, program: str, *args: str) -> list[str]:
        return [str(self.sbin / program), "-c", str(self.config), *args]

    def run(self, program: str, *args: str, input: bytes | None = None, timeout: float = 60, env=None):
        run_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        run_env["TZ"] = "UTC"
        if env:
            run_env.update(env)
        return subprocess.run(
            self.command(program, *args),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=run_env,
        )

    def sendmail(self, *args: str, input: bytes, timeout: float = 60) -> subprocess.CompletedProcess:
        """sendmail -C CONFIG ARGS with input on stdin."""
        run_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        return subprocess.run(
            [str(self.sbin / "sendmail"), "-C", str(self.config), *args],
            input=input,
            capture_output=True,
            timeout=timeout,
            env=run_env,
        )

    def postconf(self, *settings: str):
        result = self.run("postconf", "-e", *settings)
        assert result.returncode == 0, result.stderr
        self.dirty = True

    def set_smtpd_options(self, *options: str):
        """Overrides (-o name=value) on the smtp inet line; reload() to
        apply."""
        self.smtpd_options = list(options)
        self.write_master_cf()
        self.dirty = True

    def table(self, name: str, text: str, kind: str = "hash") -> str:
        """Writes CONFIG/name and builds it with postmap; returns
        "kind:path" for main.cf."""
        path = self.config / name
        path.write_text(text)
        result = self.run("postmap", f"{kind}:{path}")
        assert result.returncode == 0, result.stderr.decode()
        return f"{kind}:{path}"

    # --- lifecycle ----------------------------------------------------------

    def start(self):
        result = self.run("postfix", "start")
        assert result.returncode == 0, f"postfix start: {result.stdout!r} {result.stderr!r}\n{self.log()}"
        wait_until(self._answers, 60, f"the SMTP port {self.port} to answer\n{self.log()}")

    def _answers(self) -> bool:
        try:
            with RawClient(self.port, timeout=30) as c:
                reply = c.reply()
                if reply is not None:
                    c.send(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        return False

    def reload(self):
        """postfix reload, and wait until master has re-read its
        configuration (its "reload" log line)."""
        before = self.log().count("reload -- version") + self.log().count("reload configuration")
        result = self.run("postfix", "reload")
        assert result.returncode == 0, result.stderr
        wait_until(
            lambda: self.log().count("reload -- version") + self.log().count("reload configuration") > before,
            60,
            "master to log its reload",
        )
        wait_until(self._answers, 60, "the SMTP port to answer after reload")
        if self.reference:
            time.sleep(1.5)  # trivial-rewrite and proxymap are restarted lazily

    def reset(self):
        """Back to the baseline configuration, with empty queues."""
        if self.dirty:
            (self.config / "main.cf").write_bytes(self.baseline_main_cf)
            self.smtpd_options = []
            self.extra_master_cf = ""
            (self.config / "master.cf").write_bytes(self.baseline_master_cf)
            self.reload()
            self.dirty = False
        self.clear_queues()

    def clear_queues(self):
        for queue in QUEUES:
            top = self.queue / queue
            for path in top.rglob("*") if top.is_dir() else []:
                if path.is_file():
                    path.unlink(missing_ok=True)

    def master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid/master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self):
        pid = self.master_pid()
        self.run("postfix", "stop")
        if pid:
            try:
                wait_until(lambda: not alive(pid), 30, "master to stop")
            except AssertionError:
                pass
        self.kill_leftovers()

    def kill_leftovers(self):
        """Kills processes this instance started: those whose program
        lives in this install (or, for the reference, master processes
        with this config directory, and their children)."""
        mine = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                exe = os.readlink(entry / "exe")
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if exe.startswith(str(self.root) + "/"):
                mine.append(int(entry.name))
            elif self.reference and exe.startswith(str(self.daemons)) and str(self.config).encode() in cmdline:
                mine.append(int(entry.name))
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- clients ------------------------------------------------------------

    def smtp(self, source: str | None = None, timeout: float = 60) -> smtplib.SMTP:
        """A connected smtplib client (greeting read)."""
        client = smtplib.SMTP(timeout=timeout, source_address=(source, 0) if source else None)
        client.connect("127.0.0.1", self.port)
        return client

    def raw(self, source: str | None = None, timeout: float = 60) -> RawClient:
        return RawClient(self.port, source=source, timeout=timeout)

    def dialog(self, source: str | None = None) -> RawClient:
        """A raw client after the greeting and EHLO client.example."""
        c = self.raw(source)
        c.expect(220)
        reply = c.cmd("EHLO client.example")
        assert reply.code == 250, reply
        return c

    def swaks(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    # --- looking inside -----------------------------------------------------

    def log(self) -> str:
        try:
            return self.maillog.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        return len(self.log())

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def wait_for_log(self, pattern: str, since: int = 0, seconds: float = 30) -> re.Match:
        regex = re.compile(pattern, re.M)
        return wait_until(
            lambda: regex.search(self.log()[since:]),
            seconds,
            f"log line /{pattern}/ in\n{self.log()[since:][-3000:]}",
        )

    def queue_files(self, queue: str) -> list[Path]:
        top = self.queue / queue
        if not top.is_dir():
            return []
        return sorted(p for p in top.rglob("*") if p.is_file())

    def queue_ids(self, queue: str = "incoming") -> list[str]:
        return [p.name for p in self.queue_files(queue)]

    def all_queue_files(self) -> list[Path]:
        return [p for q in QUEUES for p in self.queue_files(q)]

    def wait_for_queue(self, queue: str = "incoming", count: int = 1, seconds: float = 60) -> list[str]:
        return wait_until(
            lambda: len(self.queue_ids(queue)) >= count and self.queue_ids(queue),
            seconds,
            f"{count} file(s) in {queue}/ (now {self.queue_ids(queue)}; log:\n{self.log()[-3000:]})",
        )

    def postcat(self, queue_id: str, *options: str) -> str:
        """postcat -q ID output (text; 8-bit bytes decoded as latin-1 so
        they survive).  Waits until the file is complete and readable."""
        result = self.postcat_bytes(queue_id, *options)
        return result.decode("latin-1")

    def postcat_bytes(self, queue_id: str, *options: str) -> bytes:
        result = self.run("postcat", *options, "-q", queue_id)
        assert result.returncode == 0, f"postcat -q {queue_id}: {result.stderr!r}"
        return result.stdout

    def envelope(self, queue_id: str) -> dict[str, list[str]]:
        """The envelope records postcat -e shows: name -> values."""
        records: dict[str, list[str]] = {}
        for line in self.postcat(queue_id, "-e").splitlines():
            name, sep, value = line.partition(": ")
            if sep and not line.startswith("***"):
                records.setdefault(name, []).append(value)
        return records


def make_base(prefix: str) -> Path:
    """A directory mail_owner can traverse (pytest's tmp_path is private
    to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def mail_system_fixture(scope: str = "module", setup=None, delivery: bool = False):
    """A pytest fixture that yields a started MailSystem; setup(system) may
    change the configuration before it starts."""

    @pytest.fixture(scope=scope)
    def mailsystem(built, mail_accounts):
        base = make_base("pfx-mail-")
        system = MailSystem(base, mail_accounts, delivery=delivery)
        try:
            if setup:
                setup(system)
                system.baseline_main_cf = (system.config / "main.cf").read_bytes()
                system.baseline_master_cf = (system.config / "master.cf").read_bytes()
            system.start()
            yield system
        finally:
            system.stop()
            shutil.rmtree(base, ignore_errors=True)

    return mailsystem


@pytest.fixture
def mail(mailsystem):
    """The module's mail system, back at its baseline configuration and
    with empty queues for this test."""
    mailsystem.reset()
    yield mailsystem
