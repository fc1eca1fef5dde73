"""postsuper(1) against a running mail system: delete, hold, release,
requeue and expire messages by ID, from standard input and with ALL; the
structure check and the purge of temporary files; bad input and
permission trouble.  The texts on standard error are Postfix 3.7's
(checked against Debian's /usr/sbin/postsuper on a private queue), and
every line also lands in the maillog as postfix/postsuper[pid].

Mail is submitted with sendmail; without qmgr it stays in incoming/, and
the tests move files into deferred/ or hold/ as the queue manager would.
pickup and cleanup run, so requeued mail comes back as new mail.
"""

import fcntl
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import IS_ROOT, wait_until
from mailsystem import QUEUE_ID, mail, mail_system_fixture  # noqa: F401 (fixture)

mailsystem = mail_system_fixture()

POSTSUPER_LINE = r"postfix/postsuper\[\d+\]: "
EXPIRE_FLAG = 0o010
HINT = ' (queue ownership or permissions are wrong: run "postfix set-permissions" as root)'


def submit(mail, count: int = 1) -> list[str]:
    """Queues `count` messages; their IDs in incoming/."""
    before = set(mail.queue_ids("incoming"))
    for n in range(count):
        result = mail.sendmail("-f", "alice@test.example", "bob@test.example", input=f"Subject: t{n}\n\nbody {n}\n".encode())
        assert result.returncode == 0, result.stderr
    ids = wait_until(
        lambda: (new := set(mail.queue_ids("incoming")) - before) and len(new) >= count and new,
        30,
        f"{count} new message(s) in incoming/",
    )
    return sorted(ids)


def path_of(mail, queue: str, queue_id: str) -> Path:
    if queue in ("deferred", "defer"):
        return mail.queue / queue / queue_id[0] / queue_id
    return mail.queue / queue / queue_id


def move(mail, queue_id: str, source: str, target: str) -> Path:
    """Moves a message between queues as qmgr would (same owner, same inode)."""
    new = path_of(mail, target, queue_id)
    new.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(new.parent, *owner_ids(mail))
    os.rename(path_of(mail, source, queue_id), new)
    return new


def owner_ids(mail) -> tuple[int, int]:
    st = (mail.queue / "incoming").stat()
    return st.st_uid, st.st_gid


def defer_log(mail, queue_id: str) -> Path:
    path = path_of(mail, "defer", queue_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, *owner_ids(mail))
    path.write_text("recipient=bob@test.example\nreason=test\n\n")
    os.chown(path, *owner_ids(mail))
    return path


def postsuper(mail, *args: str, input: bytes | None = None):
    result = mail.run("postsuper", *args, input=input)
    return result.returncode, result.stderr.decode()


def stderr_lines(text: str) -> list[str]:
    return text.splitlines()


def assert_logged(mail, mark: int, *texts: str):
    log = mail.log_since(mark)
    for text in texts:
        assert re.search(POSTSUPER_LINE + re.escape(text) + "$", log, re.M), f"{text!r} not in maillog:\n{log}"


# --- delete -------------------------------------------------------------------


def test_delete_one_message_and_its_logs(mail):
    first, second = submit(mail, 2)
    move(mail, first, "incoming", "deferred")
    log = defer_log(mail, first)
    mark = mail.log_mark()
    status, err = postsuper(mail, "-d", first)
    assert status == 0, err
    assert stderr_lines(err) == [f"postsuper: {first}: removed", "postsuper: Deleted: 1 message"]
    assert not path_of(mail, "deferred", first).exists()
    assert not log.exists()
    assert mail.queue_ids("incoming") == [second], "the other message is untouched"
    assert_logged(mail, mark, f"{first}: removed", "Deleted: 1 message")


def test_delete_all_deferred_leaves_other_queues(mail):
    ids = submit(mail, 3)
    for queue_id in ids[:2]:
        move(mail, queue_id, "incoming", "deferred")
    status, err = postsuper(mail, "-d", "ALL", "deferred")
    assert status == 0, err
    assert stderr_lines(err) == ["postsuper: Deleted: 2 messages"]
    assert mail.queue_ids("deferred") == []
    assert mail.queue_ids("incoming") == [ids[2]]
    status, err = postsuper(mail, "-d", "ALL")
    assert (status, stderr_lines(err)) == (0, ["postsuper: Deleted: 1 message"])
    assert mail.all_queue_files() == []


