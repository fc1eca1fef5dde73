"""libmail::log end to end, through the postlog command: the maillog_file
line format, lines kept whole when many processes write at once, the
maillog_file_prefixes check, severities, /dev/stdout, reopening a renamed
file, and the fallback to standard error when there is no syslog service.

Where both can do the same thing, our postlog is compared with Debian's
Postfix 3.7 postlog (the reference), which writes maillog_file itself when
no postlogd is running.  Without it those tests fail when the environment
variable CI is set and are skipped otherwise.

Rotation (`log::rotate`) is covered by the unit tests in
libmail/src/log/rotate.rs; `postfix logrotate` comes with the postfix
command.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

DEBIAN_POSTLOG = Path("/usr/sbin/postlog")

# Postfix's maillog_file line: Mon DD HH:MM:SS HOST TAG[PID]: TEXT
LINE = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d (\S+) (\S+)\[(\d+)\]: (.*)$")


@pytest.fixture(scope="session")
def postlog(release_dir: Path) -> Path:
    path = release_dir / "postlog"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make all` first")
    return path


@pytest.fixture(scope="session")
def debian_postlog() -> Path:
    if not DEBIAN_POSTLOG.is_file():
        message = f"reference postlog unavailable: {DEBIAN_POSTLOG} is missing (`make test-tools`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DEBIAN_POSTLOG


def make_config(directory: Path, logfile: Path | str, **extra: str) -> Path:
    """A configuration directory whose main.cf logs to `logfile`, allowed
    by maillog_file_prefixes; queue_directory has no postlogd socket, so
    Debian's postlog writes the file itself."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = {
        "maillog_file": str(logfile),
        "maillog_file_prefixes": str(directory),
        "myhostname": "mail.example.com",
        "queue_directory": str(directory),
        **extra,
    }
    text = "".join(f"{name} = {value}\n" for name, value in settings.items())
    (directory / "main.cf").write_text(text)
    return directory


