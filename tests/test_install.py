"""postfix-install and `make install`: what gets installed, with which owners
and modes, what main.cf records, the questions asked at a terminal, the
refusals as root, and the unprivileged install."""

import grp
import io
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import (
    IS_ROOT,
    MAIN_CF_PARAMS,
    PARAM_DEFAULTS,
    check_against_manifest,
    expected_params,
    leftovers,
    main_cf_setting,
    postconf_h,
    read_manifest,
    run_install,
    source_of,
)

needs_root = pytest.mark.skipif(not IS_ROOT, reason="only a root install checks and sets accounts")


def install_ok(repo, *args, cwd):
    result = run_install(repo, *args, cwd=cwd)
    assert result.returncode == 0, f"install failed:\n{result.stdout}\n{result.stderr}"
    return result


def installed(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def assert_main_cf_records(root: Path, params: dict, recorded: dict | None = None):
    """main.cf holds the chosen paths (`recorded`: by default `params`,
    i.e. without install_root), read back with the installed postconf."""
    recorded = recorded or params
    postconf = installed(root, params["command_directory"]) / "postconf"
    config = installed(root, params["config_directory"])
    for name in MAIN_CF_PARAMS:
        if name == "config_directory":  # postconf -c DIR reports DIR itself
            assert main_cf_setting(config, name) == recorded[name]
        else:
            assert postconf_h(postconf, config, name) == recorded[name], name


def with_install_root(root: Path, params: dict) -> dict:
    """The paths an unprivileged install records: it runs where it was put."""
    return {
        name: value if name in ("mail_owner", "setgid_group") or value == "no" else f"{root}{value}"
        for name, value in params.items()
    }


# --- (a) non-interactive install --------------------------------------------


def test_install_matches_manifest(built, mail_accounts, tmp_path):
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    scratch.mkdir()
    install_ok(built, f"install_root={root}", f"tempdir={scratch}", cwd=tmp_path)

    params = expected_params(mail_accounts, install_root=str(root), tempdir=str(scratch))
    manifest = installed(root, params["config_directory"]) / "postfix-files"
    assert manifest.read_text() == (built / "etc" / "postfix-files").read_text()
    entries = read_manifest(manifest, params)
    assert check_against_manifest(root, entries, privileged=IS_ROOT) == []
    for entry in entries:
        if entry.type == "dir":
            continue
        copy, source = installed(root, entry.path).read_bytes(), source_of(built, entry).read_bytes()
        if entry.path.endswith("/main.cf"):
            # postconf -e keeps the stock text and adds the new settings after it.
            assert copy.startswith(source)
        else:
            assert copy == source, entry.path

    assert_main_cf_records(root, params)
    postconf = installed(root, params["command_directory"]) / "postconf"
    config = installed(root, params["config_directory"])
    assert postconf_h(postconf, config, "compatibility_level") == "3.7"
    assert leftovers(root, scratch) == []


def test_manifest_lists_queue_as_postfix_does(built):
    """The queue owners and modes that Postfix uses (and the seed guides
    rely on), spelled out so a manifest edit cannot change them by accident."""
    params = expected_params(("postfix", "postdrop"))
    entries = {e.path: e for e in read_manifest(built / "etc" / "postfix-files", params)}
    queue = "/var/spool/postfix"
    want = {queue: ("root", "-", 0o755), f"{queue}/pid": ("root", "-", 0o755)}
    for name in "active bounce corrupt defer deferred flush hold incoming private saved trace".split():
        want[f"{queue}/{name}"] = ("postfix", "-", 0o700)
    want[f"{queue}/maildrop"] = ("postfix", "postdrop", 0o730)
    want[f"{queue}/public"] = ("postfix", "postdrop", 0o710)
    want["/var/lib/postfix"] = ("postfix", "-", 0o700)
    want["/etc/postfix"] = ("root", "-", 0o755)
    want["/usr/sbin/postconf"] = ("root", "-", 0o755)
    for path, (owner, group, mode) in want.items():
        entry = entries[path]
        assert (entry.owner, entry.group, entry.mode) == (owner, group, mode), path


def test_reinstall_keeps_edited_config(built, mail_accounts, tmp_path):
    root = tmp_path / "root"
    args = (f"install_root={root}", f"tempdir={tmp_path}")
    install_ok(built, *args, cwd=tmp_path)
    config = root / "etc" / "postfix"
    with open(config / "main.cf", "a") as main_cf:
        main_cf.write("myhostname = edited.example\n")
    (config / "master.cf").write_text("# edited by the admin\n")
    (config / "postfix-files").write_text("# stale\n")
    (root / "var/spool/postfix/active").chmod(0o777)
    edited_main_cf = (config / "main.cf").read_text()

    install_ok(built, *args, cwd=tmp_path)
    assert (config / "main.cf").read_text() == edited_main_cf
    assert (config / "master.cf").read_text() == "# edited by the admin\n"
    # Files that are not configuration are refreshed, directory modes reset.
    assert (config / "postfix-files").read_text() == (built / "etc" / "postfix-files").read_text()
    assert stat.S_IMODE((root / "var/spool/postfix/active").stat().st_mode) == 0o700
    assert postconf_h(root / "usr/sbin/postconf", config, "myhostname") == "edited.example"


@needs_root
def test_reinstall_repairs_queue_ownership(built, mail_accounts, tmp_path):
    """The permission trap of the seed guide: queue files left owned by an
    account that is no longer mail_owner.  A root reinstall gives them back."""
    root = tmp_path / "root"
    args = (f"install_root={root}", f"tempdir={tmp_path}")
    install_ok(built, *args, cwd=tmp_path)
    stale = root / "var/spool/postfix/deferred/A/A1B2C3"
    stale.parent.mkdir()
    stale.write_text("queue file\n")
    nobody = pwd.getpwnam("nobody")
    for path in (stale.parent, stale):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)

    install_ok(built, *args, cwd=tmp_path)
    owner = pwd.getpwnam(mail_accounts[0]).pw_uid
    assert stale.parent.stat().st_uid == owner
    assert stale.stat().st_uid == owner


