"""postfix(1), the control command, end to end: start, start-fg, stop,
abort, reload, flush, status, check, set-permissions, logrotate, -c for a
second instance, and the SysV init script and systemd unit that make
install puts in place.

Each test installs into a fresh install_root (postfix-install), points
main.cf's paths into it, and runs ROOT/usr/sbin/postfix -c ROOT/etc/postfix.
Two masters serve: the real one (target/release/master, when it is built)
and a stand-in (tests/fixtures/postfix_cmd/master_standin.py) that has
master's interface only -- pid file under flock, detaching, -t, signals --
and records what it sees in $config_directory/standin.events, so that the
command can be tested on its own.  Lifecycle tests run with both, as root
(mail_owner postfix) and in unprivileged mode (a plain user when run as
root, else the caller).
"""

import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import IS_ROOT, alive, run_install

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "fixtures" / "postfix_cmd" / "master_standin.py"
REAL_MASTER = REPO / "target" / "release" / "master"
STOCK_MASTER_CF = [Path("/usr/share/postfix/master.cf.dist"), REPO / "etc" / "master.cf"]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")

needs_root = pytest.mark.skipif(not IS_ROOT, reason="owners can only be planted and repaired by root")
needs_real_master = pytest.mark.skipif(not REAL_MASTER.is_file(), reason="target/release/master is not built")

MQUEUES = "active bounce corrupt defer deferred flush hold incoming private saved trace".split()


# --- the instance under test ---------------------------------------------------


@dataclass
class Instance:
    root: Path
    config: Path
    user: pwd.struct_passwd | None  # run as this user (root testing unprivileged mode)
    master: str  # "real" or "standin"

    @property
    def privileged(self) -> bool:
        return IS_ROOT and self.user is None

    @property
    def queue(self) -> Path:
        return self.root / "var/spool/postfix"

    @property
    def data(self) -> Path:
        return self.root / "var/lib/postfix"

    @property
    def daemon(self) -> Path:
        return self.root / "usr/libexec/postfix"

    @property
    def maillog(self) -> Path:
        return self.root / "var/log/maillog"

    @property
    def pid_file(self) -> Path:
        return self.queue / "pid" / "master.pid"

    def command(self, program: str, *args: str, config: Path | None = None) -> list[str]:
        return [str(self.root / "usr/sbin" / program), "-c", str(config or self.config), *args]

    def run(self, *args: str, config: Path | None = None, env: dict | None = None, timeout=60):
        return as_user(self.user, self.command("postfix", *args, config=config), env=env, timeout=timeout)

    def ok(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
        result = self.run(*args, config=config)
        assert result.returncode == 0, f"postfix {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result

    def postconf(self, *settings: str, config: Path | None = None):
        result = as_user(self.user, self.command("postconf", "-e", *settings, config=config))
        assert result.returncode == 0, result.stderr

    def events(self, config: Path | None = None) -> list[str]:
        path = (config or self.config) / "standin.events"
        return path.read_text().splitlines() if path.exists() else []

    def pid(self, pid_file: Path | None = None) -> int:
        return int((pid_file or self.pid_file).read_text().strip())

    def owner_name(self, name: str) -> str:
        return self.user.pw_name if self.user else name


def as_user(user, argv, env=None, timeout=60, cwd=None):
    """Runs argv without a terminal, as user (a pwd entry) when given."""
    extra = {}
    run_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    if env:
        run_env.update(env)
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        run_env.update(HOME=str(cwd or "/"), USER=user.pw_name, LOGNAME=user.pw_name)
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=run_env, cwd=cwd, **extra
    )


