"""postconf end to end: output formats against golden files, the same
commands and edits against Debian's Postfix postconf (the reference), edits
that keep every other byte, concurrent edits, bad input, -c / MAIL_CONFIG,
-m / -a / -A and compatibility_level defaults.

Every test works on its own copy of tests/fixtures/postconf (main.cf,
master.cf) in tmp_path; see the `config_dir` fixture in conftest.py.

Golden files (tests/golden/postconf/): NAME.out is the stdout of
`postconf ARGS` on the fixture for each NAME, ARGS in GOLDEN below, and
n.stderr the warnings of `postconf -n` (sorted), all normalized by
`normalize()` below.  They hold what Postfix prints: each line was checked
against Debian's postconf 3.7, and only the known differences listed in
DEBIAN_DIFFERENCES (installation paths, version) come from our binary.
To regenerate them from our binary:

    UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_postconf.py -k golden

then read `git diff tests/golden/` and check every changed line against
Debian's postconf before committing (the `-k reference` tests run the same
commands through both programs and show where they differ).

The reference tests need /usr/sbin/postconf from Debian's postfix package
(`make test` installs it).  Without it they fail when the environment
variable CI is set and are skipped otherwise.
"""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import IS_ROOT, age_files

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "postconf"
GOLDEN_DIR = REPO / "tests" / "golden" / "postconf"
FEATURES_RS = REPO / "libmail" / "src" / "features.rs"
UPDATE_GOLDEN = bool(os.environ.get("UPDATE_GOLDEN"))

CONFIG_PLACEHOLDER = "<CONFIG_DIR>"

# --- running postconf ----------------------------------------------------------