def run(program: Path, config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(program), "-c", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def records(logfile: Path) -> list[tuple[str, str, str]]:
    """(host, tag, text) of each line; every line must have the format."""
    found = []
    for line in logfile.read_text().splitlines():
        match = LINE.match(line)
        assert match, f"not a Postfix log line: {line!r}"
        found.append((match.group(1), match.group(2), match.group(4)))
    return found


def test_line_format(postlog, tmp_path):
    logfile = tmp_path / "maillog"
    config = make_config(tmp_path, logfile)
    result = run(postlog, config, "text")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    lines = logfile.read_text().splitlines()
    assert len(lines) == 1
    assert re.match(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ postfix/postlog\[\d+\]: text$", lines[0])
    host, _, _ = records(logfile)[0]
    assert host == "mail"  # the first label of $myhostname, as Postfix logs it
    assert int(LINE.match(lines[0]).group(3)) > 1


# Each case: arguments, standard input.  Run by both programs.
CASES = [
    (["hello", "world"], ""),
    (["-p", "warn", "careful"], ""),
    (["-p", "warning", "careful"], ""),
    (["-p", "err", "broken"], ""),
    (["-p", "error", "broken"], ""),
    (["-i", "-t", "my/tag", "tagged"], ""),
    (["text", "-p", "warn", "after"], ""),
    (["--", "-dash"], ""),
    (["-p", "error"], "first\n\nthird\twith tab\nlast without newline"),
]


def test_same_records_as_debian_postlog(postlog, debian_postlog, tmp_path):
    ours_log, theirs_log = tmp_path / "ours" / "maillog", tmp_path / "theirs" / "maillog"
    ours = make_config(tmp_path / "ours", ours_log)
    theirs = make_config(tmp_path / "theirs", theirs_log)
    for args, stdin in CASES:
        for program, config in ((postlog, ours), (debian_postlog, theirs)):
            result = run(program, config, *args, stdin=stdin)
            assert result.returncode == 0, (program, args, result.stderr)
    assert records(ours_log) == records(theirs_log)
    assert ("mail", "postfix/postlog", "warning: careful") in records(ours_log)
    assert ("mail", "postfix/postlog", "error: third?with tab") in records(ours_log)


def test_errors_match_debian_postlog(postlog, debian_postlog, tmp_path):
    """Both refuse the same things with exit status 1.  Debian's reports
    on standard error only when it is a terminal, so only ours' text is
    checked."""
    logfile = tmp_path / "maillog"
    config = make_config(tmp_path, logfile)
    outside = make_config(tmp_path / "outside", "/var/tmp/not-allowed.log")
    facility = make_config(tmp_path / "facility", logfile, syslog_facility="LOCAL3")
    cases = [
        (config, ["-p", "bogus", "x"], 'postfix/postlog: fatal: bad severity: "bogus"'),
        (config, ["-x"], "postfix/postlog: fatal: usage: postlog [-c config_dir] [-i] [-p priority] [-t tag] [-v] [text]"),
        (
            outside,
            ["x"],
            "postfix/postlog: fatal: maillog_file value '/var/tmp/not-allowed.log' "
            "does not match any prefix in maillog_file_prefixes",
        ),
        (
            facility,
            ["x"],
            f"postfix/postlog: fatal: file {facility}/main.cf: parameter syslog_facility: unrecognized value: LOCAL3",
        ),
    ]
    for directory, args, message in cases:
        ours = run(postlog, directory, *args)
        theirs = run(debian_postlog, directory, *args)
        assert (ours.returncode, theirs.returncode) == (1, 1), args
        assert ours.stderr == message + "\n"
    assert not logfile.exists()
    assert not Path("/var/tmp/not-allowed.log").exists()


def test_path_outside_prefixes_is_refused(postlog, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    config = make_config(tmp_path / "etc", other / "maillog")
    result = run(postlog, config, "x")
    assert result.returncode == 1
    assert result.stderr == (
        f"postfix/postlog: fatal: maillog_file value '{other}/maillog' "
        "does not match any prefix in maillog_file_prefixes\n"
    )
    assert not (other / "maillog").exists()


def test_severity_prefixes(postlog, tmp_path):
    logfile = tmp_path / "maillog"
    config = make_config(tmp_path, logfile)
    for priority in ("info", "warn", "error", "crit"):
        assert run(postlog, config, "-p", priority, "event").returncode == 0
    started = time.monotonic()
    result = run(postlog, config, "-p", "fatal", "the end")
    # Logged, then Postfix's one-second pause, and still exit status 0.
    assert result.returncode == 0
    assert time.monotonic() - started >= 1.0
    texts = [text for _, _, text in records(logfile)]
    assert texts == ["event", "warning: event", "error: event", "fatal: event", "fatal: the end"]


def test_concurrent_writers_keep_lines_whole(postlog, tmp_path):
    """20 processes writing 50 long lines each at the same moment: exactly
    1000 intact lines, none lost or mixed."""
    logfile = tmp_path / "maillog"
    config = make_config(tmp_path, logfile)
    filler = "x" * 900
    procs = []
    for writer in range(20):
        lines = "".join(f"writer={writer} line={n} {filler}\n" for n in range(50))
        proc = subprocess.Popen(
            [str(postlog), "-c", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((proc, lines))
    for proc, lines in procs:
        _, err = proc.communicate(lines, timeout=60)
        assert proc.returncode == 0, err
    texts = [text for _, _, text in records(logfile)]
    assert len(texts) == 1000
    assert sorted(texts) == sorted(f"writer={w} line={n} {filler}" for w in range(20) for n in range(50))


def test_dev_stdout(postlog, tmp_path):
    """maillog_file = /dev/stdout (containers), allowed by the default
    maillog_file_prefixes."""
    (tmp_path / "main.cf").write_text("maillog_file = /dev/stdout\nmyhostname = box\n")
    result = run(postlog, tmp_path, "-p", "warn", "to stdout")
    assert result.returncode == 0, result.stderr
    match = LINE.match(result.stdout.rstrip("\n"))
    assert match and match.group(1, 2, 4) == ("box", "postfix/postlog", "warning: to stdout")


def test_writer_reopens_renamed_file(postlog, tmp_path):
    """A long-running writer follows the file after a rename, as after
    `postfix logrotate`: it checks at most once a second."""
    logfile = tmp_path / "maillog"
    config = make_config(tmp_path, logfile)
    proc = subprocess.Popen(
        [str(postlog), "-c", str(config)], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        proc.stdin.write("before\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while not (logfile.exists() and logfile.read_text()):
            assert time.monotonic() < deadline, "first line never written"
            time.sleep(0.05)
        rotated = tmp_path / "maillog.1"
        logfile.rename(rotated)
        time.sleep(1.2)
        proc.stdin.write("after\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert [t for _, _, t in records(rotated)] == ["before"]
    assert [t for _, _, t in records(logfile)] == ["after"]


@pytest.mark.skipif(os.path.exists("/dev/log"), reason="a syslog service is running here")
def test_no_syslog_service_falls_back_to_stderr(postlog, tmp_path):
    (tmp_path / "main.cf").write_text("")
    result = run(postlog, tmp_path, "-p", "warn", "one")
    assert result.returncode == 0
    assert result.stderr == (
        "postfix/postlog: warning: no syslog service: connect /dev/log: "
        "No such file or directory; logging to standard error\n"
        "postfix/postlog: warning: one\n"
    )