def locked(pid_file: Path) -> bool:
    import fcntl

    try:
        fd = os.open(pid_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def kill_leftover(pid_file: Path):
    """A test that failed half-way must not leave its master running."""
    if pid_file.exists() and locked(pid_file):
        try:
            pid = int(pid_file.read_text().strip())
            os.killpg(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


# --- building instances --------------------------------------------------------


def source_copy(dest: Path):
    """What postfix-install reads, copied where a plain user can read it:
    the checkout itself may sit where that user cannot."""
    (dest / "target" / "release").mkdir(parents=True)
    shutil.copy2(REPO / "postfix-install", dest)
    for tree in ("etc", "man"):
        shutil.copytree(REPO / tree, dest / tree)
    shutil.copytree(REPO / "target" / "man", dest / "target" / "man")
    for line in (REPO / "etc" / "postfix-files").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 6 and fields[1] == "bin":
            name = fields[0].rsplit("/", 1)[-1].lstrip("$").removesuffix("_path")
            shutil.copy2(REPO / "target" / "release" / name, dest / "target" / "release")


def chown_tree(top: Path, user):
    for path in [top, *top.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)


def install(base: Path, user, *params: str) -> Path:
    """Installs into base/root (as user when given); returns the root."""
    root = base / "root"
    if user is None:
        result = run_install(REPO, f"install_root={root}", f"tempdir={base}", *params, cwd=base)
    else:
        source_copy(base / "src")
        chown_tree(base, user)
        result = as_user(
            user,
            ["bash", str(base / "src" / "postfix-install"), f"install_root={root}", f"tempdir={base}", *params],
            cwd=base,
            timeout=120,
        )
    assert result.returncode == 0, f"install failed:\n{result.stdout}\n{result.stderr}"
    return root


def put_master(instance: Instance):
    """The real master, or the stand-in, as $daemon_directory/master."""
    target = instance.daemon / "master"
    if instance.master == "real":
        if not target.exists():
            shutil.copy2(REAL_MASTER, target)
    else:
        target.write_text(f"#!{PYTHON}\n" + STANDIN.read_text())
    target.chmod(0o755)
    if instance.user:
        os.lchown(target, instance.user.pw_uid, instance.user.pw_gid)


def make_instance(base: Path, user, master: str) -> Instance:
    root = install(base, user)
    instance = Instance(root=root, config=root / "etc/postfix", user=user, master=master)
    log_dir = root / "var/log"
    log_dir.mkdir(parents=True, exist_ok=True)
    if user:
        os.lchown(log_dir, user.pw_uid, user.pw_gid)
    # A root install records the paths as on the target system (/usr/sbin
    # ...); this instance lives below root.
    instance.postconf(
        f"command_directory = {root}/usr/sbin",
        f"daemon_directory = {root}/usr/libexec/postfix",
        f"queue_directory = {instance.queue}",
        f"data_directory = {instance.data}",
        f"maillog_file = {instance.maillog}",
        f"maillog_file_prefixes = {root}",
        f"alias_database = hash:{instance.config}/aliases",
        f"alias_maps = hash:{instance.config}/aliases",
        f"manpage_directory = {root}/usr/local/man",
        f"newaliases_path = {root}/usr/bin/newaliases",
        f"mailq_path = {root}/usr/bin/mailq",
        f"sendmail_path = {root}/usr/sbin/sendmail",
    )
    put_master(instance)
    return instance


def no_services(instance: Instance, config: Path | None = None):
    """A master.cf without services: nothing to listen on or start."""
    path = (config or instance.config) / "master.cf"
    path.write_text("# no services\n")


@pytest.fixture(scope="module")
def plain_user():
    """A throwaway account for unprivileged mode when the tests run as
    root; the caller itself otherwise."""
    if not IS_ROOT:
        yield None
        return
    name = f"pfxc{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/bin/sh", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def base():
    """A directory every account can reach (pytest's tmp_path is root's own)."""
    path = Path(tempfile.mkdtemp(prefix="pfx-cmd-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


MODES = [
    pytest.param(("root", "standin"), id="root-standin", marks=needs_root),
    pytest.param(("root", "real"), id="root-real", marks=[needs_root, needs_real_master]),
    pytest.param(("user", "standin"), id="user-standin"),
    pytest.param(("user", "real"), id="user-real", marks=needs_real_master),
]


def build(request, base, mail_accounts, plain_user, mode) -> Instance:
    who, master = mode
    user = plain_user if who == "user" else None
    instance = make_instance(base, user, master)
    request.addfinalizer(lambda: kill_leftover(instance.pid_file))
    return instance


@pytest.fixture(params=MODES)
def instance(request, base, built, mail_accounts, plain_user):
    """Every combination of root/unprivileged and real/stand-in master,
    with a master.cf that has no services."""
    made = build(request, base, mail_accounts, plain_user, request.param)
    no_services(made)
    return made


@pytest.fixture(params=[MODES[0], MODES[2]])
def standin(request, base, built, mail_accounts, plain_user):
    """Root and unprivileged, with the stand-in master and the stock
    master.cf."""
    return build(request, base, mail_accounts, plain_user, request.param)


@pytest.fixture
def root_standin(request, base, built, mail_accounts, plain_user):
    if not IS_ROOT:
        pytest.skip("needs root")
    return build(request, base, mail_accounts, plain_user, ("root", "standin"))


# --- start, stop, status ---------------------------------------------------------


def test_status_start_stop(instance):
    result = instance.run("status")
    assert result.returncode == 1
    assert result.stderr == "postfix/postfix-script: the Postfix mail system is not running\n"

    result = instance.ok("start")
    assert "postfix/postfix-script: starting the Postfix mail system\n" in result.stderr
    assert locked(instance.pid_file)
    pid = instance.pid()
    assert alive(pid)

    result = instance.ok("status")
    assert result.stderr == f"postfix/postfix-script: the Postfix mail system is running: PID: {pid}\n"

    result = instance.ok("stop")
    assert result.stderr.startswith("postfix/postfix-script: stopping the Postfix mail system\n")
    assert not alive(pid), "master is still there after postfix stop"
    assert not locked(instance.pid_file)
    assert instance.run("status").returncode == 1


def test_second_start_refuses(instance):
    instance.ok("start")
    pid = instance.pid()
    result = instance.run("start")
    assert result.returncode == 1
    assert "postfix/postfix-script: fatal: the Postfix mail system is already running\n" in result.stderr
    assert instance.pid() == pid and alive(pid)
    instance.ok("stop")


def test_stop_and_friends_when_not_running(instance):
    for verb in ("stop", "abort", "reload"):
        result = instance.run(verb)
        assert result.returncode == 1, verb
        assert result.stderr.endswith("postfix/postfix-script: fatal: the Postfix mail system is not running\n")


def test_stop_kills_a_master_that_does_not_go(standin):
    no_services(standin)
    standin.postconf("import_environment = MAIL_CONFIG STANDIN_IGNORE_TERM=1")
    standin.ok("start")
    pid = standin.pid()
    result = standin.ok("stop")
    assert "postfix/postfix-script: waiting for the Postfix mail system to terminate" in result.stderr
    assert result.stderr.endswith("postfix/postfix-script: warning: stopping the Postfix mail system with force\n")
    assert wait_for(lambda: not alive(pid))
    assert standin.events()[-1] == "SIGTERM"


def test_reload_signals_master(instance):
    instance.ok("start")
    pid = instance.pid()
    result = instance.ok("reload")
    assert result.stderr == "postfix/postfix-script: refreshing the Postfix mail system\n"
    if instance.master == "standin":
        assert wait_for(lambda: "SIGHUP" in instance.events())
    time.sleep(0.3)
    assert alive(pid) and instance.pid() == pid, "master must survive a reload"
    instance.ok("stop")
    if instance.master == "standin":
        assert instance.events()[-1] == "SIGTERM"


def test_reload_refuses_a_broken_master_cf(instance):
    instance.ok("start")
    pid = instance.pid()
    with open(instance.config / "master.cf", "a") as master_cf:
        master_cf.write("broken unix - -\n")
    result = instance.run("reload")
    assert result.returncode == 1
    assert f"fatal: file {instance.config}/master.cf: line 2: bad field count" in result.stderr
    assert alive(pid)
    if instance.master == "standin":
        assert "SIGHUP" not in instance.events()
    no_services(instance)
    instance.ok("stop")


def test_abort(instance):
    instance.ok("start")
    pid = instance.pid()
    result = instance.ok("abort")
    assert result.stderr == "postfix/postfix-script: aborting the Postfix mail system\n"
    assert wait_for(lambda: not alive(pid))
    if instance.master == "standin":
        assert instance.events()[-1] == "SIGQUIT"


def test_flush(instance):
    result = instance.run("flush")
    assert result.returncode == 69
    assert result.stderr == "postfix/postfix-script: fatal: Cannot flush mail queue - mail system is down\n"
    # Up, but this master.cf has no qmgr to ask: as down as Postfix says
    # when postqueue cannot reach it. The working flush is in
    # test_delivery.py.
    instance.ok("start")
    result = instance.run("flush")
    assert result.returncode == 69
    assert "fatal: Cannot flush mail queue - mail system is down" in result.stderr
    instance.ok("stop")


def test_start_fg_runs_master_in_place(instance):
    argv = instance.command("postfix", "start-fg")
    extra = {}
    if instance.user:
        extra = {"user": instance.user.pw_uid, "group": instance.user.pw_gid, "extra_groups": []}
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **extra)
    try:
        assert wait_for(lambda: locked(instance.pid_file)), "master did not come up"
        # exec: master is the very process that was started.
        assert instance.pid() == process.pid
        instance.ok("stop")
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "starting the Postfix mail system" in process.stderr.read().decode()


def test_second_instance_with_c(instance):
    """-c DIR: a second instance with its own queue runs beside the first."""
    other = instance.root / "etc/postfix-out"
    shutil.copytree(instance.config, other)
    if instance.user:
        chown_tree(other, instance.user)
    (other / "standin.events").unlink(missing_ok=True)
    queue = instance.root / "var/spool/postfix-out"
    instance.postconf(
        f"queue_directory = {queue}",
        f"data_directory = {instance.root}/var/lib/postfix-out",
        config=other,
    )
    instance.ok("start")
    instance.ok("start", config=other)
    first, second = instance.pid(), instance.pid(queue / "pid/master.pid")
    assert first != second and alive(first) and alive(second)
    assert instance.ok("status", config=other).stderr.endswith(f"PID: {second}\n")
    instance.ok("stop", config=other)
    assert not alive(second) and alive(first)
    instance.ok("stop")
    if instance.master == "standin":
        assert instance.events(other)[0] == f"started {second}"


def test_master_gets_a_clean_environment(standin):
    no_services(standin)
    standin.ok("start")
    standin.ok("stop")
    env = next(line for line in standin.events() if line.startswith("env "))
    assert "PATH=/bin:/usr/bin:/sbin:/usr/sbin" in env.split()
    assert f"MAIL_CONFIG={standin.config}" in env.split()
    result = standin.run("start", env={"POSTFIX_TEST_SECRET": "1", "TZ": "UTC"})
    assert result.returncode == 0
    standin.ok("stop")
    last_env = [line for line in standin.events() if line.startswith("env ")][-1].split()
    assert "TZ=UTC" in last_env  # import_environment lets TZ through
    assert not any(word.startswith("POSTFIX_TEST_SECRET=") for word in last_env)


def test_verbose_and_debug_reach_master(standin):
    no_services(standin)
    result = standin.run("-Dv", "start")
    assert result.returncode == 0, result.stderr
    standin.ok("stop")
    env = [line for line in standin.events() if line.startswith("env ")][-1].split()
    assert "MAIL_VERBOSE=" in env and "MAIL_DEBUG=" in env


# --- messages, usage ---------------------------------------------------------------

LOG_LINE = re.compile(r"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ postfix/postfix-script\[(\d+)\]: (.*)$")


def test_messages_are_logged_too(standin):
    standin.run("status")
    lines = standin.maillog.read_text().splitlines()
    match = LOG_LINE.match(lines[-1])
    assert match, lines[-1]
    assert match.group(2) == "the Postfix mail system is not running"


def test_usage_errors(standin):
    result = standin.run("bogus")
    assert result.returncode == 1
    assert result.stderr.startswith("postfix/postfix-script: fatal: unknown command: 'bogus'. Usage: postfix start")
    result = as_user(standin.user, [str(standin.root / "usr/sbin/postfix"), "-c", "etc", "status"])
    assert (result.returncode, result.stderr) == (1, "postfix: fatal: -c requires absolute pathname\n")
    result = as_user(standin.user, [str(standin.root / "usr/sbin/postfix")])
    assert (result.returncode, result.stderr) == (1, "postfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n")
    result = standin.run("logrotate", "now")
    assert "fatal: usage postfix logrotate (no arguments)" in result.stderr


@needs_root
def test_only_root_or_mail_owner_may_run_it(root_standin, plain_user):
    result = as_user(plain_user, root_standin.command("postfix", "status"))
    assert result.returncode == 1
    assert "error: to submit mail, use the Postfix sendmail command" in result.stderr
    assert "fatal: the postfix command is reserved for the superuser" in result.stderr


def test_missing_master_program_is_fatal(standin):
    (standin.daemon / "master").unlink()
    result = standin.run("status")
    assert result.returncode == 1
    assert result.stderr.endswith(f"fatal: no Postfix master program {standin.daemon}/master!\n")


# --- check and set-permissions -------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": warning: " in line]


def test_check_creates_missing_queue_directories(standin):
    for name in ("active", "maildrop", "public", "pid"):
        shutil.rmtree(standin.queue / name)
    shutil.rmtree(standin.data)
    no_services(standin)
    result = standin.ok("check")
    assert warnings(result) == []
    want = {"active": 0o700, "maildrop": 0o730, "public": 0o710, "pid": 0o755}
    for name, mode in want.items():
        assert mode_of(standin.queue / name) == mode, name
    assert mode_of(standin.data) == 0o700
    if standin.privileged:
        assert (standin.queue / "active").owner() == "postfix"
        assert (standin.queue / "maildrop").group() == "postdrop"
        assert (standin.queue / "public").group() == "postdrop"
        assert (standin.queue / "pid").owner() == "root"
        assert standin.data.owner() == "postfix"
    else:
        uid = standin.user.pw_uid if standin.user else os.getuid()
        assert (standin.queue / "active").stat().st_uid == uid


def test_start_creates_a_missing_queue_directory(standin):
    shutil.rmtree(standin.queue / "incoming")
    no_services(standin)
    standin.ok("start")
    standin.ok("stop")
    assert mode_of(standin.queue / "incoming") == 0o700


@needs_root
def test_check_names_wrong_owners_and_set_permissions_repairs_them(root_standin):
    """The seed 000 trap: queue directories left to a uid that is no
    longer postfix (here root) make the daemons fail with Permission
    denied; check names each, set-permissions gives them back."""
    instance = root_standin
    no_services(instance)
    queue = instance.queue
    os.chown(queue / "defer", 0, 0)
    deferred_file = queue / "deferred" / "A" / "ABC123"
    deferred_file.parent.mkdir()
    deferred_file.write_text("")
    os.chown(deferred_file.parent, pwd.getpwnam("postfix").pw_uid, 0)
    os.chown(queue / "maildrop", pwd.getpwnam("postfix").pw_uid, 0)
    os.chown(queue / "pid", pwd.getpwnam("postfix").pw_uid, 0)
    os.chown(instance.data, 0, 0)

    result = instance.ok("check")
    found = warnings(result)
    prefix = "postfix/postfix-script: warning: "
    for text in (
        f"not owned by postfix: {queue}/defer",
        f"not owned by postfix: {deferred_file}",
        f"not owned by group postdrop: {queue}/maildrop",
        f"not owned by root: {queue}/pid",
        f"not owned by postfix: {instance.data}",
    ):
        assert prefix + text in found, f"{text} not in {found}"
    assert len(found) == 5, found

    result = instance.ok("set-permissions")
    assert "unprivileged" not in result.stderr
    assert instance.ok("check").stderr == ""
    assert (queue / "defer").owner() == "postfix"
    assert deferred_file.owner() == "postfix"
    assert (queue / "maildrop").group() == "postdrop"
    assert (queue / "pid").owner() == "root"
    assert instance.data.owner() == "postfix"


def test_check_names_wrong_modes_and_set_permissions_repairs_them(standin):
    no_services(standin)
    (standin.queue / "active").chmod(0o755)
    (standin.queue / "maildrop").chmod(0o1733)
    (standin.queue / "pid").chmod(0o777)
    (standin.config / "main.cf").chmod(0o666)
    result = standin.ok("check")
    assert warnings(result) == [
        f"postfix/postfix-script: warning: wrong permissions 0755 (should be 0700): {standin.queue}/active",
        f"postfix/postfix-script: warning: wrong permissions 1733 (should be 0730): {standin.queue}/maildrop",
        f"postfix/postfix-script: warning: wrong permissions 0777 (should be 0755): {standin.queue}/pid",
        f"postfix/postfix-script: warning: group or other writable: {standin.queue}/pid",
        f"postfix/postfix-script: warning: group or other writable: {standin.config}/main.cf",
    ]
    standin.ok("set-permissions")
    (standin.config / "main.cf").chmod(0o644)  # configuration files are the administrator's
    assert standin.ok("check").stderr == ("" if standin.privileged else unprivileged_note(standin))
    assert mode_of(standin.queue / "maildrop") == 0o730


def unprivileged_note(instance: Instance) -> str:
    name = instance.user.pw_name if instance.user else pwd.getpwuid(os.getuid()).pw_name
    return (
        f"postfix/postfix-script: unprivileged mode is on: {name} is not root, "
        f"so everything belongs to {name} and no owner is changed\n"
    )


def test_unprivileged_mode_is_announced(standin):
    no_services(standin)
    result = standin.ok("check")
    if standin.privileged:
        assert "unprivileged" not in result.stderr
    else:
        assert result.stderr == unprivileged_note(standin)


@needs_root
def test_set_permissions_applies_postfix_files(root_standin):
    """Programs and manual pages as postfix-files lists them; main.cf is
    the administrator's and stays as it is."""
    postconf = root_standin.root / "usr/sbin/postconf"
    postconf.chmod(0o700)
    os.chown(postconf, pwd.getpwnam("postfix").pw_uid, 0)
    (root_standin.config / "main.cf").chmod(0o640)
    result = root_standin.run("-v", "set-permissions")
    assert result.returncode == 0, result.stderr
    assert f"chmod 0755 {postconf}" in result.stderr
    assert mode_of(postconf) == 0o755 and postconf.owner() == "root"
    assert mode_of(root_standin.config / "main.cf") == 0o640


def test_malformed_master_cf_lines_are_fatal(standin):
    master_cf = standin.config / "master.cf"
    master_cf.write_text("# test\nbroken unix - -\nsmtp inet n - n - - smtpd\nworse unix maybe - n - - smtpd\n")
    result = standin.run("check")
    assert result.returncode == 1
    fatal = [line for line in result.stderr.splitlines() if ": fatal: " in line]
    assert fatal == [
        f"postfix/postfix-script: fatal: file {master_cf}: line 2: bad field count",
        f"postfix/postfix-script: fatal: file {master_cf}: line 4: bad private field: \"maybe\" (specify y, n or -)",
        "postfix/postfix-script: fatal: Postfix integrity check failed!",
    ]
    result = standin.run("start")
    assert result.returncode == 1 and "Postfix integrity check failed!" in result.stderr
    assert not locked(standin.pid_file)


def test_missing_master_cf_is_fatal(standin):
    (standin.config / "master.cf").unlink()
    result = standin.run("check")
    assert result.returncode == 1
    assert f"fatal: no {standin.config}/master.cf file found" in result.stderr


def test_bad_main_cf_value_is_fatal(standin):
    no_services(standin)
    standin.postconf("inet_protocols = IPv4")
    result = standin.run("check")
    assert result.returncode == 1
    assert re.search(
        rf"fatal: {re.escape(str(standin.config))}/main.cf, line \d+: unknown inet_protocols value \"IPv4\"",
        result.stderr,
    ), result.stderr


def master_cf_entries(path: Path) -> list[tuple[int, str, str]]:
    """(line, service/type, command) of each entry of a master.cf."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#") and not line[0].isspace():
            words = line.split()
            entries.append((number, f"{words[0]}/{words[1]}", words[7]))
    return entries


def test_check_names_each_stock_service_once(standin):
    """A stock Postfix master.cf is accepted: each entry whose daemon this
    build lacks is named once, with what happens instead."""
    stock = next(path for path in STOCK_MASTER_CF if path.exists())
    master_cf = standin.config / "master.cf"
    shutil.copy(stock, master_cf)
    if standin.user:
        os.lchown(master_cf, standin.user.pw_uid, standin.user.pw_gid)
    result = standin.ok("check")
    notes = [line for line in warnings(result) if "master.cf: line" in line]
    # Those whose program this build lacks.
    entries = [e for e in master_cf_entries(master_cf) if not (standin.daemon / e[2]).exists()]
    assert len(notes) == len(entries), "\n".join(notes)
    for (number, service, command), note in zip(entries, notes):
        program = standin.daemon / command
        assert note.startswith(f"postfix/postfix-script: warning: {master_cf}: line {number}: service \"{service}\": {program} ")
        assert note.endswith("; master will not start it"), note
    rewrite = next(note for note in notes if "trivial-rewrite" in note)
    assert "is not needed (postfix-rs rewrites and resolves addresses" in rewrite
    bounce = next(note for note in notes if "/bounce " in note)
    assert "is not needed (qmgr writes delivery status notifications itself" in bounce
    virtual = next(note for note in notes if "/virtual " in note)
    assert "is not provided by this build yet" in virtual
    # The daemons this build has are not named.
    assert not [
        note for note in notes if re.search(r"/(smtpd|cleanup|qmgr|local|pickup|smtp|error|discard) ", note)
    ]


def test_check_names_a_missing_or_unusable_program(standin):
    tool = standin.daemon / "tool"
    tool.write_text("")
    if standin.user:
        os.lchown(tool, standin.user.pw_uid, standin.user.pw_gid)
    (standin.config / "master.cf").write_text(
        "custom unix - - n - - custom-daemon\nscript unix - - n - - tool\nok unix - - n - - master\n"
    )
    result = standin.ok("check")
    assert warnings(result) == [
        f"postfix/postfix-script: warning: {standin.config}/master.cf: line 1: service \"custom/unix\": "
        f"{standin.daemon}/custom-daemon: No such file or directory",
        f"postfix/postfix-script: warning: {standin.config}/master.cf: line 2: service \"script/unix\": "
        f"{standin.daemon}/tool is not executable",
    ]


def test_start_sums_up_missing_daemons(standin):
    master_cf = standin.config / "master.cf"
    shutil.copy(STOCK_MASTER_CF[1], master_cf)
    if standin.user:
        os.lchown(master_cf, standin.user.pw_uid, standin.user.pw_gid)
    result = standin.ok("start")
    standin.ok("stop")
    lines = warnings(result)
    assert len(lines) == 1 and re.search(r"\d+ master\.cf services? will not be started", lines[0]), lines


def test_damaged_messages_are_named(standin):
    no_services(standin)
    damaged = standin.queue / "corrupt" / "4FAB21C0DE"
    damaged.write_text("")
    if standin.privileged:
        os.chown(damaged, pwd.getpwnam("postfix").pw_uid, 0)
    elif standin.user:
        os.lchown(damaged, standin.user.pw_uid, standin.user.pw_gid)
    result = standin.ok("check")
    assert "postfix/postfix-script: warning: damaged message: corrupt/4FAB21C0DE" in warnings(result)


# --- logrotate -------------------------------------------------------------------------


def test_logrotate(standin):
    no_services(standin)
    standin.run("status")
    before = standin.maillog.read_text()
    standin.ok("logrotate")
    rotated = [p for p in standin.maillog.parent.iterdir() if p.name.startswith("maillog.")]
    assert len(rotated) == 1, rotated
    assert rotated[0].name.endswith(".gz")
    assert subprocess.run(["gzip", "-dc", str(rotated[0])], capture_output=True, text=True).stdout == before
    assert standin.maillog.exists()


# --- init script and systemd unit --------------------------------------------------------------


def test_boot_files_name_the_installed_paths(base, mail_accounts, built):
    root = install(
        base,
        None,
        "command_directory=/opt/pfx/sbin",
        "config_directory=/etc/pfx",
        "queue_directory=/srv/pfx-spool",
    )
    script = (root / "etc/init.d/postfix").read_text()
    assert 'POSTFIX="/opt/pfx/sbin/postfix"' in script
    assert 'CONFIG="/etc/pfx"' in script
    assert "# pidfile: /srv/pfx-spool/pid/master.pid" in script
    assert "/usr/sbin/postfix" not in script and "/etc/postfix/" not in script
    assert mode_of(root / "etc/init.d/postfix") == 0o755
    unit = (root / "usr/local/lib/systemd/system/postfix.service").read_text()
    for line in (
        "Type=forking",
        "PIDFile=/srv/pfx-spool/pid/master.pid",
        "ExecStart=/opt/pfx/sbin/postfix -c /etc/pfx start",
        "ExecReload=/opt/pfx/sbin/postfix -c /etc/pfx reload",
        "ExecStop=/opt/pfx/sbin/postfix -c /etc/pfx stop",
    ):
        assert line in unit.splitlines(), line


def init_script_for(instance: Instance, base: Path) -> Path:
    """The installed init script, pointed at this instance."""
    text = (instance.root / "etc/init.d/postfix").read_text()
    text = re.sub(r'(?m)^POSTFIX=.*$', f'POSTFIX="{instance.root}/usr/sbin/postfix"', text)
    text = re.sub(r'(?m)^CONFIG=.*$', f'CONFIG="{instance.config}"', text)
    text = re.sub(r'(?m)^NEWALIASES=.*$', f'NEWALIASES="{instance.root}/usr/bin/newaliases"', text)
    script = base / "postfix.init"
    script.write_text(text)
    script.chmod(0o755)
    return script


def test_init_script_controls_the_mail_system(instance, base):
    script = init_script_for(instance, base)

    def service(verb):
        return as_user(instance.user, ["sh", str(script), verb])

    assert service("status").returncode == 3
    result = service("start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Starting postfix: ")
    assert "OK" in result.stdout
    pid = instance.pid()
    status = service("status")
    assert status.returncode == 0 and f"PID: {pid}" in status.stderr
    assert service("reload").returncode == 0
    assert service("check").returncode == 0
    # flush asks qmgr (here a stand-in socket) to retry everything now.
    qmgr = socket.socket(socket.AF_UNIX)
    qmgr_path = instance.queue / "public" / "qmgr"
    qmgr.bind(str(qmgr_path))
    qmgr_path.chmod(0o666)
    qmgr.listen(1)
    qmgr.settimeout(10)
    try:
        assert service("flush").returncode == 0
        conn, _ = qmgr.accept()
        assert conn.recv(64) == b"FDAI"
        conn.close()
    finally:
        qmgr.close()
        qmgr_path.unlink()
    assert service("condrestart").returncode == 0
    assert wait_for(lambda: locked(instance.pid_file))
    restarted = instance.pid()
    assert restarted != pid and not alive(pid)
    result = service("start")
    assert result.returncode == 1 and "already running" in result.stderr
    assert service("stop").returncode == 0
    assert not alive(restarted)
    assert service("status").returncode == 3
    assert service("condrestart").returncode == 0
    assert not locked(instance.pid_file)
    result = service("bogus")
    assert result.returncode == 2 and "Usage:" in result.stdout
