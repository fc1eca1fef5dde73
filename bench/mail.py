#!/usr/bin/env python3
"""Mail speed end to end, ours against Debian's Postfix (not a test; `make bench`).

Sets up two mail systems on loopback in one run, with the same main.cf
settings: ours, installed from target/release with postfix-install into a
temporary install_root, and Debian's (/usr/sbin/postfix,
/usr/lib/postfix/sbin) with a private config, queue and data directory
(tests/mailsystem.py builds both, as it does for the tests).  Each has
smtpd on 127.0.0.1:PORT, pickup, cleanup, qmgr and local (Debian's also the
helpers it needs: trivial-rewrite, proxymap, bounce, anvil, postlogd, ...),
mydestination = localhost, home_mailbox = Maildir/, biff = no, max_use = 100
and otherwise each program's defaults for durability: both fsync the
queue file before the 250 and the Maildir file before it enters new/.  The recipient is a throwaway local user,
pfbench, whose home is in the temporary directory; it is removed at the end.

One system at a time, Debian's smtp-source sends N messages (one per
connection, smtp-source's default) from bench@localhost to
pfbench@localhost at 1, 10 and 50 parallel sessions, with 1 KB and 100 KB
bodies (-l); N is 10000 with 1 KB and 2000 with 100 KB (500 and 100 with
--quick), which takes about a minute for Debian's Postfix on 2 cores.
Every row starts from a fresh `postfix start` (so daemons left idle by an
earlier row do not count in its memory) and a warm-up of 20 messages, or
two per session, at the row's concurrency that is not measured: a row
measures the steady state.  For each row:

  accepted msg/s   N / time until smtp-source has finished (every message
                   got its 250 after DATA)
  delivered msg/s  N / time until the N-th file is in Maildir/new
                   (counted as they arrive with inotify, or by listing the
                   directory every 20 ms where inotify is missing)
  CPU ms/msg       user + system CPU of all the mail system's processes
                   (master and every daemon, not smtp-source) from the start
                   of smtp-source until the last delivery, per message
  peak RSS MiB     the highest sum of the resident sets of the system's
                   processes, sampled every 50 ms (shared pages, such as
                   libraries, count once per process that maps them)

The processes are those of a cgroup v2 directory created for each system
(its `postfix start` runs inside it, so master and all its children are
members): CPU comes exactly from its cpu.stat usage_usec, and cgroup.kill
makes sure nothing is left afterwards.  Where no writable cgroup v2 is
mounted, the members are master and its descendants, found in /proc every
50 ms, and CPU is the sum over them of utime + stime as last sampled: a
process that exits between two samples loses at most one sample interval
(50 ms) of its CPU time.  The report says which method was used.  Memory
is always the sampled RSS sum: a cgroup's memory.peak exists only where
the memory controller is on cgroup v2 (on a hybrid layout it is not), and
it would count page cache too (the queue files and the Maildir).

The relay workload (--workload relay) measures the way out over SMTP
instead: smtp-source -> smtpd -> cleanup -> qmgr -> the smtp client ->
Debian's smtp-sink on a free loopback port, which throws the mail away.
Both systems get relayhost = [127.0.0.1]:SINKPORT and a master.cf
`smtp unix - - n - - smtp` service (Debian's also scache, as in its stock
master.cf, for its connection cache); the recipient is
sink@bench.example (no local user).  The rows are the same, at 10
sessions unless --sessions says otherwise, and "delivered" is the N-th
message the sink has received (its -c counter).  Without --workload both run, Maildir first (`make bench`).

A system that does not deliver everything in time (120 s plus 50 ms a
message, or 30 s without any progress) is reported as such
("ours: delivered 0/2000 within 30 s") and its remaining rows are skipped.

The issue's targets: delivered msg/s at 10 sessions at least 1.5 times
Postfix's, and peak RSS no more than Postfix's.

    python3 bench/mail.py [--workload maildir|relay] [--quick]
                          [--only ours|postfix] [--count-1k N]
                          [--count-100k N] [--sessions N] [--size BYTES]
                          [--no-cgroup] [--keep]

Runs as root (the mail systems and the recipient need it).  Only the
loopback interface is used.
"""