def test_delete_ids_from_stdin(mail):
    ids = submit(mail, 3)
    text = f"{ids[0]}\nbad.id\n\n{ids[1]}"  # the last line has no newline
    status, err = postsuper(mail, "-d", "-", input=text.encode())
    assert status == 0, err
    assert stderr_lines(err) == [
        f"postsuper: {ids[0]}: removed",
        "postsuper: warning: invalid mail queue id: bad.id",
        "postsuper: warning: invalid mail queue id: ",
        f"postsuper: {ids[1]}: removed",
        "postsuper: Deleted: 2 messages",
    ]
    assert mail.queue_ids("incoming") == [ids[2]]


def test_unknown_and_malformed_ids_touch_nothing(mail):
    (queue_id,) = submit(mail)
    mark = mail.log_mark()
    # Unknown: Postfix says nothing about it, it just is not counted.
    status, err = postsuper(mail, "-d", "ABCDEF12345", "-d", "all")
    assert (status, stderr_lines(err)) == (0, ["postsuper: Deleted: 0 messages"])
    status, err = postsuper(mail, "-h", "../incoming")
    assert (status, stderr_lines(err)) == (
        0,
        ["postsuper: warning: invalid mail queue id: ../incoming", "postsuper: Placed on hold: 0 messages"],
    )
    assert mail.queue_ids("incoming") == [queue_id]
    assert_logged(mail, mark, "warning: invalid mail queue id: ../incoming")


def test_unknown_queue_name_is_fatal_before_anything_happens(mail):
    (queue_id,) = submit(mail)
    for name in ("foo", "Deferred", "corrupt", "saved"):
        status, err = postsuper(mail, "-d", "ALL", name)
        assert (status, stderr_lines(err)) == (1, [f"postsuper: fatal: invalid directory name: {name}"])
    # Postfix looks a queue name up only when it gets there, and would
    # delete from incoming/ first; here nothing is touched.
    status, err = postsuper(mail, "-d", queue_id, "incoming", "nosuchqueue")
    assert status == 1
    assert mail.queue_ids("incoming") == [queue_id]


