"""master and libmail::server end to end: a real master runs a test
service (libmail/examples/test_service.rs, built on libmail::server) on
loopback ports, as root (children run as mail_owner) and unprivileged (an
ordinary user runs everything)."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import alive, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
MASTER = REPO / "target" / "release" / "master"
TEST_SERVICE = REPO / "target" / "release" / "examples" / "test_service"
LOG_LINE = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ postfix/(master|test_service)\[\d+\]: ")


def wait_for(predicate, timeout=10.0, what="condition"):
    return wait_until(predicate, timeout, what)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Instance:
    """A configuration and queue directory in a temp dir, and a master."""

    def __init__(self, root: Path, user: str | None):
        self.root = root
        self.user = user  # run master as this user (unprivileged mode)
        self.etc = root / "etc"
        self.queue = root / "queue"
        self.daemons = root / "libexec"
        self.maillog = root / "maillog"
        for d in (self.etc, self.queue / "pid", self.queue / "private", self.queue / "public", self.daemons):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEST_SERVICE, self.daemons / "test_service")
        self.port = free_port()
        self.broken_port = free_port()
        owner = user or ("postfix" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name)
        self.write_main_cf(owner)
        self.write_master_cf(
            f"127.0.0.1:{self.port} inet n - n - 2 test_service\n"
            "echo unix - - n - 1 test_service\n"
            f"127.0.0.1:{self.broken_port} inet n - n - 1 test_service fail-at-start\n"
            "smtp inet n - n - - smtpd\n"
        )
        if user:
            subprocess.run(["chown", "-R", user, str(root)], check=True)
        self.process = None

    def write_main_cf(self, owner: str) -> None:
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\n"
            f"daemon_directory = {self.daemons}\n"
            f"mail_owner = {owner}\n"
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {self.root}\n"
            "inet_interfaces = loopback-only\n"
            "inet_protocols = ipv4\n"
            "max_idle = 30s\n"
            "service_throttle_time = 60s\n"
        )

    def write_master_cf(self, text: str) -> None:
        (self.etc / "master.cf").write_text(text)

    def command(self, *args: str) -> list[str]:
        cmd = [str(MASTER), "-c", str(self.etc), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return cmd

    def start(self) -> int:
        self.process = subprocess.Popen(self.command("-d"), stderr=subprocess.PIPE, text=True)
        return wait_for(self.master_pid, what="master.pid")

    def master_pid(self) -> int | None:
        try:
            text = (self.queue / "pid" / "master.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def greet(self, port=None, timeout=10.0) -> tuple[socket.socket, str]:
        s = socket.create_connection(("127.0.0.1", port or self.port), timeout=timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        return s, data.decode().strip()


@pytest.fixture(params=["root", "unprivileged"])
def instance(request, built, mail_accounts):
    """As root: master runs as root, children as postfix. Unprivileged:
    everything runs as an ordinary user (nobody, when the tests run as
    root), in a directory outside pytest's root-only temp tree."""
    user = None
    if request.param == "unprivileged" and os.geteuid() == 0:
        user = "nobody"
    elif request.param == "root" and os.geteuid() != 0:
        pytest.skip("the root mode needs root")
    if not MASTER.exists() or not TEST_SERVICE.exists():
        pytest.fail("target/release/master or examples/test_service missing: run `make all`")
    top = Path(tempfile.mkdtemp(prefix="pfx-master-", dir="/tmp"))
    top.chmod(0o755)
    inst = Instance(top / "pf", user)
    try:
        yield inst
    finally:
        inst.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_listener_answers_and_children_drop_privileges(instance):
    master = instance.start()
    s, greeting = instance.greet()
    assert greeting.startswith("hello from ")
    child = int(greeting.split()[-1])
    expected = instance.user or ("postfix" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name)
    assert pwd.getpwuid(os.stat(f"/proc/{child}").st_uid).pw_name == expected
    s.sendall(b"ping\n")
    assert s.recv(100) == b"ping\n"
    s.close()
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(10)
    u.connect(str(instance.queue / "private" / "echo"))
    assert u.recv(100).startswith(b"hello from ")
    u.close()
    assert alive(master)


def test_more_clients_than_maxproc_wait_their_turn(instance):
    instance.start()
    clients = [socket.create_connection(("127.0.0.1", instance.port), timeout=10) for _ in range(4)]
    greeted = [c.recv(100) for c in clients[:2]]
    assert all(g.startswith(b"hello") for g in greeted)
    clients[2].settimeout(0.5)
    with pytest.raises(socket.timeout):
        clients[2].recv(100)
    for c in clients[:2]:
        c.sendall(b"quit\n")
        c.close()
    for c in clients[2:]:
        c.settimeout(10)
        assert c.recv(100).startswith(b"hello")
        c.close()
    assert "has reached its process limit \"2\"" in instance.log()