import argparse
import inspect
import os
import pwd
import re
import shutil
import select
import signal
import socket
import struct
import tempfile
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import conftest  # noqa: E402  (the postfix/postdrop accounts, as the tests make them)
from helpers import free_port, wait_until  # noqa: E402
from mailsystem import MailSystem, make_base  # noqa: E402

SMTP_SOURCE = Path("/usr/sbin/smtp-source")
SMTP_SINK = Path("/usr/sbin/smtp-sink")
USER = "pfbench"
RECIPIENT = f"{USER}@localhost"
RELAY_RECIPIENT = "sink@bench.example"
RELAY_SESSIONS = (10,)
WORKLOADS = ("maildir", "relay")
TITLES = {"maildir": "Maildir delivery (local)", "relay": "relay to smtp-sink (smtp client)"}
SENDER = "bench@localhost"
SIZES = (1024, 100 * 1024)
SESSIONS = (1, 10, 50)
SAMPLE_INTERVAL = 0.05
POLL_INTERVAL = 0.02
STALL_SECONDS = 30
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
NAMES = {"ours": "ours", "postfix": "Postfix"}


class BenchError(Exception):
    """A system could not be set up or measured; the message says why."""


# --- processes and their accounting -------------------------------------------


def cgroup2_mount() -> Path | None:
    """Where cgroup v2 is mounted, if it is and we can make directories
    in it; None otherwise."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            top = Path(fields[1])
            probe = top / f"pfbench-probe-{os.getpid()}"
            try:
                probe.mkdir()
                ok = (probe / "cpu.stat").exists() and (probe / "cgroup.procs").exists()
                probe.rmdir()
            except OSError:
                continue
            if ok:
                return top
    return None


def proc_stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, starttime, utime + stime in ticks, rss in bytes) of pid, or
    None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 of proc(5): state.
    return int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE


class Members:
    """The processes of one mail system: a cgroup v2 directory of its own
    when possible, else master and its descendants."""

    def __init__(self, cgroup_top: Path | None, name: str):
        self.cgroup: Path | None = None
        self.master_pid: int | None = None
        if cgroup_top is not None:
            self.cgroup = cgroup_top / f"pfbench-{os.getpid()}-{name}"
            self.cgroup.mkdir()

    @property
    def exact_cpu(self) -> bool:
        return self.cgroup is not None

    def join(self) -> None:
        """preexec_fn: puts the child being started into the cgroup."""
        if self.cgroup is not None:
            with open(self.cgroup / "cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))

    def pids(self) -> list[int]:
        if self.cgroup is not None:
            try:
                return [int(p) for p in (self.cgroup / "cgroup.procs").read_text().split()]
            except OSError:
                return []
        if self.master_pid is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat:
                    children.setdefault(stat[0], []).append(int(entry.name))
        found, todo = [], [self.master_pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_usec(self) -> int | None:
        """The cgroup's total CPU time so far (None without a cgroup)."""
        if self.cgroup is None:
            return None
        for line in (self.cgroup / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value)
        return None

    def remove(self) -> None:
        """Kills whatever is left in the cgroup and removes it."""
        if self.cgroup is None or not self.cgroup.exists():
            return
        try:
            (self.cgroup / "cgroup.kill").write_text("1")
        except OSError:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.cgroup.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        print(f"warning: could not remove {self.cgroup}", file=sys.stderr)


class Sampler(threading.Thread):
    """Samples the members every SAMPLE_INTERVAL: the sum of their RSS
    (keeping the peak) and each one's utime + stime (keeping the last
    value per process, for when there is no cgroup)."""

    def __init__(self, members: Members):
        super().__init__(daemon=True)
        self.members = members
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.peak_rss = 0
        self.ticks: dict[tuple[int, int], int] = {}  # (pid, starttime) -> last utime + stime
        self.baseline: dict[tuple[int, int], int] = {}

    def sample(self) -> None:
        total = 0
        seen = {}
        for pid in self.members.pids():
            stat = proc_stat(pid)
            if stat:
                _, start, ticks, rss = stat
                total += rss
                seen[(pid, start)] = ticks
        with self.lock:
            self.peak_rss = max(self.peak_rss, total)
            self.ticks.update(seen)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_INTERVAL)

    def reset(self) -> None:
        """Start of a measurement: peak and CPU count from here."""
        self.sample()
        with self.lock:
            self.peak_rss = 0
            self.baseline = dict(self.ticks)
        self.sample()

    def result(self) -> tuple[int, float]:
        """(peak RSS bytes, sampled CPU seconds) since reset()."""
        self.sample()
        with self.lock:
            ticks = sum(t - self.baseline.get(k, 0) for k, t in self.ticks.items())
            return self.peak_rss, ticks / CLOCK_TICK

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


