"""Helpers for the installer tests: run postfix-install, read the manifest
(etc/postfix-files) and compare an installed tree against it."""

import grp
import os
import pwd
import re
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The installation parameters in the order postfix-install asks them, with
# Postfix's defaults.  tempdir defaults to the current directory.
PARAM_DEFAULTS = [
    ("install_root", "/"),
    ("tempdir", None),
    ("config_directory", "/etc/postfix"),
    ("command_directory", "/usr/sbin"),
    ("daemon_directory", "/usr/libexec/postfix"),
    ("data_directory", "/var/lib/postfix"),
    ("html_directory", "no"),
    ("mail_owner", "postfix"),
    ("mailq_path", "/usr/bin/mailq"),
    ("manpage_directory", "/usr/local/man"),
    ("newaliases_path", "/usr/bin/newaliases"),
    ("queue_directory", "/var/spool/postfix"),
    ("readme_directory", "no"),
    ("sendmail_path", "/usr/sbin/sendmail"),
    ("setgid_group", "postdrop"),
]
PARAM_NAMES = [name for name, _ in PARAM_DEFAULTS]
# The parameters that the installer records in main.cf.
MAIN_CF_PARAMS = PARAM_NAMES[2:]

IS_ROOT = os.geteuid() == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Polls predicate until it returns something true, and returns that;
    fails after a generous time (a failure, not a measurement)."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True if pid is a live process (a zombie waiting for its parent is
    gone for our purposes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] != "Z"


def run_install(script_dir: Path, *args: str, cwd: Path, user=None, timeout=120):
    """Run postfix-install without a terminal; returns CompletedProcess.
    user: a pwd entry to run as (root only)."""
    extra = {}
    env = {k: v for k, v in os.environ.items() if k != "PWD"}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env.update(HOME=str(cwd), USER=user.pw_name, LOGNAME=user.pw_name)
    return subprocess.run(
        ["bash", str(script_dir / "postfix-install"), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        **extra,
    )


def expected_params(mail_accounts, **given) -> dict:
    """The values an install should end up with: defaults, the accounts a
    root (or unprivileged) install uses, then what the test gives."""
    values = {name: default for name, default in PARAM_DEFAULTS}
    values["mail_owner"], values["setgid_group"] = mail_accounts
    values.update(given)
    return values


def postconf_h(postconf: Path, config_dir: Path, name: str) -> str:
    result = subprocess.run(
        [str(postconf), "-c", str(config_dir), "-h", name], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def main_cf_setting(config_dir: Path, name: str) -> str | None:
    """The value main.cf itself gives name (the last definition wins).
    For config_directory, which postconf -c DIR -h always reports as DIR."""
    value = None
    for line in (config_dir / "main.cf").read_text().splitlines():
        key, sep, rest = line.partition("=")
        if sep and line[:1] not in ("", "#", " ", "\t") and key.strip() == name:
            value = rest.strip()
    return value


@dataclass
class Entry:
    path: str  # as on the running system, without install_root
    type: str
    owner: str
    group: str
    mode: int
    flags: str


_VAR = re.compile(r"\$(?:\{([a-z_]+)\}|([a-z_]+))")


def read_manifest(manifest: Path, params: dict) -> list[Entry]:
    """Parse postfix-files with the parameter values substituted; entries
    that use a parameter set to "no" are left out, as the installer does."""
    entries = []
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        assert len(fields) == 6, f"{manifest}, line {number}: {line!r}"
        names = [a or b for a, b in _VAR.findall(fields[0])]
        if any(params[name] == "no" for name in names):
            continue

        def expand(text: str) -> str:
            return _VAR.sub(lambda m: params[m.group(1) or m.group(2)], text)

        path, type_, owner, group, mode, flags = fields
        entries.append(Entry(expand(path), type_, expand(owner), expand(group), int(mode, 8), flags))
    return entries


def source_of(repo: Path, entry: Entry) -> Path:
    """Where in the source tree an installed file comes from."""
    base = Path(entry.path).name
    if entry.type == "bin":
        return repo / "target" / "release" / base
    if entry.type in ("file", "conf"):
        # An init script comes from etc/NAME.init (postfix-install's rule).
        if Path(entry.path).parent.name == "init.d":
            return repo / "etc" / f"{base}.init"
        return repo / "etc" / base
    section = Path(entry.path).parent.name
    page = repo / "man" / section / base
    return page if page.exists() else repo / "target" / "man" / section / base


def check_against_manifest(root: Path, entries: list[Entry], privileged: bool) -> list[str]:
    """Compare the tree under root with the manifest; returns the problems.
    In an unprivileged install every owner is the installing user."""
    me = pwd.getpwuid(os.getuid()).pw_name
    problems = []
    for entry in entries:
        target = root / entry.path.lstrip("/")
        try:
            st = target.lstat()
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        want_dir = entry.type == "dir"
        if want_dir != stat.S_ISDIR(st.st_mode) or (not want_dir and not stat.S_ISREG(st.st_mode)):
            problems.append(f"{entry.path}: wrong file type for {entry.type}")
        if stat.S_IMODE(st.st_mode) != entry.mode:
            problems.append(f"{entry.path}: mode {stat.S_IMODE(st.st_mode):o}, want {entry.mode:o}")
        owner = pwd.getpwuid(st.st_uid).pw_name
        want_owner = entry.owner if privileged else me
        if owner != want_owner:
            problems.append(f"{entry.path}: owner {owner}, want {want_owner}")
        if privileged and entry.group != "-":
            group = grp.getgrgid(st.st_gid).gr_name
            if group != entry.group:
                problems.append(f"{entry.path}: group {group}, want {entry.group}")
    return problems


def leftovers(*dirs: Path) -> list[Path]:
    """Temporary files the installer should have removed."""
    found = []
    for top in dirs:
        for path in top.rglob("*"):
            if ".postfix-install." in path.name or path.name.startswith("postfix-install."):
                found.append(path)
    return found


def age_files(directory: Path) -> None:
    """Dates the files in directory an hour back.  Postfix's postconf
    re-reads a main.cf modified within the last second or so (it waits
    300 ms each time, and repeats its warnings), which makes the reference
    tests slow and its messages irregular."""
    past = os.stat(directory).st_mtime - 3600
    for path in directory.iterdir():
        os.utime(path, (past, past))