def test_upgrade_takes_defaults_from_main_cf(built, mail_accounts, tmp_path):
    root = tmp_path / "root"
    custom = {"queue_directory": "/var/spool/pfx-test", "command_directory": "/opt/pfx/sbin"}
    install_ok(built, f"install_root={root}", f"tempdir={tmp_path}",
               *(f"{k}={v}" for k, v in custom.items()), cwd=tmp_path)
    shutil.rmtree(root / "var/spool/pfx-test/incoming")

    result = install_ok(built, f"install_root={root}", f"tempdir={tmp_path}", cwd=tmp_path)
    assert "using the settings in" in result.stdout
    params = expected_params(mail_accounts, **custom)
    assert_main_cf_records(root, params)
    assert (root / "var/spool/pfx-test/incoming").is_dir()
    assert not (root / "var/spool/postfix").exists()


def test_bad_values_refused(built, mail_accounts, tmp_path):
    root = tmp_path / "root"
    bad = [
        ("queue_directory=relative/path", "absolute path"),
        ("install_root=/has space", "white space"),
        ("no_such_parameter=1", "unknown installation parameter"),
        (f"tempdir={tmp_path}/missing", "tempdir"),
    ]
    for arg, message in bad:
        result = run_install(built, f"install_root={root}", arg, cwd=tmp_path)
        assert result.returncode == 1, arg
        assert message in result.stderr, (arg, result.stderr)
        assert not root.exists(), arg