# --- the mail systems ----------------------------------------------------------


def make_system(kind: str, base: Path, accounts: tuple[str, str], workload: str, sink_port: int | None) -> MailSystem:
    """An installed, configured (not started) system: kind is "ours" or
    "postfix" (Debian's); workload "maildir" or "relay" (to the sink on
    sink_port)."""
    reference = kind == "postfix"
    services = ("qmgr", "local") if workload == "maildir" else ("qmgr", "smtp")
    if not reference:
        missing = [p for p in ("smtpd", "cleanup", "pickup", "master", "postfix", *services)
                   if not (REPO / "target" / "release" / p).is_file()]
        if missing:
            raise BenchError(f"target/release lacks {', '.join(missing)}: run `make all`")
    delivery_param = "delivery" in inspect.signature(MailSystem.__init__).parameters
    try:
        if delivery_param:
            system = MailSystem(base, accounts, reference=reference, delivery=True)
        else:
            system = MailSystem(base, accounts, reference=reference)
            system.extra_master_cf = "qmgr unix n - n 300 1 qmgr\nlocal unix - n n - - local\n"
        if workload == "relay":
            system.extra_master_cf += "smtp unix - - n - - smtp\n"
            if reference:
                system.extra_master_cf += "scache unix - - n - 1 scache\n"
        system.write_master_cf()
    except AssertionError as e:
        raise BenchError(f"setup failed: {e}") from None
    if not reference:
        missing = [d for d in services if not (system.daemons / d).is_file()]
        if missing:
            raise BenchError(
                f"the install lacks {' and '.join(missing)} in {system.daemons} "
                "(not in etc/postfix-files yet?)"
            )
    master_cf = (system.config / "master.cf").read_text()
    for service in services:
        if not any(line.split()[:1] == [service] for line in master_cf.splitlines()):
            raise BenchError(f"master.cf has no {service} service:\n{master_cf}")
    common = [
        "mydestination = localhost",
        "mynetworks = 127.0.0.0/8",
        "inet_interfaces = 127.0.0.1",
        "biff = no",
        # The tests want a fresh smtpd per connection; a mail system doesn't.
        "max_use = 100",
    ]
    if workload == "maildir":
        system.postconf(*common, "home_mailbox = Maildir/")
    else:
        system.postconf(*common, f"relayhost = [127.0.0.1]:{sink_port}")
    return system


