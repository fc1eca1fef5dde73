"""libmail::queue and postcat end to end: queue files written by the
make_queue_file test fixture (libmail/examples/make_queue_file.rs, which
writes through libmail::queue exactly as cleanup will) and shown by
`postcat`, with Postfix 3.7's sections, record names and messages; queue
IDs short and long; hashed queues; damaged files; and the order of the
system calls that make a committed file durable.

Debian's postcat reads Postfix's own queue file format, not ours, so the
expected output here is Postfix's format written out by hand.
"""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

QUEUES = ("incoming", "active", "deferred", "hold", "maildrop", "corrupt", "saved")
SHORT_ID = re.compile(r"^[0-9A-F]{6,}$")
LONG_ID = re.compile(r"^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+$")
ASCTIME = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}"

MESSAGE = b"Subject: caf\xc3\xa9\nFrom: alice@example.com\n  (folded)\n\nHello Bob.\n\xff\x00 8-bit\n"


@pytest.fixture(scope="session")
def postcat(release_dir: Path) -> Path:
    path = release_dir / "postcat"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make all` first")
    return path


@pytest.fixture(scope="session")
def maker(release_dir: Path) -> Path:
    path = release_dir / "examples" / "make_queue_file"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make all` first")
    return path


class Instance:
    """A configuration directory and a queue tree in a temporary directory."""

    def __init__(self, top: Path, postcat: Path, maker: Path, **settings: str):
        self.config = top / "etc"
        self.spool = top / "spool"
        self.config.mkdir(parents=True)
        for queue in QUEUES:
            (self.spool / queue).mkdir(parents=True)
        text = f"queue_directory = {self.spool}\n"
        text += "".join(f"{name} = {value}\n" for name, value in settings.items())
        (self.config / "main.cf").write_text(text)
        self.postcat_path = postcat
        self.maker = maker

    def write(self, *args: str, message: bytes = MESSAGE) -> str:
        """Queues a message; returns its queue ID."""
        result = subprocess.run(
            [str(self.maker), "-c", str(self.config), *args],
            input=message,
            capture_output=True,
            check=True,
        )
        return result.stdout.decode().strip()

    def postcat(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "TZ": "UTC"}
        env.pop("MAIL_CONFIG", None)
        return subprocess.run(
            [str(self.postcat_path), "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=30,
        )

    def files(self, queue: str) -> list[Path]:
        return sorted(p for p in (self.spool / queue).rglob("*") if p.is_file())


@pytest.fixture
def instance(tmp_path: Path, postcat: Path, maker: Path) -> Instance:
    return Instance(tmp_path, postcat, maker)


def standard_message(instance: Instance) -> str:
    return instance.write(
        "-f", "alice@example.com",
        "-a", "client_name=localhost",
        "-a", "client_address=127.0.0.1",
        "-o", "Bob",
        "-N", "10",
        "-O", "rfc822;bob@example.com",
        "-E", "ENVID1",
        "-R", "2",
        "-T", "1795255200",
        "-x", "extracted@example.com",
        "bob@example.com",
    )


def test_default_output_has_postfix_sections(instance: Instance):
    queue_id = standard_message(instance)
    assert SHORT_ID.match(queue_id), queue_id
    result = instance.postcat("-q", queue_id)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    name = f"incoming/{queue_id}"
    lines = result.stdout.split(b"\n")
    text = [line.decode("utf-8", "replace") for line in lines]
    assert text[0] == f"*** ENVELOPE RECORDS {name} ***"
    assert re.fullmatch(r"message_size:(\s+\d+){6}", text[1]), text[1]
    sizes = [int(n) for n in text[1].split()[1:]]
    assert sizes[2] == 2, "two recipients"
    assert sizes[4] == len(MESSAGE), "message size in bytes"
    assert text[2] == "message_arrival_time: Sat Nov 21 10:00:00 2026"
    assert re.fullmatch(f"create_time: {ASCTIME}", text[3]), text[3]
    assert text[4:17] == [
        "sender: alice@example.com",
        "named_attribute: client_name=localhost",
        "named_attribute: client_address=127.0.0.1",
        "named_attribute: envelope_id=ENVID1",
        "named_attribute: ret_flags=2",
        "named_attribute: notify_flags=10",
        "named_attribute: dsn_orig_rcpt=rfc822;bob@example.com",
        "original_recipient: Bob",
        "recipient: bob@example.com",
        f"*** MESSAGE CONTENTS {name} ***",
        "Subject: café",
        "From: alice@example.com",
        "  (folded)",
    ]
    # The content comes out byte for byte.
    start = result.stdout.index(b"Subject:")
    end = result.stdout.index(b"*** HEADER EXTRACTED")
    assert result.stdout[start:end] == MESSAGE
    assert result.stdout.endswith(
        f"*** HEADER EXTRACTED {name} ***\n"
        "original_recipient: \n"
        "recipient: extracted@example.com\n"
        f"*** MESSAGE FILE END {name} ***\n".encode()
    )


def test_envelope_header_and_body_options(instance: Instance):
    queue_id = standard_message(instance)
    header, body = MESSAGE.split(b"\n\n", 1)
    header += b"\n"
    body = b"\n" + body

    result = instance.postcat("-h", "-q", queue_id)
    assert (result.returncode, result.stdout) == (0, header)
    result = instance.postcat("-b", "-q", queue_id)
    assert (result.returncode, result.stdout) == (0, body)
    result = instance.postcat("-bh", "-q", queue_id)
    assert (result.returncode, result.stdout) == (0, MESSAGE)

    result = instance.postcat("-e", "-q", queue_id)
    assert result.returncode == 0
    assert b"Subject:" not in result.stdout and b"Hello Bob" not in result.stdout
    markers = re.findall(rb"^\*\*\* ([A-Z ]+) \S+ \*\*\*$", result.stdout, re.M)
    assert markers == [b"ENVELOPE RECORDS", b"MESSAGE CONTENTS", b"HEADER EXTRACTED", b"MESSAGE FILE END"]


def test_offsets_and_decimal_types(instance: Instance):
    queue_id = standard_message(instance)
    result = instance.postcat("-e", "-o", "-d", "-q", queue_id)
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()[1:]
    offsets = []
    for line in lines:
        match = re.match(r"^ *(\d+) +(\d+) (.*)$", line)
        assert match, line
        offsets.append(int(match.group(1)))
    assert offsets == sorted(offsets)
    assert offsets[0] == 8, "the first record follows the 8-byte file header"
    sender = next(line for line in lines if "sender:" in line)
    assert sender.split()[1] == str(ord("S"))
    # -s: nothing before the offset.
    middle = offsets[len(offsets) // 2]
    skipped = instance.postcat("-e", "-o", "-s", str(middle), "-q", queue_id).stdout.decode()
    shown = [int(line.split()[0]) for line in skipped.splitlines()[1:]]
    assert shown and min(shown) >= middle


def test_stdin_and_file_arguments(instance: Instance):
    queue_id = standard_message(instance)
    path = instance.spool / "incoming" / queue_id
    result = instance.postcat(stdin=path.read_bytes())
    assert result.returncode == 0
    assert result.stdout.startswith(b"*** ENVELOPE RECORDS stdin ***\n")
    result = instance.postcat(str(path))
    assert result.stdout.startswith(f"*** ENVELOPE RECORDS {path} ***\n".encode())


def test_hashed_queue_and_long_ids(tmp_path: Path, postcat: Path, maker: Path):
    instance = Instance(
        tmp_path, postcat, maker,
        enable_long_queue_ids="yes",
        hash_queue_names="deferred, defer",
        hash_queue_depth="2",
    )
    queue_id = instance.write("-q", "deferred", "-f", "a@example.com", "b@example.com")
    assert LONG_ID.match(queue_id), queue_id
    [path] = instance.files("deferred")
    relative = path.relative_to(instance.spool)
    assert relative.name == queue_id
    assert len(relative.parts) == 4, relative
    assert all(re.fullmatch("[0-9A-F]", part) for part in relative.parts[1:3]), relative
    result = instance.postcat("-e", "-q", queue_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"*** ENVELOPE RECORDS {relative} ***\n".encode())


def test_unknown_and_bad_ids(instance: Instance):
    result = instance.postcat("-q", "B822221522")
    assert result.returncode == 1
    assert result.stderr == b"postcat: fatal: open queue file B822221522: No such file or directory\n"
    result = instance.postcat("-q", "../x")
    assert result.returncode == 1
    assert result.stderr == b"postcat: fatal: bad mail queue ID: ../x\n"
    result = instance.postcat(str(instance.spool / "nonexistent"))
    assert result.returncode == 1
    assert result.stderr == f"postcat: fatal: open {instance.spool}/nonexistent: No such file or directory\n".encode()
    result = instance.postcat("-x")
    assert result.returncode == 1
    assert result.stderr.startswith(b"postcat: fatal: usage: postcat ")


def test_damaged_files_are_fatal(instance: Instance):
    queue_id = standard_message(instance)
    path = instance.spool / "incoming" / queue_id
    data = path.read_bytes()
    name = f"incoming/{queue_id}"

    path.write_bytes(data[:-1])
    result = instance.postcat("-q", queue_id)
    assert result.returncode == 1
    assert result.stderr == f"postcat: fatal: {name}: truncated record at offset {len(data) - 2}\n".encode()
    assert b"*** HEADER EXTRACTED" in result.stdout, "shown as far as it is sound"

    path.write_bytes(data[:-2])
    result = instance.postcat("-q", queue_id)
    assert (result.returncode, result.stderr) == (1, f"postcat: fatal: {name}: missing end marker\n".encode())

    path.write_bytes(data[:150])
    result = instance.postcat("-q", queue_id)
    assert result.returncode == 1
    damage = r"(truncated record at offset \d+|missing end marker)"
    assert re.fullmatch(rf"postcat: fatal: {name}: {damage}\n", result.stderr.decode())
    assert b"*** MESSAGE FILE END" not in result.stdout

    damaged = bytearray(data)
    damaged[8] = ord("Z")
    path.write_bytes(bytes(damaged))
    result = instance.postcat("-q", queue_id)
    assert result.returncode == 1
    assert result.stderr == f"postcat: fatal: {name}: unknown record type 90 at offset 8\n".encode()

    damaged = bytearray(data)
    damaged[7] = 9
    path.write_bytes(bytes(damaged))
    result = instance.postcat("-q", queue_id)
    assert result.stderr == f"postcat: fatal: {name}: unsupported queue file version 9\n".encode()


def test_not_a_queue_file_is_a_warning(instance: Instance, tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("From alice\nhello\n")
    result = instance.postcat(str(text))
    assert result.returncode == 0
    assert result.stderr == f"postcat: warning: {text}: input is not a valid queue file\n".encode()


def test_long_lines_empty_bodies_and_binary_content(instance: Instance):
    long_line = b"X-Long: " + b"x" * 200_000 + b"\n"
    binary = bytes(range(256)) * 40
    message = long_line + b"\n" + binary
    queue_id = instance.write("-f", "", "u@example.com", message=message)
    result = instance.postcat("-bh", "-q", queue_id)
    assert result.returncode == 0
    # A last line without a newline gets one, as in Postfix.
    expected = message if message.endswith(b"\n") else message + b"\n"
    assert result.stdout == expected
    sender = instance.postcat("-e", "-q", queue_id).stdout.decode().splitlines()
    assert "sender: " in sender, "the null sender"

    empty = instance.write("-f", "a@example.com", message=b"")
    result = instance.postcat("-q", empty)
    assert result.returncode == 0
    assert f"*** MESSAGE CONTENTS incoming/{empty} ***\n*** HEADER EXTRACTED".encode() in result.stdout


def test_file_modes_and_names(instance: Instance):
    ids = {instance.write("-f", "a@example.com", "b@example.com") for _ in range(20)}
    assert len(ids) == 20
    files = instance.files("incoming")
    assert {p.name for p in files} == ids, "only queue IDs, no temporary names"
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert SHORT_ID.match(path.name)
    dropped = instance.write("-q", "maildrop", "-f", "user", "root")
    mode = stat.S_IMODE((instance.spool / "maildrop" / dropped).stat().st_mode)
    assert mode == 0o744, "pickup (mail_owner) reads what postdrop (the user) wrote"


def test_commit_is_durable_before_it_is_visible(instance: Instance):
    """The file is written and fdatasync'd before it gets a name in
    incoming/, and the directory is fsync'd after; no other name ever
    appears there."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    log = instance.config / "strace.log"
    result = subprocess.run(
        [strace, "-f", "-o", str(log), "-e", "trace=openat,write,fdatasync,fsync,linkat,rename,renameat,renameat2",
         str(instance.maker), "-c", str(instance.config), "-f", "a@example.com", "b@example.com"],
        input=MESSAGE, capture_output=True, check=True,
    )
    queue_id = result.stdout.decode().strip()
    calls = log.read_text().splitlines()

    def first(pattern: str) -> int:
        for number, line in enumerate(calls):
            if re.search(pattern, line):
                return number
        raise AssertionError(f"{pattern} not in {calls}")

    incoming = re.escape(str(instance.spool / "incoming"))
    created = first(rf'openat\(AT_FDCWD, "{incoming}", O_RDWR\|O_CLOEXEC\|O_TMPFILE')
    fd = re.search(r"= (\d+)$", calls[created]).group(1)
    written = first(rf"write\({fd}, \"PFRSQF")
    synced = first(rf"fdatasync\({fd}\)")
    linked = first(rf'linkat\(.*"/proc/self/fd/{fd}", \d+, "{queue_id}"')
    dir_fd = re.search(r'linkat\(AT_FDCWD, "[^"]+", (\d+),', calls[linked]).group(1)
    dir_synced = first(rf"fsync\({dir_fd}\)")
    assert created < written < synced < linked < dir_synced
    assert not [c for c in calls if "rename" in c]
    assert not [c for c in calls if re.search(rf'"{incoming}/', c)], "no named file in incoming/"