def test_package_mode_needs_install_root_and_sets_no_owner(built, tmp_path):
    result = run_install(built, "-non-interactive", "-package", cwd=tmp_path)
    assert result.returncode == 1
    assert "install_root" in result.stderr

    root = tmp_path / "pkg"
    result = run_install(built, "-non-interactive", "-package", f"install_root={root}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    me = os.getuid()
    assert all(p.lstat().st_uid == me for p in [root, *root.rglob("*")])
    # The package records the accounts it is meant for, not the builder's.
    config = root / "etc/postfix"
    assert postconf_h(root / "usr/sbin/postconf", config, "mail_owner") == "postfix"
    assert postconf_h(root / "usr/sbin/postconf", config, "setgid_group") == "postdrop"


def test_make_install_passes_command_line_variables(built, tmp_path):
    """`make install name=value` hands exactly the given parameters to the
    installer (make -n: show, do not build)."""
    env = dict(os.environ, mail_owner="from-environment")
    # Run as a top-level make even when the tests run under "make test".
    for name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):
        env.pop(name, None)
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "install", f"install_root={tmp_path}/x", "queue_directory=/q"],
        cwd=built, env=env, capture_output=True, text=True, check=True,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"bash ./postfix-install 'install_root={tmp_path}/x' 'queue_directory=/q'"


# --- (b) interactive install at a terminal ----------------------------------

PROMPT = re.compile(r"^([a-z_]+): \[([^\]\r\n]*)\] ", re.M)


def run_interactive(built: Path, cwd: Path, answers: dict, defaults: list):
    """Answer every question through a pseudo-terminal: answers[name], or
    Enter.  Checks each prompt's exact text as it comes; returns the
    transcript."""
    pexpect = pytest.importorskip("pexpect")
    env = {k: v for k, v in os.environ.items() if k != "PWD"}
    transcript = io.StringIO()
    child = pexpect.spawn("bash", [str(built / "postfix-install")], cwd=str(cwd), env=env,
                          encoding="utf-8", timeout=60)
    child.logfile_read = transcript
    for name, default in defaults:
        child.expect_exact(f"{name}: [{default}] ")
        child.sendline(answers.get(name, ""))
    child.expect(pexpect.EOF)
    child.close()
    text = transcript.getvalue().replace("\r\n", "\n")
    assert child.exitstatus == 0, text
    return text


def test_interactive_prompts(built, mail_accounts, tmp_path):
    root = tmp_path / "root"
    cwd = Path(os.path.realpath(tmp_path))
    defaults = [(name, default) for name, default in PARAM_DEFAULTS]
    defaults[1] = ("tempdir", str(cwd))
    if not IS_ROOT:
        defaults[7] = ("mail_owner", mail_accounts[0])
        defaults[14] = ("setgid_group", mail_accounts[1])
    answers = {
        "install_root": str(root),
        "command_directory": "/opt/pfx/sbin",
        "html_directory": "/var/www/html/postfix",
        "queue_directory": "/var/spool/pfx",
    }
    text = run_interactive(built, cwd, answers, defaults)

    # Exactly these 15 prompts, in this order, each after a line of its own
    # explaining it.
    assert [m.groups() for m in PROMPT.finditer(text)] == defaults
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if PROMPT.match(line):
            assert lines[number - 1].strip() and not PROMPT.match(lines[number - 1]), line

    params = expected_params(mail_accounts, **answers)
    assert_main_cf_records(root, params)
    assert (root / "var/spool/pfx/maildrop").is_dir()
    assert (root / "opt/pfx/sbin/postconf").is_file()

    # Asked again, the questions offer what main.cf now says.
    defaults[0] = ("install_root", "/")
    for name in ("command_directory", "html_directory", "queue_directory"):
        defaults[[n for n, _ in defaults].index(name)] = (name, answers[name])
    text = run_interactive(built, cwd, {"install_root": str(root)}, defaults)
    assert [m.groups() for m in PROMPT.finditer(text)] == defaults
    assert_main_cf_records(root, params)


# --- (c) root install with missing or unsafe accounts -----------------------