def test_usage_errors(mail):
    status, err = postsuper(mail, "-x")
    lines = stderr_lines(err)
    assert status == 1
    assert lines[0] == "postsuper: invalid option -- 'x'"
    assert lines[1].startswith("postsuper: fatal: usage: postsuper [-c config_dir] [-d queue_id (delete)]")
    result = subprocess.run([str(mail.sbin / "postsuper"), "-c", "relative/dir"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (1, "postsuper: fatal: -c requires absolute pathname\n")


# --- hold, release, expire ------------------------------------------------------


def test_hold_and_release(mail):
    first, second = submit(mail, 2)
    move(mail, first, "incoming", "deferred")
    mark = mail.log_mark()
    status, err = postsuper(mail, "-h", first, "-h", second)
    assert status == 0, err
    assert stderr_lines(err) == [
        f"postsuper: {first}: placed on hold",
        f"postsuper: {second}: placed on hold",
        "postsuper: Placed on hold: 2 messages",
    ]
    assert mail.queue_ids("hold") == sorted([first, second])
    # Already on hold: not counted again.
    assert stderr_lines(postsuper(mail, "-h", first)[1]) == ["postsuper: Placed on hold: 0 messages"]
    held = path_of(mail, "hold", first)
    os.utime(held, (1_000_000_000, 1_000_000_000))
    status, err = postsuper(mail, "-H", first)
    assert stderr_lines(err) == [f"postsuper: {first}: released from hold", "postsuper: Released from hold: 1 message"]
    released = path_of(mail, "deferred", first)
    assert released.is_file()
    assert abs(released.stat().st_mtime - time.time()) < 60, "released mail is due at once"
    status, err = postsuper(mail, "-H", "ALL")
    assert stderr_lines(err) == ["postsuper: Released from hold: 1 message"]
    assert mail.queue_ids("hold") == []
    assert_logged(mail, mark, f"{first}: placed on hold", "Placed on hold: 2 messages", "Released from hold: 1 message")


def test_hold_all_and_maildrop_is_never_held(mail):
    ids = submit(mail, 2)
    move(mail, ids[0], "incoming", "deferred")
    status, err = postsuper(mail, "-h", "ALL")
    assert (status, stderr_lines(err)) == (0, ["postsuper: Placed on hold: 2 messages"])
    assert mail.queue_ids("hold") == ids
    status, err = postsuper(mail, "-h", "ALL", "maildrop")
    assert stderr_lines(err) == ["postsuper: Placed on hold: 0 messages"]


def test_expire_sets_the_flag_and_f_releases(mail):
    first, second = submit(mail, 2)
    move(mail, first, "incoming", "hold")
    mark = mail.log_mark()
    status, err = postsuper(mail, "-e", first, "-e", second)
    assert status == 0, err
    assert stderr_lines(err) == [
        f"postsuper: {first}: expired",
        f"postsuper: {second}: expired",
        "postsuper: Force-expired: 2 messages",
    ]
    assert path_of(mail, "hold", first).stat().st_mode & EXPIRE_FLAG
    assert path_of(mail, "incoming", second).stat().st_mode & EXPIRE_FLAG
    # -e leaves held mail held; expiring again counts nothing.
    assert stderr_lines(postsuper(mail, "-e", first)[1]) == ["postsuper: Force-expired: 0 messages"]
    status, err = postsuper(mail, "-f", first)
    assert stderr_lines(err) == [
        f"postsuper: {first}: released from hold",
        "postsuper: Force-expired: 0 messages",
        "postsuper: Released from hold: 1 message",
    ]
    assert path_of(mail, "deferred", first).stat().st_mode & EXPIRE_FLAG
    assert_logged(mail, mark, f"{first}: expired", "Force-expired: 2 messages", f"{first}: released from hold")


def test_f_all_expires_and_releases(mail):
    first, second = submit(mail, 2)
    move(mail, first, "incoming", "hold")
    status, err = postsuper(mail, "-f", "ALL")
    assert (status, stderr_lines(err)) == (
        0,
        ["postsuper: Force-expired: 2 messages", "postsuper: Released from hold: 1 message"],
    )
    assert path_of(mail, "deferred", first).stat().st_mode & EXPIRE_FLAG
    assert path_of(mail, "incoming", second).stat().st_mode & EXPIRE_FLAG


# --- requeue --------------------------------------------------------------------


def test_requeue_goes_back_through_pickup_and_cleanup(mail):
    (queue_id,) = submit(mail)
    move(mail, queue_id, "incoming", "deferred")
    log = defer_log(mail, queue_id)
    mark = mail.log_mark()
    status, err = postsuper(mail, "-r", queue_id)
    assert status == 0, err
    assert stderr_lines(err) == [f"postsuper: {queue_id}: requeued", "postsuper: Requeued: 1 message"]
    assert not path_of(mail, "deferred", queue_id).exists()
    assert not log.exists()
    assert_logged(mail, mark, f"{queue_id}: requeued", "Requeued: 1 message")
    # pickup was woken: the message comes back as a new queue file, which
    # pickup logs with the ID it had before.
    match = mail.wait_for_log(rf"postfix/pickup\[\d+\]: ({QUEUE_ID}): uid=\d+ from=<alice@test\.example> orig_id={queue_id}$", mark)
    new_id = match.group(1)
    wait_until(lambda: new_id in mail.queue_ids("incoming"), 30, f"{new_id} in incoming/")
    assert mail.envelope(new_id)["recipient"] == ["bob@test.example"]


def test_requeue_all(mail):
    ids = submit(mail, 2)
    move(mail, ids[0], "incoming", "hold")
    mark = mail.log_mark()
    status, err = postsuper(mail, "-r", "ALL")
    assert (status, stderr_lines(err)) == (0, ["postsuper: Requeued: 2 messages"])
    assert mail.queue_ids("hold") == []
    for queue_id in ids:
        mail.wait_for_log(rf"postfix/pickup\[\d+\]: {QUEUE_ID}: uid=\d+ from=<[^>]*> orig_id={queue_id}$", mark)
    wait_until(lambda: len(mail.queue_ids("incoming")) == 2 and not mail.queue_ids("maildrop"), 30, "requeued mail in incoming/")
    assert set(ids).isdisjoint(mail.queue_ids("incoming"))


# --- running system: locks ----------------------------------------------------


def test_delete_waits_for_a_delivery_in_progress(mail):
    (queue_id,) = submit(mail)
    path = move(mail, queue_id, "incoming", "active")
    with open(path, "rb") as held:
        # What a delivery agent holds while it delivers.
        fcntl.flock(held, fcntl.LOCK_SH)
        process = subprocess.Popen(
            mail.command("postsuper", "-d", queue_id),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1)
        assert process.poll() is None, "postsuper did not wait for the lock"
        assert path.exists()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert err.decode().splitlines() == [f"postsuper: {queue_id}: removed", "postsuper: Deleted: 1 message"]
    assert not path.exists()


# --- structure and purge --------------------------------------------------------


def test_structure_check_moves_misplaced_files(mail):
    first, second = submit(mail, 2)
    right = move(mail, first, "incoming", "deferred")
    flat = mail.queue / "deferred" / first
    os.rename(right, flat)  # deferred/ID instead of deferred/X/ID
    wrong_dir = mail.queue / "deferred" / ("0" if second[0] != "0" else "1")
    wrong_dir.mkdir(exist_ok=True)
    os.chown(wrong_dir, *owner_ids(mail))
    os.rename(path_of(mail, "incoming", second), wrong_dir / second)
    alien = mail.queue / "incoming" / "junkdir"
    alien.mkdir()
    os.chown(alien, *owner_ids(mail))
    (mail.queue / "incoming" / "notes.txt").write_text("x")
    status, err = postsuper(mail, "-s")
    assert status == 0, err
    assert stderr_lines(err) == ["postsuper: warning: bogus file name: incoming/notes.txt"]
    assert right.is_file() and not flat.exists()
    assert path_of(mail, "deferred", second).is_file()
    assert not alien.exists()
    (mail.queue / "incoming" / "notes.txt").unlink()


def test_structure_check_renames_to_match_the_inode(mail):
    (queue_id,) = submit(mail)
    path = path_of(mail, "incoming", queue_id)
    inode = path.stat().st_ino
    stale = f"{queue_id[:5]}{inode + 1:X}"
    os.rename(path, path.with_name(stale))
    mark = mail.log_mark()
    # Queue IDs given with the check may name other messages now: refused.
    status, err = postsuper(mail, "-s", "-d", stale)
    assert status == 1
    assert stderr_lines(err) == [
        "postsuper: error: QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS",
        "postsuper: fatal: CHECK YOUR QUEUE IDS AND RE-ISSUE THE COMMAND",
        "postsuper: warning: OPERATION INCOMPLETE -- RERUN COMMAND TO FIX THE QUEUE FIRST",
    ]
    assert mail.queue_ids("incoming") == [queue_id]
    os.rename(path, path.with_name(stale))
    status, err = postsuper(mail)
    assert status == 0, err
    assert stderr_lines(err) == [
        "postsuper: Renamed to match inode number: 1 message",
        "postsuper: warning: QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS",
    ]
    assert mail.queue_ids("incoming") == [queue_id]
    assert_logged(mail, mark, "Renamed to match inode number: 1 message")


def test_purge_removes_old_temporary_files(mail):
    old = time.time() - 8 * 86400
    stale = mail.queue / "incoming" / "123456.4242"
    fresh = mail.queue / "incoming" / "654321.4242"
    for path in (stale, fresh):
        path.write_text("partial")
        os.chown(path, *owner_ids(mail))
    os.utime(stale, (old, old))
    status, err = postsuper(mail, "-p")
    assert status == 0, err
    assert not stale.exists()
    assert fresh.exists(), "a recent temporary file may still be written"
    fresh.unlink()


# --- who may run it, and permission trouble -------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="needs another account to run as")
def test_reserved_for_the_superuser(mail):
    (queue_id,) = submit(mail)
    result = subprocess.run(
        mail.command("postsuper", "-d", queue_id),
        capture_output=True,
        text=True,
        user="nobody",
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stderr) == (1, "postsuper: fatal: use of this command is reserved for the superuser\n")
    assert mail.queue_ids("incoming") == [queue_id]


def test_unreadable_queue_directory_is_named(mail):
    deferred = mail.queue / "deferred"
    mode = deferred.stat().st_mode & 0o7777
    deferred.chmod(0)
    try:
        mark = mail.log_mark()
        status, err = postsuper(mail, "-d", "ALL", "deferred")
    finally:
        deferred.chmod(mode)
    assert (status, stderr_lines(err)) == (
        1,
        [f"postsuper: fatal: scan_dir_push: open directory deferred: Permission denied{HINT}"],
    )
    assert_logged(mail, mark, f"fatal: scan_dir_push: open directory deferred: Permission denied{HINT}")


def test_verbose_names_each_file(mail):
    (queue_id,) = submit(mail)
    status, err = postsuper(mail, "-v", "-d", "ALL", "incoming")
    assert status == 0, err
    assert f"postsuper: removed file incoming/{queue_id}" in stderr_lines(err)
    assert re.fullmatch(QUEUE_ID, queue_id)
