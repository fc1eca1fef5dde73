"""sendmail(1) -> postdrop(1) -> maildrop/, without master: run the built
binaries against a temporary configuration and read the maildrop file
back with postcat."""

import os
import subprocess
from pathlib import Path

import pytest

RELEASE = Path(__file__).resolve().parent.parent / "target" / "release"


@pytest.fixture
def instance(tmp_path):
    etc = tmp_path / "etc"
    queue = tmp_path / "queue"
    etc.mkdir()
    (queue / "maildrop").mkdir(parents=True)
    (queue / "public").mkdir()
    (etc / "main.cf").write_text(
        f"queue_directory = {queue}\n"
        f"command_directory = {RELEASE}\n"
        "myhostname = host.example.com\n"
    )
    return etc, queue


def sendmail(etc, args, data):
    return subprocess.run(
        [str(RELEASE / "sendmail"), "-C", str(etc), *args],
        input=data, capture_output=True, timeout=30,
    )


def maildrop(queue):
    return sorted((queue / "maildrop").iterdir())


def postcat(etc, path):
    out = subprocess.run(
        [str(RELEASE / "postcat"), "-c", str(etc), str(path)],
        capture_output=True, timeout=30, check=True,
    )
    return out.stdout


def test_message_lands_in_maildrop(instance):
    etc, queue = instance
    data = b"From x Mon\r\nSubject: t\r\n\r\nbody \xe9\r\n.\r\nlost\r\n"
    r = sendmail(etc, ["-f", "joe@example.com", "-F", "Joe", "-N", "success",
                       "bob@example.com"], data)
    assert r.returncode == 0, r.stderr
    [path] = maildrop(queue)
    text = postcat(etc, path)
    assert b"sender: joe@example.com" in text
    assert b"sender_fullname: Joe" in text
    assert b"recipient: bob@example.com" in text
    assert b"named_attribute: rewrite_context=local" in text
    assert b"Subject: t\n\nbody \xe9\n" in text
    assert b"lost" not in text and b"From x" not in text


def test_dash_i_keeps_dot_lines_and_t_sets_extract(instance):
    etc, queue = instance
    r = sendmail(etc, ["-t", "-i"], b"To: a@example.com\n\n.\nmore\n")
    assert r.returncode == 0, r.stderr
    [path] = maildrop(queue)
    text = postcat(etc, path)
    assert b"named_attribute: flags=extract" in text
    assert b"\n.\nmore\n" in text


@pytest.mark.parametrize("args,data,code,text", [
    ([], b"hi\n", 64, b"Recipient addresses must be specified"),
    (["-t"], b"Subject: x\n\nhi\n", 64, b"No recipient addresses found"),
    (["-bd", "-t"], b"", 64, b"-t can be used only in delivery mode"),
    (["-Bbinary", "u"], b"", 64, b"-B option needs 8BITMIME or 7BIT"),
])
def test_failures_leave_nothing(instance, args, data, code, text):
    etc, queue = instance
    r = sendmail(etc, args, data)
    assert r.returncode == code
    assert text in r.stderr
    assert maildrop(queue) == []


def test_missing_postdrop_is_a_clear_failure(instance, tmp_path):
    etc, queue = instance
    with open(etc / "main.cf", "a") as f:
        f.write(f"command_directory = {tmp_path}/nowhere\n")
    r = sendmail(etc, ["u"], b"hi\n")
    assert r.returncode == 69
    assert b"sendmail: fatal:" in r.stderr and b"nowhere/postdrop" in r.stderr