@needs_root
def test_missing_accounts_stop_before_any_change(built, tmp_path):
    user, group = f"pfxno{secrets.token_hex(4)}", f"pfxnog{secrets.token_hex(4)}"
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    scratch.mkdir()
    result = run_install(built, f"install_root={root}", f"tempdir={scratch}",
                         f"mail_owner={user}", f"setgid_group={group}", cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert f'mail_owner account "{user}" does not exist' in out
    assert f'setgid_group group "{group}" does not exist' in out
    assert f"groupadd -r {group}" in out
    assert f"groupadd -r {user}" in out
    assert re.search(rf"^ +useradd -r -g {user} .*-M .*{user}$", out, re.M), out
    assert not root.exists()
    assert list(scratch.iterdir()) == []


@needs_root
@pytest.mark.parametrize(
    "args, message",
    [
        (["mail_owner=root"], "must not run as root"),
        (["setgid_group=postfix"], "also the group of mail_owner"),
    ],
)
def test_unsafe_accounts_refused(built, mail_accounts, tmp_path, args, message):
    root = tmp_path / "root"
    result = run_install(built, f"install_root={root}", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert not root.exists()


# --- (d) unprivileged install -----------------------------------------------


@pytest.fixture
def plain_user():
    """A non-root account: the caller when not root; otherwise a throwaway
    user made for this test and removed afterwards."""
    if not IS_ROOT:
        yield pwd.getpwuid(os.getuid())
        return
    if not shutil.which("useradd"):
        pytest.skip("running as root without useradd: cannot make a non-root user")
    name = f"pfxu{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def user_workdir(built, plain_user):
    """A directory the user owns, holding a copy of what the installer
    reads: the checkout itself may sit where that user cannot read."""
    work = Path(tempfile.mkdtemp(prefix="pfx-unpriv-", dir="/tmp"))
    try:
        src = work / "src"
        (src / "target").mkdir(parents=True)
        shutil.copy2(built / "postfix-install", src)
        for tree in ("etc", "man"):
            shutil.copytree(built / tree, src / tree)
        shutil.copytree(built / "target" / "man", src / "target" / "man")
        (src / "target" / "release").mkdir()
        # Every program the manifest installs (type "bin").
        for line in (built / "etc" / "postfix-files").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 6 and fields[1] == "bin":
                # "$newaliases_path" installs target/release/newaliases.
                name = fields[0].rsplit("/", 1)[-1].lstrip("$").removesuffix("_path")
                shutil.copy2(built / "target" / "release" / name, src / "target" / "release")
        if IS_ROOT:
            for path in [work, *work.rglob("*")]:
                os.lchown(path, plain_user.pw_uid, plain_user.pw_gid)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_as(user, workdir: Path, *args):
    return run_install(workdir / "src", *args, cwd=workdir, user=user if IS_ROOT else None)


def test_unprivileged_install(plain_user, user_workdir):
    root = user_workdir / "root"
    result = run_as(plain_user, user_workdir, f"install_root={root}")
    assert result.returncode == 0, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if "unprivileged mode is on" in line]
    assert len(notes) == 1 and plain_user.pw_name in notes[0]

    group = grp.getgrgid(plain_user.pw_gid).gr_name
    params = expected_params((plain_user.pw_name, group))
    assert_main_cf_records(root, params, with_install_root(root, params))
    for path in [root, *root.rglob("*")]:
        assert path.lstat().st_uid == plain_user.pw_uid, path
    # Modes are still the manifest's.
    entries = read_manifest(root / "etc/postfix/postfix-files", params)
    for entry in entries:
        mode = stat.S_IMODE(installed(root, entry.path).lstat().st_mode)
        assert mode == entry.mode, entry.path


def test_unprivileged_reinstall_keeps_paths(plain_user, user_workdir):
    """A second unprivileged install reads main.cf's paths (which include
    install_root) as its defaults without adding install_root twice."""
    root = user_workdir / "root"
    for _ in range(2):
        result = run_as(plain_user, user_workdir, f"install_root={root}")
        assert result.returncode == 0, result.stdout + result.stderr
    group = grp.getgrgid(plain_user.pw_gid).gr_name
    params = expected_params((plain_user.pw_name, group))
    assert_main_cf_records(root, params, with_install_root(root, params))


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "install_root must be a directory of your own, not /"),
        (["install_root=/"], "not /"),
        (["install_root=ROOT", "mail_owner=postfix"], "cannot install for mail_owner"),
    ],
)
def test_unprivileged_refusals(plain_user, user_workdir, args, message):
    root = user_workdir / "root"
    args = [arg.replace("ROOT", str(root)) for arg in args]
    result = run_as(plain_user, user_workdir, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert not root.exists()