def start(system: MailSystem, members: Members) -> None:
    """postfix start inside the members' cgroup; waits for the greeting."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    result = subprocess.run(
        system.command("postfix", "start"),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=members.join,
    )
    if result.returncode != 0:
        raise BenchError(f"postfix start failed: {result.stdout}{result.stderr}\n{system.log()[-2000:]}")
    try:
        wait_until(system._answers, 60, f"the SMTP port {system.port} to answer")
    except AssertionError as e:
        raise BenchError(f"{e}\n{system.log()[-2000:]}") from None
    members.master_pid = system.master_pid()


def stop(system: MailSystem, members: Members) -> None:
    try:
        system.stop()
    except Exception as e:  # noqa: BLE001 - clean up as much as possible
        print(f"warning: stopping {system.config}: {e}", file=sys.stderr)
    members.remove()


# --- the recipient -------------------------------------------------------------


def create_user(home: Path) -> pwd.struct_passwd:
    """The throwaway recipient, with home (and an empty Maildir) in the
    temporary tree.  A leftover from an interrupted run (its home in /tmp)
    is replaced; any other user of that name is left alone."""
    try:
        old = pwd.getpwnam(USER)
    except KeyError:
        old = None
    if old is not None:
        if not old.pw_dir.startswith("/tmp/pfbench-"):
            raise BenchError(f"a user {USER} exists already (home {old.pw_dir}); not touching it")
        subprocess.run(["userdel", USER], capture_output=True)
    nologin = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    result = subprocess.run(
        ["useradd", "-M", "-U", "-d", str(home), "-s", nologin, USER], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BenchError(f"useradd {USER}: {result.stderr.strip()}")
    user = pwd.getpwnam(USER)
    for directory in (home, home / "Maildir", *(home / "Maildir" / d for d in ("tmp", "new", "cur"))):
        directory.mkdir(exist_ok=True)
        os.chown(directory, user.pw_uid, user.pw_gid)
        directory.chmod(0o700)
    return user


def remove_user() -> None:
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return
    if user.pw_dir.startswith("/tmp/pfbench-"):
        subprocess.run(["userdel", USER], capture_output=True)


def count_new(maildir_new: Path) -> int:
    try:
        return sum(1 for e in os.scandir(maildir_new) if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def empty_new(maildir_new: Path) -> None:
    for entry in os.scandir(maildir_new):
        os.unlink(entry.path)


class Arrivals:
    """Counts the files arriving in Maildir/new.  With inotify (through
    ctypes) a wait costs nothing while no mail arrives, and the count does
    not mean listing a directory of thousands of files every 20 ms (which
    would take CPU from the systems being measured); without it, or when
    its queue overflows, the directory is listed."""

    IN_CREATE, IN_MOVED_TO, IN_Q_OVERFLOW = 0x100, 0x80, 0x4000

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd = -1
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                if libc.inotify_add_watch(fd, bytes(directory), self.IN_CREATE | self.IN_MOVED_TO) >= 0:
                    self.fd = fd
                else:
                    os.close(fd)
        except (OSError, AttributeError):
            pass
        self.count = 0
        self.overflowed = False

    def reset(self) -> None:
        """Empties the directory and starts counting from 0."""
        empty_new(self.directory)
        self.wait(0)
        self.count = 0
        self.overflowed = self.fd < 0

    def wait(self, timeout: float, others=()) -> int:
        """Waits up to timeout for arrivals (or for one of the other
        descriptors to be readable); returns the count so far."""
        if self.fd < 0 or self.overflowed:
            select.select(list(others), [], [], timeout)
            self.count = count_new(self.directory)
            return self.count
        ready, _, _ = select.select([self.fd, *others], [], [], timeout)
        while self.fd in ready:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                if mask & self.IN_Q_OVERFLOW:
                    self.overflowed = True
                elif mask & (self.IN_CREATE | self.IN_MOVED_TO) and not name.startswith(b"."):
                    self.count += 1
        if self.overflowed:
            self.count = count_new(self.directory)
        return self.count

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Sink:
    """Debian's smtp-sink on a free loopback port: takes the relayed mail,
    throws it away, and counts it.  With -c it writes its counters
    ("sess=N quit=N mesg=N\\r") as they change; mesg is the number of
    messages received (".").  The same interface as Arrivals: reset(),
    then wait() returns the messages since."""

    COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, user: str):
        self.port = free_port()
        self.errors = tempfile.TemporaryFile()
        argv = [str(SMTP_SINK), "-4", "-c", "-u", user, f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.total = self.base = self.count = 0
        self.pending = b""
        try:
            wait_until(self.listening, 10, f"smtp-sink on port {self.port}")
        except AssertionError:
            self.close()
            raise BenchError(f"smtp-sink did not start: {self.error_text()}") from None

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def error_text(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace").strip()[-300:]

    def read(self) -> None:
        """Takes in what the sink has written; the last complete counter
        line is the total."""
        while True:
            try:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:
                raise BenchError(f"smtp-sink exited: {self.error_text()}")
            complete, _, self.pending = (self.pending + chunk).rpartition(b"\r")
            found = self.COUNTER.findall(complete)
            if found:
                self.total = int(found[-1])

    def reset(self) -> None:
        self.read()
        self.base, self.count = self.total, 0

    def wait(self, timeout: float, others=()) -> int:
        ready, _, _ = select.select([self.proc.stdout, *others], [], [], timeout)
        if self.proc.stdout in ready:
            self.read()
        self.count = self.total - self.base
        return self.count

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errors.close()


# --- one measurement -----------------------------------------------------------


@dataclass
class Row:
    size: int
    sessions: int
    count: int
    accepted: float | None = None  # msg/s
    delivered: float | None = None  # msg/s
    cpu_ms: float | None = None  # per message
    peak_rss: int | None = None  # bytes
    note: str = ""


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    method: str = ""
    failure: str = ""  # why the system was not measured at all


def timeout_for(count: int) -> float:
    return 120 + 0.05 * count


def send_and_wait(
    system: MailSystem, members: Members, sampler: Sampler, arrivals, row: Row, label: str, recipient: str
) -> bool:
    """Runs one row into row; False when not everything was delivered.
    arrivals counts the deliveries (Arrivals or Sink)."""
    arrivals.reset()
    sampler.reset()
    cpu_before = members.cpu_usec()
    argv = [
        str(SMTP_SOURCE), "-4", "-M", "localhost", "-f", SENDER, "-t", recipient,
        "-l", str(row.size), "-m", str(row.count), "-s", str(row.sessions),
        f"127.0.0.1:{system.port}",
    ]  # fmt: skip
    limit = timeout_for(row.count)
    errors = tempfile.TemporaryFile()
    started = time.perf_counter()
    source = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
    pidfd = os.pidfd_open(source.pid)  # readable when smtp-source has exited
    accepted_at = done_at = None
    delivered = 0
    last_progress = started
    try:
        while True:
            count = arrivals.wait(POLL_INTERVAL, [pidfd] if accepted_at is None else [])
            now = time.perf_counter()
            if accepted_at is None and source.poll() is not None:
                accepted_at = now
                if source.returncode != 0:
                    errors.seek(0)
                    error = errors.read().decode(errors="replace").strip()
                    row.note = f"{label}: smtp-source failed (exit {source.returncode}): {error[-300:]}"
            if count > delivered:
                delivered, last_progress = count, now
            if delivered >= row.count and accepted_at is not None:
                done_at = now
                break
            if now - started > limit or now - last_progress > STALL_SECONDS:
                note = f"{label}: delivered {delivered}/{row.count} within {now - started:.0f} s"
                if accepted_at is None:
                    note += " (smtp-source still sending)"
                row.note = f"{row.note}; {note}" if row.note else note
                return False
    finally:
        if source.poll() is None:
            source.kill()
        source.wait()
        os.close(pidfd)
        errors.close()
    cpu_after = members.cpu_usec()
    peak, sampled_cpu = sampler.result()
    cpu = (cpu_after - cpu_before) / 1e6 if cpu_before is not None else sampled_cpu
    row.accepted = row.count / (accepted_at - started)
    row.delivered = row.count / (done_at - started)
    row.cpu_ms = cpu * 1000 / row.count
    row.peak_rss = peak
    return not row.note


def run_system(kind: str, top: Path, accounts, cgroup_top, plan, arrivals, workload: str) -> Result:
    """Measures one system in one workload; arrivals is the Arrivals
    (maildir) or the Sink (relay) that counts deliveries."""
    label = NAMES[kind]
    result = Result(rows=[Row(size, sessions, count) for size, sessions, count in plan])
    base = top / f"{workload}-{kind}"
    base.mkdir()
    recipient = RECIPIENT if workload == "maildir" else RELAY_RECIPIENT
    sink_port = arrivals.port if workload == "relay" else None
    system = members = sampler = None
    try:
        members = Members(cgroup_top, f"{workload}-{kind}")
        result.method = "cgroup v2 cpu.stat" if members.exact_cpu else "sampled /proc every 50 ms"
        print(f"{label}: setting up in {base}", flush=True)
        system = make_system(kind, base, accounts, workload, sink_port)
        sampler = Sampler(members)
        sampler.start()
        for number, row in enumerate(result.rows):
            # A fresh start for every row, so that the daemons an earlier
            # row left idle (max_idle) do not count in this row's memory;
            # a warm-up at the row's concurrency starts the processes the
            # row needs, so the row measures the steady state.
            if number:
                system.stop()
            start(system, members)
            warm = Row(1024, row.sessions, max(20, 2 * row.sessions))
            if not send_and_wait(system, members, sampler, arrivals, warm, f"{label} warm-up", recipient):
                if number == 0:
                    result.failure = warm.note.replace(f"{label} warm-up: ", "warm-up: ", 1)
                    print(f"  {label} not measured: {result.failure}", flush=True)
                    return result
                row.note = warm.note
                ok = False
            else:
                ok = send_and_wait(system, members, sampler, arrivals, row, label, recipient)
            print(f"  {format_size(row.size):>6} x{row.count:<5} {row.sessions:>2} sessions: "
                  + (f"accepted {row.accepted:7.1f}/s  delivered {row.delivered:7.1f}/s  "
                     f"CPU {row.cpu_ms:6.2f} ms/msg  peak RSS {row.peak_rss / 2**20:6.1f} MiB"
                     if row.delivered is not None else row.note),
                  flush=True)  # fmt: skip
            if not ok:
                if row.delivered is None:
                    for later in result.rows[number + 1:]:
                        later.note = f"{label}: skipped (an earlier row did not deliver)"
                    break
                print(f"  {row.note}", flush=True)
    except (BenchError, AssertionError, OSError, subprocess.SubprocessError) as e:
        result.failure = str(e) or type(e).__name__
        print(f"  {label}: {result.failure}", flush=True)
    finally:
        if sampler is not None:
            sampler.stop()
        if system is not None:
            stop(system, members)
        elif members is not None:
            members.remove()
        if system is not None and (result.failure or any(r.note for r in result.rows)):
            log = system.log()
            if log:
                print(f"  {label}'s maillog, last lines:\n    " + "\n    ".join(log.splitlines()[-15:]))
    return result


# --- report --------------------------------------------------------------------


def format_size(size: int) -> str:
    return f"{size // 1024} KB"


def report(results: dict[str, Result], plan, workload: str) -> None:
    metrics = (
        ("accepted msg/s", lambda r: r.accepted, "{:.1f}"),
        ("delivered msg/s", lambda r: r.delivered, "{:.1f}"),
        ("CPU ms/msg", lambda r: r.cpu_ms, "{:.2f}"),
        ("peak RSS MiB", lambda r: None if r.peak_rss is None else r.peak_rss / 2**20, "{:.1f}"),
    )
    both = "ours" in results and "postfix" in results
    print()
    print(TITLES[workload])
    head1 = f"{'size':>6} {'sess':>4} {'N':>5} "
    head2 = " " * len(head1)
    for name, _, _ in metrics:
        head1 += f"| {name:<23}"
        head2 += f"| {'ours':>7} {'Postfix':>7} {'ratio':>6} "
    print(head1)
    print(head2)
    legend = "ratio = ours / Postfix: above 1 is better for msg/s, below 1 for CPU and RSS"
    notes = []
    for i, (size, sessions, count) in enumerate(plan):
        line = f"{format_size(size):>6} {sessions:>4} {count:>5} "
        for _, get, fmt in metrics:
            values = []
            for kind in ("ours", "postfix"):
                r = results.get(kind)
                v = get(r.rows[i]) if r and not r.failure else None
                values.append(v)
            cells = [fmt.format(v) if v is not None else "-" for v in values]
            ratio = f"{values[0] / values[1]:.2f}" if both and None not in values and values[1] else "-"
            line += f"| {cells[0]:>7} {cells[1]:>7} {ratio:>6} "
        print(line)
        for kind in ("ours", "postfix"):
            r = results.get(kind)
            if r and not r.failure and r.rows[i].note and r.rows[i].note not in notes:
                notes.append(r.rows[i].note)
    for kind in ("ours", "postfix"):
        r = results.get(kind)
        if r and r.failure:
            notes.insert(0, f"{NAMES[kind]} not measured: {r.failure}")
    print()
    if both:
        print(legend)
    for kind, r in results.items():
        print(f"{NAMES[kind]}: CPU from {r.method}; RSS = sum over its processes, sampled every 50 ms")
    for note in notes:
        print(f"note: {note}")
    # The targets are for the Maildir workload.
    if not both or workload != "maildir":
        return
    ours, theirs = results["ours"], results["postfix"]
    print()
    for i, (size, sessions, _) in enumerate(plan):
        if size == 1024 and sessions == 10:
            a, b = ours.rows[i].delivered, theirs.rows[i].delivered
            if a is None or b is None or ours.failure or theirs.failure:
                print("target: delivered msg/s at 10 sessions (1 KB) >= 1.5x Postfix's: not measured")
            else:
                verdict = "met" if a >= 1.5 * b else "NOT met"
                print(f"target: delivered msg/s at 10 sessions (1 KB) >= 1.5x Postfix's: {verdict} ({a / b:.2f}x)")
    peaks = [(r.peak_rss, p.peak_rss) for r, p in zip(ours.rows, theirs.rows)]
    if ours.failure or theirs.failure or any(a is None or b is None for a, b in peaks):
        print("target: peak RSS <= Postfix's: not measured (in every row)")
    else:
        worst = max(a / b for a, b in peaks)
        print(f"target: peak RSS <= Postfix's: {'met' if worst <= 1 else 'NOT met'} (worst row {worst:.2f}x)")


# --- main ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=WORKLOADS, action="append",
                        help="maildir (local delivery) or relay (to smtp-sink); default both, in that order")
    parser.add_argument("--quick", action="store_true", help="a short run (500 and 100 messages a row)")
    parser.add_argument("--only", choices=("ours", "postfix"), help="measure one system only")
    parser.add_argument("--count-1k", type=int, help="messages per row with 1 KB bodies (default 10000)")
    parser.add_argument("--count-100k", type=int, help="messages per row with 100 KB bodies (default 2000)")
    parser.add_argument("--sessions", type=int, action="append", help="only this many sessions (may repeat)")
    parser.add_argument("--size", type=int, action="append", choices=SIZES, help="only this body size (may repeat)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-cgroup", action="store_true", help="sample /proc even where a cgroup could be used")
    args = parser.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench/mail.py runs as root (mail systems, a throwaway local user)")
    workloads = [w for w in WORKLOADS if w in (args.workload or WORKLOADS)]
    for program in (SMTP_SOURCE, *([SMTP_SINK] if "relay" in workloads else [])):
        if not program.is_file():
            sys.exit(f"{program} is missing: install Debian's postfix (`make test-tools`)")
    counts = {1024: 500, 100 * 1024: 100} if args.quick else {1024: 10000, 100 * 1024: 2000}
    if args.count_1k:
        counts[1024] = args.count_1k
    if args.count_100k:
        counts[100 * 1024] = args.count_100k
    plans = {
        workload: [
            (size, sessions, counts[size])
            for size in args.size or SIZES
            for sessions in args.sessions or (SESSIONS if workload == "maildir" else RELAY_SESSIONS)
        ]
        for workload in workloads
    }
    kinds = [args.only] if args.only else ["ours", "postfix"]

    # Ctrl-C, SIGTERM and SIGHUP stop the run and clean up; a second
    # signal does not interrupt the cleaning up.
    def interrupted(signum, frame):
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        raise KeyboardInterrupt

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupted)

    cgroup_top = None if args.no_cgroup else cgroup2_mount()
    accounts_fixture = conftest.mail_accounts
    accounts = getattr(accounts_fixture, "__wrapped__", accounts_fixture)()
    top = make_base("pfbench-")
    results: dict[str, dict[str, Result]] = {}
    try:
        print(f"work directory {top}; messages per row: "
              f"{counts[1024]} x 1 KB, {counts[100 * 1024]} x 100 KB", flush=True)  # fmt: skip
        for workload in workloads:
            print(f"{TITLES[workload]}:", flush=True)
            if workload == "maildir":
                home = top / "home"
                create_user(home)
                counter = Arrivals(home / "Maildir" / "new")
            else:
                counter = Sink(accounts[0])
            try:
                results[workload] = {
                    kind: run_system(kind, top, accounts, cgroup_top, plans[workload], counter, workload)
                    for kind in kinds
                }
            finally:
                counter.close()
        # The tables together at the end, after the progress lines.
        for workload, by_kind in results.items():
            report(by_kind, plans[workload], workload)
    except BenchError as e:
        sys.exit(f"bench/mail.py: {e}")
    finally:
        remove_user()
        if args.keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench/mail.py: interrupted (everything it started is stopped and removed)")