def clean_env(**extra: str) -> dict:
    """The environment for postconf: no MAIL_CONFIG from the caller, and the
    C locale so that Debian's strerror() texts are the English ones."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env.update(LC_ALL="C", LANG="C")
    env.update(extra)
    return env


def run(binary: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs binary with args; stdout and stderr as text (bytes that are not
    UTF-8 survive as surrogate escapes)."""
    result = subprocess.run(
        [str(binary), *args],
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    decode = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
    return subprocess.CompletedProcess(result.args, result.returncode, decode(result.stdout), decode(result.stderr))


def pc(binary: Path, config: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """postconf -c CONFIG ARGS..."""
    return run(binary, "-c", str(config), *args, **kw)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} failed ({result.returncode}):\n{result.stderr}"
    return result


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.splitlines()


# --- normalizing output --------------------------------------------------------

# Lines that depend on the machine or the run rather than on the fixture:
#  - process_id is postconf's own pid: dropped everywhere;
#  - myhostname, mydomain and mynetworks are computed from the host name and
#    the network interfaces when main.cf does not set them.  The fixture sets
#    myhostname and mynetworks (mydomain follows from myhostname), so they
#    vary only in the built-in defaults of `postconf -d`: dropped there;
#  - mail_version and mail_release_date change with every release of ours:
#    their values become <VERSION> and <DATE>;
#  - the config directory is a fresh tmp_path: replaced by <CONFIG_DIR>
#    (and a `-f` output's config_directory line unfolded, since where it
#    folds depends on the length of the path).
ALWAYS_DROPPED = {"process_id"}
MACHINE_DEFAULTS = {"myhostname", "mydomain", "mynetworks"}
VERSIONED = {"mail_version": "<VERSION>", "mail_release_date": "<DATE>"}

# Known, intended differences from Debian's postconf: installation paths
# (Debian's packaging moves them), version numbers, the pid, and
# debugger_command (it embeds the pid and a path), and
# smtpd_forbid_bare_newline, whose default is Postfix 3.9's "normalize"
# (3.7 says "no": open to SMTP smuggling); and our own parameters, such as
# dns_resolver_servers, which Postfix does not have.
DEBIAN_DIFFERENCES = {
    "smtpd_forbid_bare_newline",
    "dns_resolver_servers",
    "daemon_directory",
    "html_directory",
    "readme_directory",
    "manpage_directory",
    "shlib_directory",
    "mail_version",
    "mail_release_date",
    "process_id",
    "debugger_command",
}

_NAME = re.compile(r"^([A-Za-z0-9_./:\[\]-]+) =")


def _filter(text: str, config: Path, drop: set, replace: dict) -> str:
    """Replaces the config path, drops `name = ...` lines (and their folded
    continuation lines) for names in drop, and gives names in replace a
    fixed value."""
    text = text.replace(str(config), CONFIG_PLACEHOLDER)
    # `-f` folds `config_directory = PATH` when PATH is long, and how long
    # tmp_path is varies: show the line unfolded
    text = text.replace(f" =\n    {CONFIG_PLACEHOLDER}\n", f" = {CONFIG_PLACEHOLDER}\n")
    out: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        if line.startswith((" ", "\t")) and dropping:
            continue
        match = _NAME.match(line)
        # `postconf -H` prints bare names.
        name = match.group(1) if match else line.strip() or None
        dropping = name in drop
        if dropping:
            continue
        if name in replace:
            line = f"{name} = {replace[name]}\n"
        out.append(line)
    return "".join(out)


def normalize(text: str, config: Path, defaults: bool = False) -> str:
    """Output of our postconf as the golden files hold it (see above);
    defaults: the output shows built-in defaults (`postconf -d`)."""
    drop = ALWAYS_DROPPED | (MACHINE_DEFAULTS if defaults else set())
    return _filter(text, config, drop, VERSIONED)


def mail_version(binary: Path) -> str:
    """The program's mail_version (Debian's 3.7.x, ours 3.7.0-rsX)."""
    if binary not in _VERSIONS:
        result = ok(run(binary, "-c", str(FIXTURES), "-h", "mail_version"))
        _VERSIONS[binary] = result.stdout.strip()
    return _VERSIONS[binary]


_VERSIONS: dict[Path, str] = {}


def comparable(text: str, config: Path, binary: Path) -> str:
    """Output of either postconf (binary), for comparing ours with Debian's:
    the config path replaced, DEBIAN_DIFFERENCES dropped, and the version
    where other values embed it (`postconf -x` expands $mail_version)
    replaced by <VERSION>."""
    text = text.replace(mail_version(binary), "<VERSION>")
    return _filter(text, config, DEBIAN_DIFFERENCES, {})


def comparable_messages(text: str, config: Path) -> list[str]:
    """stderr of either postconf, sorted: Debian's messages start with
    `/usr/sbin/postconf:` where ours say `postconf:`."""
    text = text.replace(str(config), CONFIG_PLACEHOLDER)
    return sorted(re.sub(r"^/usr/sbin/postconf: ", "postconf: ", line) for line in text.splitlines())


def fatal_lines(text: str, config: Path) -> list[str]:
    return [line for line in comparable_messages(text, config) if ": fatal: " in line]


# --- files -----------------------------------------------------------------------


def copy_dir(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    age_files(target)
    return target


def write_config(directory: Path, main_cf: bytes | str | None, master_cf: bytes | str | None = None) -> Path:
    """A config directory with the given main.cf (None: none) and master.cf
    (None: one plain smtpd service, so that no warning is about master.cf)."""
    directory.mkdir(parents=True, exist_ok=True)
    if master_cf is None:
        master_cf = "smtp      inet  n       -       y       -       -       smtpd\n"
    for name, text in (("main.cf", main_cf), ("master.cf", master_cf)):
        if text is not None:
            data = text.encode() if isinstance(text, str) else text
            (directory / name).write_bytes(data)
    age_files(directory)
    return directory


def skipped(line: str) -> bool:
    """Blank and comment lines: never part of an entry."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def main_cf_key(line: str) -> str:
    """The parameter name a main.cf line defines: up to white space or '='."""
    return re.split(r"[\s=]", line, maxsplit=1)[0]


def master_cf_key(line: str) -> str:
    """service/type of a master.cf entry's first line."""
    fields = line.split()
    return "/".join(fields[:2])


def entries(lines: list[str], key_of) -> list[tuple[str, list[int]]]:
    """(key, indices of its first line and continuation lines) for each
    entry, in file order.  Comment and blank lines inside an entry belong
    to no entry."""
    found: list[tuple[str, list[int]]] = []
    for index, line in enumerate(lines):
        if skipped(line):
            continue
        if line[:1] in (" ", "\t"):
            if found:
                found[-1][1].append(index)
            continue
        found.append((key_of(line), [index]))
    return found


def entry_lines(lines: list[str], key_of, keys) -> set[int]:
    return {i for key, idx in entries(lines, key_of) if key in keys for i in idx}


def outside(lines: list[str], key_of, keys) -> list[str]:
    """The lines that belong to none of the entries named by keys."""
    mine = entry_lines(lines, key_of, keys)
    return [line for i, line in enumerate(lines) if i not in mine]


# --- 1. golden files ---------------------------------------------------------------

# Parameters whose expansion (-x) goes through $name, ${name}, $(name),
# ${name?{a}:{b}}, the <level comparison, a raw parameter, and defaults that
# depend on compatibility_level.
X_NAMES = [
    "mydestination",
    "myorigin",
    "mydomain",
    "mynetworks",
    "smtp_tls_security_level",
    "append_dot_mydomain",
    "mailbox_command",
    "smtpd_banner",
    "alias_database",
    "message_size_limit",
    "mynetworks_style",
    "relay_domains",
    "smtputf8_enable",
]

GOLDEN = {
    "n": ["-n"],
    "all": [],
    "d": ["-d"],
    "M": ["-M"],
    "Mf": ["-Mf"],
    "F": ["-F"],
    "P": ["-P"],
    "nf": ["-nf"],
    "x-names": ["-x", *X_NAMES],
    "Mx": ["-Mx"],
    "Px": ["-Px"],
}


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if UPDATE_GOLDEN:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.is_file(), f"{path} is missing: run with UPDATE_GOLDEN=1 (see the module docstring)"
    expected = path.read_text()
    assert actual == expected, f"postconf output (+) differs from {path.relative_to(REPO)} (-)"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_output(built, postconf, config_dir, name):
    result = ok(pc(postconf, config_dir, *GOLDEN[name]))
    check_golden(f"{name}.out", normalize(result.stdout, config_dir, defaults="-d" in GOLDEN[name]))


def test_golden_warnings(built, postconf, config_dir):
    """The warnings of `postconf -n` on the fixture (sorted): the duplicate
    definition, the unused parameter in main.cf and the undefined parameter
    that master.cf refers to."""
    result = ok(pc(postconf, config_dir, "-n"))
    check_golden("n.stderr", "".join(f"{line}\n" for line in comparable_messages(result.stderr, config_dir)))


def test_golden_sanity(built, postconf, config_dir):
    """A few facts the golden files rest on, checked directly."""
    shown = ok(pc(postconf, config_dir, "-n")).stdout
    assert "message_size_limit = 52428800\n" in shown  # the later definition wins
    assert "extra_local_domain = shop.example.com\n" in shown  # user-defined, used
    assert "legacy_backup_host" not in shown  # user-defined, unused: only warned about
    assert f"config_directory = {config_dir}\n" in shown
    # continuation lines joined, the indented comment skipped:
    assert "mydestination = $myhostname, localhost.$mydomain, localhost, ${extra_local_domain}\n" in shown
    expanded = ok(pc(postconf, config_dir, "-x", "mydestination", "mailbox_command", "append_dot_mydomain")).stdout
    assert expanded.splitlines() == [
        "mydestination = mail.example.com, localhost.example.com, localhost, shop.example.com",
        'mailbox_command = /usr/bin/procmail -a "$EXTENSION" -d "$USER"',
        "append_dot_mydomain = yes",
    ]


# --- 2. the reference: Debian's postconf ---------------------------------------

REFERENCE_SHOW = [
    [],
    ["-n"],
    ["-d"],
    ["-x"],
    ["-nx"],
    ["-H"],
    ["-nf"],
    ["-fd"],
    ["-M"],
    ["-Mf"],
    ["-F"],
    ["-fF"],
    ["-P"],
    ["-fP"],
    ["-Mx"],
    ["-Fx"],
    ["-Px"],
    ["-x", *X_NAMES],
    ["-h", *X_NAMES],
    ["-d", *X_NAMES],
    ["-o", "relayhost=", "-x", "smtp_tls_security_level", "relayhost"],
    ["-M", "smtp", "relay/unix"],
    ["-F", "pickup/unix/wakeup", "qmgr"],
    ["-P", "submission/inet/syslog_name", "relay"],
    # user-defined parameters by name: a used one is shown, an unused one is
    # an unknown parameter
    ["extra_local_domain", "legacy_backup_host", "office_networks"],
]


def reference_pair(tmp_path: Path, config_dir: Path) -> Path:
    """A second, identical copy of the fixture for Debian's postconf."""
    ref = tmp_path / "ref"  # as long as config_dir's name (etc), so that
    # `-f` folds the config_directory line of both at the same column
    assert len(ref.name) == len(config_dir.name)
    return copy_dir(config_dir, ref)


@pytest.mark.parametrize("args", REFERENCE_SHOW, ids=lambda a: " ".join(a) or "all")
def test_reference_output(built, postconf, debian_postconf, tmp_path, config_dir, args):
    ref_dir = reference_pair(tmp_path, config_dir)
    ours = pc(postconf, config_dir, *args)
    theirs = pc(debian_postconf, ref_dir, *args)
    assert ours.returncode == theirs.returncode, f"exit status: ours {ours.returncode}, Debian's {theirs.returncode}"
    assert comparable(ours.stdout, config_dir, postconf) == comparable(theirs.stdout, ref_dir, debian_postconf)


@pytest.mark.parametrize("args", [["-n"], ["-d"], ["-x"], ["-M"], ["-F"], ["-P"]], ids=" ".join)
def test_reference_warnings(built, postconf, debian_postconf, tmp_path, config_dir, args):
    """The same warnings (in any order) as Debian's postconf."""
    ref_dir = reference_pair(tmp_path, config_dir)
    ours = pc(postconf, config_dir, *args)
    theirs = pc(debian_postconf, ref_dir, *args)
    assert comparable_messages(ours.stderr, config_dir) == comparable_messages(theirs.stderr, ref_dir)


REFERENCE_EDITS = [
    ["-e", "message_size_limit = 1000", "brand_new = v"],
    ["-e", "mydestination = example.net, $myhostname"],
    ["mydestination=a, b", "relayhost="],
    ["-#", "mydestination", "message_size_limit", "nosuch"],
    ["-X", "mydestination", "smtpd_recipient_restrictions", "nosuch"],
    ["-Me", "relay/unix = relay unix - - n - - smtp -o smtp_helo_timeout=30"],
    ["-Me", "newsvc/unix = newsvc unix - - n - - smtp"],
    ["-M#", "relay/unix", "archiver/unix", "submission/inet"],
    ["-MX", "relay/unix", "archiver/unix", "submission/inet"],
]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("args", REFERENCE_EDITS, ids=" ".join)
def test_reference_edit(built, postconf, debian_postconf, tmp_path, config_dir, args):
    """The same edit leaves the same bytes in main.cf and master.cf (and no
    other file) as Debian's postconf."""
    ref_dir = reference_pair(tmp_path, config_dir)
    ours = pc(postconf, config_dir, *args)
    theirs = pc(debian_postconf, ref_dir, *args)
    assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
    mine, reference = snapshot(config_dir), snapshot(ref_dir)
    assert sorted(mine) == sorted(reference)
    for name in reference:
        assert mine[name] == reference[name], f"{name} differs after postconf {' '.join(args)}"
    assert mine != snapshot(FIXTURES), "the edit changed nothing"
    assert comparable(ours.stdout, config_dir, postconf) == comparable(theirs.stdout, ref_dir, debian_postconf)


@pytest.mark.parametrize("args", REFERENCE_EDITS, ids=" ".join)
def test_reference_edit_messages(built, postconf, debian_postconf, tmp_path, config_dir, args):
    """An edit says what Debian's postconf says (in any order)."""
    ref_dir = reference_pair(tmp_path, config_dir)
    ours = pc(postconf, config_dir, *args)
    theirs = pc(debian_postconf, ref_dir, *args)
    assert comparable_messages(ours.stderr, config_dir) == comparable_messages(theirs.stderr, ref_dir)


def test_reference_edit_non_utf8(built, postconf, debian_postconf, tmp_path):
    text = GBK_MAIN_CF
    mine = write_config(tmp_path / "our", text)
    ref = write_config(tmp_path / "ref", text)
    args = ["-e", "myhostname = new.example.com", "relayhost = [smtp.example.org]"]
    ok(pc(postconf, mine, *args))
    ok(pc(debian_postconf, ref, *args))
    assert (mine / "main.cf").read_bytes() == (ref / "main.cf").read_bytes()


# Bad input where both programs must stop (or not) the same way.
def _no_main_cf(d: Path) -> None:
    write_config(d, None)


def _missing_equals(d: Path) -> None:
    write_config(d, "myhostname = mail.example.com\n\n# note\nfoo\nrelayhost =\n")


def _bad_master(d: Path) -> None:
    write_config(
        d,
        "myhostname = mail.example.com\n",
        "smtp inet n - y - - smtpd\n# note\npickup unix n - y 60\n",
    )


def _fixture(d: Path) -> None:
    copy_dir(FIXTURES, d)


def _tmp_is_dir(d: Path) -> None:
    write_config(d, "myhostname = mail.example.com\n")
    (d / "main.cf.tmp").mkdir()
    age_files(d)


REFERENCE_ERRORS = {
    "no main.cf, -n": (_no_main_cf, ["-n"]),
    "no main.cf, -e": (_no_main_cf, ["-e", "relayhost = x"]),
    "no main.cf, -d": (_no_main_cf, ["-d", "mail_owner", "relayhost"]),
    "missing =, -n": (_missing_equals, ["-n"]),
    "bad field count, -M": (_bad_master, ["-M"]),
    "bad field count, -n": (_bad_master, ["-n"]),
    "-MX without type": (_fixture, ["-MX", "smtp"]),
    "-Fe bad field": (_fixture, ["-Fe", "pickup/unix/maxproc=5"]),
    "main.cf.tmp is a directory": (_tmp_is_dir, ["-e", "relayhost = x"]),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_ERRORS))
def test_reference_errors(built, postconf, debian_postconf, tmp_path, case):
    """Exit status, fatal messages and output as Debian's postconf."""
    setup, args = REFERENCE_ERRORS[case]
    mine, ref = tmp_path / "our", tmp_path / "ref"
    setup(mine)
    setup(ref)
    ours = pc(postconf, mine, *args)
    theirs = pc(debian_postconf, ref, *args)
    assert (ours.returncode, fatal_lines(ours.stderr, mine), comparable(ours.stdout, mine, postconf)) == (
        theirs.returncode,
        fatal_lines(theirs.stderr, ref),
        comparable(theirs.stdout, ref, debian_postconf),
    )


# -Fe, -Pe and -PX: Debian's postconf moves the edited entry (or a comment
# line next to it) within master.cf, ours rewrites the entry where it stands.
# That difference is intended, so these are not compared with Debian; ours
# must change that entry's lines and nothing else.

MASTER_FIELD_EDITS = [
    (["-Fe", "pickup/unix/wakeup=120"], {"pickup/unix"}),
    (["-Fe", "archiver/unix/process_limit=5"], {"archiver/unix"}),
    (["-Pe", "relay/unix/smtp_helo_timeout=9", "submission/inet/new_p=1"], {"relay/unix", "submission/inet"}),
    (["-PX", "relay/unix/smtp_helo_timeout"], {"relay/unix"}),
    (["-PX", "submission/inet/smtpd_client_restrictions"], {"submission/inet"}),
]


def by_entry(text: str) -> dict[str, list[str]]:
    """`postconf -F` or `-P` output grouped by service/type."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key = "/".join(line.split(" = ", 1)[0].split("/")[:2])
        out.setdefault(key, []).append(line)
    return out


@pytest.mark.parametrize("args,keys", MASTER_FIELD_EDITS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_master_field_edit_in_place(built, postconf, config_dir, args, keys):
    path = config_dir / "master.cf"
    before_text = path.read_text()
    before_f = by_entry(ok(pc(postconf, config_dir, "-F")).stdout)
    before_p = by_entry(ok(pc(postconf, config_dir, "-P")).stdout)
    main_before = (config_dir / "main.cf").read_bytes()

    ok(pc(postconf, config_dir, *args))

    after_text = path.read_text()
    old, new = before_text.splitlines(), after_text.splitlines()
    assert outside(new, master_cf_key, keys) == outside(old, master_cf_key, keys)
    # every entry stays where it was
    assert [k for k, _ in entries(new, master_cf_key)] == [k for k, _ in entries(old, master_cf_key)]
    assert (config_dir / "main.cf").read_bytes() == main_before
    assert not (config_dir / "master.cf.tmp").exists()

    after_f = by_entry(ok(pc(postconf, config_dir, "-F")).stdout)
    after_p = by_entry(ok(pc(postconf, config_dir, "-P")).stdout)
    for key in set(before_f) - keys:
        assert after_f[key] == before_f[key], key
        assert after_p.get(key) == before_p.get(key), key
    # the edited entries: exactly the requested change, the rest kept
    want_f = {key: list(before_f[key]) for key in keys}
    want_p = {key: list(before_p.get(key, [])) for key in keys}
    for arg in args[1:]:
        request, _, value = arg.partition("=")
        service, kind, name = request.split("/")
        key, prefix = f"{service}/{kind}", f"{request} ="
        if args[0] == "-Fe":
            want_f[key] = [f"{request} = {value}" if line.startswith(prefix) else line for line in want_f[key]]
            continue
        want_p[key] = [line for line in want_p[key] if not line.startswith(prefix)]
        if args[0] == "-Pe":
            want_p[key] = sorted(want_p[key] + [f"{request} = {value}"])
    for key in keys:
        assert after_p.get(key, []) == want_p[key], key
        if args[0] == "-Fe":
            assert after_f[key] == want_f[key], key
        else:  # the eight fields are unchanged; the command's -o list is not
            assert after_f[key][:7] == before_f[key][:7], key


# --- 3. postconf -e keeps the rest of main.cf -------------------------------------


def test_edit_keeps_every_other_byte(built, postconf, config_dir):
    path = config_dir / "main.cf"
    os.chmod(path, 0o640)
    if IS_ROOT:
        os.chown(path, 1234, 5678)
    before = path.stat()
    old = path.read_text().splitlines()
    replaced = {"mydestination", "smtpd_recipient_restrictions", "relayhost"}
    # the fixture as this test expects it: several continuation lines (with
    # an indented comment among them) for the first two, one line for relayhost
    assert len(entry_lines(old, main_cf_key, {"mydestination"})) == 4
    assert len(entry_lines(old, main_cf_key, {"smtpd_recipient_restrictions"})) == 5

    result = pc(
        postconf,
        config_dir,
        "-e",
        "mydestination = example.net, $myhostname",
        "smtpd_recipient_restrictions = reject_unauth_destination",
        "relayhost = [relay.example.org]:25",
        "brand_new_parameter = a new value",
    )
    ok(result)
    assert result.stdout == ""
    new = path.read_text().splitlines()

    # everything outside the edited definitions is unchanged, in order
    assert outside(new, main_cf_key, replaced | {"brand_new_parameter"}) == outside(old, main_cf_key, replaced)
    # each new value stands where the old definition started, on one line;
    # the indented comment inside mydestination's old value is still there
    expected = list(old)
    for name, value in [
        ("mydestination", "example.net, $myhostname"),
        ("smtpd_recipient_restrictions", "reject_unauth_destination"),
        ("relayhost", "[relay.example.org]:25"),
    ]:
        (first, *continuation) = [i for k, idx in entries(old, main_cf_key) if k == name for i in idx]
        expected[first] = f"{name} = {value}"
        for i in continuation:
            expected[i] = None
    expected = [line for line in expected if line is not None] + ["brand_new_parameter = a new value"]
    assert new == expected
    # the continuation lines of the replaced values are gone
    for gone in ("\tlocalhost.$mydomain,", "\tpermit_sasl_authenticated,", "      reject_unknown_recipient_domain"):
        assert gone not in new
    assert "\t# An indented comment in the middle of a continued value is still" in new
    assert path.read_bytes().endswith(b"brand_new_parameter = a new value\n")

    after = path.stat()
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(p.name for p in config_dir.iterdir()) == ["main.cf", "master.cf"]
    shown = ok(pc(postconf, config_dir, "-x", "mydestination", "relayhost")).stdout
    assert shown.splitlines() == ["mydestination = example.net, mail.example.com", "relayhost = [relay.example.org]:25"]


def test_edit_duplicate_definition(built, postconf, config_dir):
    """Both definitions of a name defined twice get the new value, with
    Postfix's warning; implied -e (`postconf name=value`) does the same."""
    path = config_dir / "main.cf"
    result = ok(pc(postconf, config_dir, "message_size_limit=1000"))
    assert stderr_lines(result) == [f'postconf: warning: {path}: multiple entries for "message_size_limit"']
    lines = path.read_text().splitlines()
    assert [line for line in lines if line.startswith("message_size_limit")] == ["message_size_limit = 1000"] * 2


# --- 4. concurrent edits -------------------------------------------------------------


def test_concurrent_edits_are_all_kept(built, postconf, config_dir):
    original = (config_dir / "main.cf").read_text()
    procs = [
        subprocess.Popen(
            [str(postconf), "-c", str(config_dir), "-e", f"p{n}={n}"],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(20)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    text = (config_dir / "main.cf").read_text()
    assert text.startswith(original)
    lines = text.splitlines()
    for n in range(20):
        assert lines.count(f"p{n} = {n}") == 1, f"p{n}:\n{text[len(original):]}"
    assert len(lines) == len(original.splitlines()) + 20
    # the file parses; unused parameters are not shown by -n, only named
    result = ok(pc(postconf, config_dir, "-n"))
    for n in range(20):
        assert f"unused parameter: p{n}={n}" in result.stderr
    assert not (config_dir / "main.cf.tmp").exists()


# --- 5. bad input ----------------------------------------------------------------------

CLEAN = "myhostname = mail.example.com\n"


def test_missing_main_cf(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", None)
    result = pc(postconf, d, "-n")
    assert (result.returncode, result.stdout) == (1, "")
    assert stderr_lines(result) == [f"postconf: fatal: open {d}/main.cf: No such file or directory"]


def test_line_without_equals_and_its_repair(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "\n# a comment\nfoo\nrelayhost = [x.example]\n")
    result = pc(postconf, d, "-n")
    assert (result.returncode, result.stdout) == (1, "")
    assert stderr_lines(result) == [f"postconf: fatal: {d}/main.cf, line 4: missing '=' after attribute name: \"foo\""]
    # editing does not parse values, so the file can still be edited ...
    ok(pc(postconf, d, "-e", "relayhost = [y.example]"))
    assert (d / "main.cf").read_text() == CLEAN + "\n# a comment\nfoo\nrelayhost = [y.example]\n"
    # ... and repaired
    ok(pc(postconf, d, "-X", "foo"))
    assert (d / "main.cf").read_text() == CLEAN + "\n# a comment\nrelayhost = [y.example]\n"
    assert ok(pc(postconf, d, "-n")).stdout.splitlines() == [
        f"config_directory = {d}",
        "myhostname = mail.example.com",
        "relayhost = [y.example]",
    ]


def test_master_cf_bad_field_count(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN, "smtp inet n - y - - smtpd\n# note\n\npickup unix n - y 60\n")
    result = pc(postconf, d, "-M")
    assert (result.returncode, result.stdout) == (1, "")
    assert stderr_lines(result) == [f"postconf: fatal: file {d}/master.cf: line 4: bad field count"]


def test_bad_boolean_warns(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "# note\n\ndisable_vrfy_command = maybe\n")
    result = ok(pc(postconf, d, "-n"))
    assert stderr_lines(result) == [
        f"postconf: warning: {d}/main.cf, line 4: bad boolean configuration: disable_vrfy_command = maybe"
    ]
    assert "disable_vrfy_command = maybe\n" in result.stdout


def test_unknown_inet_protocols_warns(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "inet_protocols = IPv4\n")
    result = ok(pc(postconf, d, "-n"))
    assert stderr_lines(result) == [
        f'postconf: warning: {d}/main.cf, line 2: unknown inet_protocols value "IPv4" in "IPv4"'
        " (specify one of: all, ipv4, ipv6)"
    ]


def test_macro_loop_is_fatal(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "a = $b\nb = $a\nmyorigin = $a\n")
    result = pc(postconf, d, "-x", "myorigin")
    assert (result.returncode, result.stdout) == (1, "")
    fatal = [line for line in stderr_lines(result) if ": fatal: " in line]
    assert len(fatal) == 1 and fatal == stderr_lines(result)[-1:], result.stderr
    assert fatal[0].startswith(f"postconf: fatal: {d}/main.cf, line 4: "), fatal[0]
    assert "unreasonable macro call nesting" in fatal[0]


def test_unknown_parameter_name(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN)
    result = ok(pc(postconf, d, "nosuch", "myhostname"))
    assert stderr_lines(result) == ["postconf: warning: nosuch: unknown parameter"]
    assert result.stdout == "myhostname = mail.example.com\n"


def test_unused_parameter(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "foo = bar\n")
    result = ok(pc(postconf, d, "-n"))
    assert stderr_lines(result) == [f"postconf: warning: {d}/main.cf: unused parameter: foo=bar"]
    assert "foo" not in result.stdout  # -n shows only parameters that are used


def test_undefined_parameter(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN + "myorigin = $nope\n")
    result = ok(pc(postconf, d, "-n"))
    assert stderr_lines(result) == [f"postconf: warning: {d}/main.cf: undefined parameter: nope"]


def test_undefined_parameter_in_master_cf(built, postconf, tmp_path):
    """A reference made in master.cf is reported against master.cf."""
    d = write_config(tmp_path / "etc", CLEAN, "smtp inet n - y - - smtpd -o smtpd_relay_restrictions=$nope\n")
    result = ok(pc(postconf, d, "-n"))
    assert stderr_lines(result) == [f"postconf: warning: {d}/master.cf: undefined parameter: nope"]


@pytest.mark.skipif(IS_ROOT, reason="root ignores directory modes; see test_edit_cannot_create_temp_file")
def test_edit_in_read_only_directory(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", CLEAN)
    before = (d / "main.cf").read_bytes()
    os.chmod(d, 0o555)
    try:
        result = pc(postconf, d, "-e", "relayhost = x")
    finally:
        os.chmod(d, 0o755)
    assert result.returncode == 1
    assert stderr_lines(result) == [f"postconf: fatal: open {d}/main.cf.tmp: Permission denied"]
    assert (d / "main.cf").read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["main.cf", "master.cf"]


def test_edit_cannot_create_temp_file(built, postconf, tmp_path):
    """Works as root too: main.cf.tmp is a directory, so it cannot be
    created as a file."""
    d = write_config(tmp_path / "etc", CLEAN)
    (d / "main.cf.tmp").mkdir()
    before = (d / "main.cf").read_bytes()
    result = pc(postconf, d, "-e", "relayhost = x")
    assert result.returncode == 1
    assert stderr_lines(result) == [f"postconf: fatal: open {d}/main.cf.tmp: Is a directory"]
    assert (d / "main.cf").read_bytes() == before


# --- 6. -c and MAIL_CONFIG ---------------------------------------------------------------


def test_config_dir_selection(built, postconf, tmp_path):
    one = write_config(tmp_path / "one", "myhostname = one.example.com\n")
    two = write_config(tmp_path / "two", "myhostname = two.example.com\n")

    def shown(result):
        return ok(result).stdout.splitlines()

    via_env = shown(run(postconf, "-n", env=clean_env(MAIL_CONFIG=str(one))))
    assert via_env == [f"config_directory = {one}", "myhostname = one.example.com"]
    via_c = shown(run(postconf, "-c", str(two), "-n"))
    assert via_c == [f"config_directory = {two}", "myhostname = two.example.com"]
    both = shown(run(postconf, "-c", str(two), "-n", env=clean_env(MAIL_CONFIG=str(one))))
    assert both == via_c
    # editing follows the same choice
    ok(run(postconf, "-e", "relayhost = r1", env=clean_env(MAIL_CONFIG=str(one))))
    ok(run(postconf, "-c", str(two), "-e", "relayhost = r2", env=clean_env(MAIL_CONFIG=str(one))))
    assert (one / "main.cf").read_text() == "myhostname = one.example.com\nrelayhost = r1\n"
    assert (two / "main.cf").read_text() == "myhostname = two.example.com\nrelayhost = r2\n"


# --- 7. bytes that are not UTF-8 -----------------------------------------------------------

# A comment in GBK ("hello, world" and "mail"), and a GBK byte pair in a value.
GBK_MAIN_CF = (
    b"# \xc4\xe3\xba\xc3\xa3\xac\xca\xc0\xbd\xe7: notes kept in GBK\n"
    b"myhostname = old.example.com\n"
    b"  # \xd3\xca\xbc\xfe\n"
    b"smtpd_banner = $myhostname \xb2\xe2\n"
    b"relayhost =\n"
)


def test_edit_keeps_non_utf8_bytes(built, postconf, tmp_path):
    d = write_config(tmp_path / "etc", GBK_MAIN_CF)
    ok(pc(postconf, d, "-e", "myhostname = new.example.com", "brand_new = \u90ae\u4ef6"))
    assert (d / "main.cf").read_bytes() == (
        b"# \xc4\xe3\xba\xc3\xa3\xac\xca\xc0\xbd\xe7: notes kept in GBK\n"
        b"myhostname = new.example.com\n"
        b"  # \xd3\xca\xbc\xfe\n"
        b"smtpd_banner = $myhostname \xb2\xe2\n"
        b"relayhost =\n" + "brand_new = \u90ae\u4ef6\n".encode()
    )


# --- 8. -m, -a, -A ----------------------------------------------------------------------------


def feature_lists() -> dict[str, list[str]]:
    """The string arrays of libmail/src/features.rs, by constant name."""
    text = FEATURES_RS.read_text()
    text = re.sub(r"//[^\n]*", "", text)
    lists = {}
    for name, body in re.findall(r"pub const (\w+): &\[&str\] = &\[(.*?)\];", text, re.S):
        lists[name] = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return lists


@pytest.mark.parametrize(
    "flag,constant", [("-m", "TABLE_TYPES"), ("-a", "SASL_SERVER_TYPES"), ("-A", "SASL_CLIENT_TYPES")]
)
def test_feature_lists(built, postconf, config_dir, flag, constant):
    lists = feature_lists()
    assert constant in lists, f"{FEATURES_RS} has no {constant}"
    result = ok(pc(postconf, config_dir, flag))
    assert result.stdout == "".join(f"{item}\n" for item in lists[constant])
    assert result.stderr == ""


# --- 9. compatibility_level ---------------------------------------------------------------


@pytest.mark.parametrize(
    "level,expected",
    [
        (None, ["mynetworks_style = subnet", "relay_domains = mail.example.com, localhost.example.com, localhost"]),
        ("3.6", ["mynetworks_style = host", "relay_domains ="]),
        ("3.7", ["mynetworks_style = host", "relay_domains ="]),
        ("1", ["mynetworks_style = subnet", "relay_domains = mail.example.com, localhost.example.com, localhost"]),
    ],
)
def test_compatibility_level_defaults(built, postconf, tmp_path, level, expected):
    text = CLEAN + (f"compatibility_level = {level}\n" if level else "")
    d = write_config(tmp_path / "etc", text)
    result = ok(pc(postconf, d, "-x", "mynetworks_style", "relay_domains"))
    assert result.stdout.splitlines() == expected