def test_killed_child_is_replaced(instance):
    master = instance.start()
    s, greeting = instance.greet()
    child = int(greeting.split()[-1])
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: "killed by signal 9" in instance.log(), what="kill logged")
    s.close()
    t, greeting = instance.greet()
    assert int(greeting.split()[-1]) != child
    t.close()
    assert alive(master)


def test_failing_child_is_throttled(instance):
    master = instance.start()
    s = socket.create_connection(("127.0.0.1", instance.broken_port), timeout=10)
    wait_for(lambda: "bad command startup -- throttling" in instance.log(), what="throttle")
    time.sleep(1.5)  # a second client would have started by now if not throttled
    log = instance.log()
    assert len(re.findall(r"test_service pid \d+ exit status 1", log)) == 1, log
    s.close()
    assert alive(master)


def test_reload_adds_and_removes_listeners_without_dropping_clients(instance):
    master = instance.start()
    s, _ = instance.greet()
    new_port = free_port()
    instance.write_master_cf(
        f"127.0.0.1:{instance.port} inet n - n - 2 test_service\n"
        f"127.0.0.1:{new_port} inet n - n - 1 test_service\n"
    )
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: "reload -- version" in instance.log(), what="reload")
    s.sendall(b"still there\n")
    assert s.recv(100) == b"still there\n"
    n, greeting = instance.greet(new_port)
    assert greeting.startswith("hello")
    n.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", instance.broken_port), timeout=2)
    assert not (instance.queue / "private" / "echo").exists()
    s.sendall(b"quit\n")
    s.close()


def test_second_master_refuses_and_test_mode(instance):
    master = instance.start()
    second = subprocess.run(instance.command("-d"), capture_output=True, text=True, timeout=10)
    assert second.returncode == 1
    assert "unable to set exclusive lock" in second.stderr
    assert subprocess.run(instance.command("-t")).returncode == 1
    instance.stop()
    assert not alive(master)
    assert subprocess.run(instance.command("-t")).returncode == 0


def test_stop_leaves_no_process_behind(instance):
    master = instance.start()
    clients = [instance.greet()[0] for _ in range(2)]
    kids = children_of(master)
    assert len(kids) >= 2
    for c in clients:
        c.sendall(b"quit\n")
        c.close()
    instance.stop()
    wait_for(lambda: not any(alive(p) for p in [master, *kids]), what="all processes gone")
    assert "terminating on signal 15" in instance.log()


def test_log_lines_have_postfix_format(instance):
    instance.start()
    s, _ = instance.greet()
    s.close()
    log = instance.log()
    assert "daemon started -- version" in log
    assert 'service "smtp/inet"' in log and "not provided by this build" in log
    for line in log.splitlines():
        assert LOG_LINE.match(line), line


def test_bad_input_is_one_clear_line(instance):
    # A port already in use.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        instance.write_master_cf(f"127.0.0.1:{port} inet n - n - 1 test_service\n")
        result = subprocess.run(instance.command("-d"), capture_output=True, text=True, timeout=10)
        assert result.returncode == 1
        assert f"fatal: bind 127.0.0.1:{port}: Address already in use" in result.stderr
    # A malformed service line.
    instance.write_master_cf("oops inet n -\n")
    result = subprocess.run(instance.command("-d"), capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "master.cf" in result.stderr and "line 1" in result.stderr, result.stderr


def test_wakeup_timer_triggers_a_fifo_service(instance):
    instance.write_master_cf("wake fifo n - n 1 1 test_service\n")
    instance.start()
    assert (instance.queue / "public" / "wake").is_fifo()
    wait_for(lambda: instance.log().count("trigger W") >= 2, timeout=10, what="two wakeups")


def test_exit_after_seconds(instance):
    proc = subprocess.run(instance.command("-d", "-e", "1"), capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0
    assert "terminating on signal 15" in instance.log()


def test_missing_pid_directory_is_fatal(instance):
    (instance.queue / "pid").rmdir()
    result = subprocess.run(instance.command("-d"), capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    lock = instance.queue / "pid" / "master.pid"
    assert result.stderr.strip() == f"postfix/master: fatal: open lock file {lock}: No such file or directory"


def test_pass_service_receives_the_client_socket(instance):
    """A `pass` service gets each client as a descriptor sent over its
    socket (as postscreen hands clients to smtpd)."""
    instance.write_master_cf("handoff pass n - n - 1 test_service\n")
    instance.start()
    ours, theirs = socket.socketpair()
    with socket.socket(socket.AF_UNIX) as carrier:
        carrier.settimeout(10)
        carrier.connect(str(instance.queue / "public" / "handoff"))
        socket.send_fds(carrier, [b"x"], [theirs.fileno()])
    theirs.close()
    ours.settimeout(10)
    assert ours.recv(100).startswith(b"hello from ")
    ours.sendall(b"over\n")
    assert ours.recv(100) == b"over\n"
    ours.close()
