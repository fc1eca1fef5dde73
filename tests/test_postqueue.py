"""postqueue(1) and showq(8) end to end: the `-p` listing in Postfix's
exact layout and the `-j` JSON lines (parsed with json.loads) for a queue
holding active, incoming, deferred (with a defer reason) and held
messages, one of them forced to expire; mailq and sendmail -bp give the
same listing; an unprivileged user gets it through showq but cannot read
a queue file; with showq down, root falls back to reading the queue and
the user is refused; -f reaches qmgr; bad input is refused with
Postfix's messages and exit status 69.

Messages go in with sendmail and stay in incoming/ (no qmgr runs); the
tests then move them between queues as root, write defer logs in
libmail/src/queue/defer_log.rs's format, and set the group-execute bit
that marks forced expiry.  The expected listing is built here from
postcat's view of each file, with Postfix's printf formats, not from
postqueue's own code.
"""

import json
import os
import random
import shutil
import socket
import string
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import IS_ROOT
from mailsystem import DOMAIN, mail_system_fixture

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="moves mail_owner's queue files and runs as another user: needs root")

USAGE = "postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n"
DOWN = "Connect to the Postfix showq service: No such file or directory"
EX_UNAVAILABLE = 69
DEFAULT_MAIN_CF = Path("/etc/postfix/main.cf")


def with_showq(system):
    system.extra_master_cf = "showq unix n - n - - showq\n"
    system.write_master_cf()


mailsystem = mail_system_fixture(setup=with_showq)


@pytest.fixture
def mail(mailsystem):
    mailsystem.reset()
    clear_defer_logs(mailsystem)
    yield mailsystem
    clear_defer_logs(mailsystem)


def clear_defer_logs(system):
    top = system.queue / "defer"
    for path in top.rglob("*") if top.is_dir() else []:
        if path.is_file():
            path.unlink()


# --- placing mail -------------------------------------------------------------


def submit(mail, sender: str, *recipients: str) -> str:
    """One message through sendmail; returns its queue ID once it is in
    incoming/."""
    before = set(mail.queue_ids("incoming"))
    result = mail.sendmail("-f", sender, *recipients, input=b"Subject: test\n\nsecret body text\n")
    assert result.returncode == 0, result.stderr
    ids = mail.wait_for_queue("incoming", len(before) + 1)
    (new,) = set(ids) - before
    return new


def owned_dir(mail, path: Path):
    if not path.is_dir():
        path.mkdir(mode=0o700)
        shutil.chown(path, mail.mail_owner)


def move(mail, queue_id: str, queue: str) -> Path:
    """incoming/ID to QUEUE, hashed by the ID's first character where
    Postfix hashes (deferred)."""
    target_dir = mail.queue / queue
    if queue == "deferred":
        target_dir = target_dir / queue_id[0]
        owned_dir(mail, target_dir)
    target = target_dir / queue_id
    os.rename(mail.queue / "incoming" / queue_id, target)
    return target


def write_defer_log(mail, queue_id: str, recipient: str, reason: str):
    top = mail.queue / "defer" / queue_id[0]
    owned_dir(mail, top)
    log = top / queue_id
    log.write_text(
        f"recipient={recipient}\norig_recipient={recipient}\noffset=0\ndsn=4.4.1\nreason={reason}\n\n"
    )
    log.chmod(0o600)
    shutil.chown(log, mail.mail_owner)


def envelope_facts(mail, queue_id: str) -> dict:
    """Size, arrival time (as asctime in UTC), sender and recipients as
    postcat shows them."""
    env = mail.envelope(queue_id)
    return {
        "size": int(env["message_size"][0].split()[4]),
        "time": env["message_arrival_time"][0],
        "sender": env["sender"][0] if env.get("sender") and env["sender"][0] else "MAILER-DAEMON",
        "recipients": env.get("recipient", []),
    }


REASON = "connect to mx.example.com[192.0.2.1]:25: Connection refused"


@pytest.fixture
def populated(mail):
    """Four messages, one per listed queue (maildrop empties too fast to
    hold one): active and forced to expire, incoming, deferred with a
    reason for one of its two recipients, and on hold."""
    ids = {
        "active": submit(mail, f"alice@{DOMAIN}", f"bob@{DOMAIN}"),
        "incoming": submit(mail, f"carol@{DOMAIN}", f"dave@{DOMAIN}"),
        "deferred": submit(mail, f"erin@{DOMAIN}", f"frank@{DOMAIN}", f"grace@{DOMAIN}"),
        "hold": submit(mail, "", f"heidi@{DOMAIN}"),
    }
    facts = {queue: envelope_facts(mail, queue_id) for queue, queue_id in ids.items()}
    active = move(mail, ids["active"], "active")
    active.chmod(0o710)
    move(mail, ids["deferred"], "deferred")
    write_defer_log(mail, ids["deferred"], f"grace@{DOMAIN}", REASON)
    move(mail, ids["hold"], "hold")
    return ids, facts


def expected_listing(ids: dict, facts: dict) -> str:
    """Postfix's showq_compat layout, from its printf formats."""
    marks = {"active": "*#", "incoming": "", "deferred": "", "hold": "!"}
    out = ["%-11s %7s %-20s %s\n" % ("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")]
    total = 0
    for n, queue in enumerate(["active", "incoming", "deferred", "hold"]):
        fact = facts[queue]
        if n:
            out.append("\n")
        out.append("%-11s %7d %20.20s %s\n" % (ids[queue] + marks[queue], fact["size"], fact["time"], fact["sender"]))
        recipients = fact["recipients"]
        if queue == "deferred":
            # The explained recipient first, then the rest.
            out.append("%*s(%s)\n" % (76 - len(REASON), "", REASON))
            out.append("%-11s %7s %-20s %s\n" % ("", "", "", f"grace@{DOMAIN}"))
            out.append("%*s(%s)\n" % (76 - len("reason unavailable"), "", "reason unavailable"))
            recipients = [r for r in recipients if r != f"grace@{DOMAIN}"]
        for rcpt in recipients:
            out.append("%-11s %7s %-20s %s\n" % ("", "", "", rcpt))
        total += fact["size"]
    out.append(f"\n-- {total // 1024} Kbytes in 4 Requests.\n")
    return "".join(out)


def postqueue(mail, *args: str, user: str | None = None, env: dict | None = None):
    command = mail.command("postqueue", *args)
    run_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    run_env["TZ"] = "UTC"
    run_env.update(env or {})
    if user:
        command = ["runuser", "-u", user, "--", "env", "TZ=UTC", *command]
    return subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=60)


# --- listing ------------------------------------------------------------------


def test_empty_queue(mail):
    result = postqueue(mail, "-p")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Mail queue is empty\n", "")
    result = postqueue(mail, "-j")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_p_listing_is_postfix_layout(mail, populated):
    ids, facts = populated
    result = postqueue(mail, "-p")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == expected_listing(ids, facts)
    assert "secret body text" not in result.stdout


def test_j_lines_are_json_with_postfix_fields(mail, populated):
    ids, facts = populated
    result = postqueue(mail, "-j")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    objects = [json.loads(line) for line in lines]
    assert [o["queue_name"] for o in objects] == ["active", "incoming", "deferred", "hold"]
    for obj in objects:
        queue = obj["queue_name"]
        fact = facts[queue]
        assert list(obj) == ["queue_name", "queue_id", "arrival_time", "message_size", "forced_expire", "sender", "recipients"]
        assert obj["queue_id"] == ids[queue]
        assert obj["message_size"] == fact["size"]
        assert obj["sender"] == fact["sender"]
        assert obj["forced_expire"] is (queue == "active")
        assert time.asctime(time.gmtime(obj["arrival_time"])) == fact["time"]
    deferred = objects[2]["recipients"]
    assert deferred == [
        {"address": f"grace@{DOMAIN}", "delay_reason": REASON},
        {"address": f"frank@{DOMAIN}"},
    ]
    assert objects[3]["recipients"] == [{"address": f"heidi@{DOMAIN}"}]
    # Postfix's spacing, byte for byte.
    assert lines[3] == (
        f'{{"queue_name": "hold", "queue_id": "{ids["hold"]}", "arrival_time": {objects[3]["arrival_time"]}, '
        f'"message_size": {facts["hold"]["size"]}, "forced_expire": false, "sender": "MAILER-DAEMON", '
        f'"recipients": [{{"address": "heidi@{DOMAIN}"}}]}}'
    )


def test_mailq_and_sendmail_bp_give_the_same_listing(mail, populated):
    expected = postqueue(mail, "-p").stdout
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env.update(TZ="UTC", MAIL_CONFIG=str(mail.config))
    mailq = subprocess.run([str(mail.root / "usr/bin/mailq")], capture_output=True, text=True, env=env, timeout=60)
    assert (mailq.returncode, mailq.stderr) == (0, "")
    assert mailq.stdout == expected
    env.pop("MAIL_CONFIG")
    bp = subprocess.run(
        [str(mail.sbin / "sendmail"), "-C", str(mail.config), "-bp"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (bp.returncode, bp.stderr) == (0, "")
    assert bp.stdout == expected


def test_corrupt_file_is_left_out_and_left_alone(mail, populated):
    ids, facts = populated
    bad = mail.queue / "incoming" / "ABCDEF12345"
    bad.write_bytes(b"not a queue file\n")
    bad.chmod(0o700)
    shutil.chown(bad, mail.mail_owner)
    mark = mail.log_mark()
    result = postqueue(mail, "-p")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_listing(ids, facts)
    mail.wait_for_log(r"postfix/showq\[\d+\]: warning: incoming ABCDEF12345: not listed: ", since=mark)
    assert bad.read_bytes() == b"not a queue file\n"
    assert not list((mail.queue / "corrupt").iterdir())


# --- privileges ---------------------------------------------------------------


@pytest.fixture(scope="module")
def user(mailsystem):
    """A throwaway account, allowed to name the test's configuration
    directory (alternate_config_directories in the default main.cf, which
    is put back as it was afterwards)."""
    name = "pfq" + "".join(random.choices(string.ascii_lowercase, k=6))
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", "-U", name], check=True, capture_output=True)
    saved = DEFAULT_MAIN_CF.read_bytes() if DEFAULT_MAIN_CF.exists() else None
    DEFAULT_MAIN_CF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_MAIN_CF.write_bytes((saved or b"") + f"\nalternate_config_directories = {mailsystem.config}\n".encode())
    try:
        yield name
    finally:
        if saved is None:
            DEFAULT_MAIN_CF.unlink(missing_ok=True)
        else:
            DEFAULT_MAIN_CF.write_bytes(saved)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def test_unprivileged_user_lists_through_showq_but_cannot_read_queue_files(mail, populated, user):
    ids, facts = populated
    installed = mail.sbin / "postqueue"
    assert installed.stat().st_mode & 0o2000, "postqueue is not set-gid"
    result = postqueue(mail, "-p", user=user)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == expected_listing(ids, facts)
    mailq = subprocess.run(
        ["runuser", "-u", user, "--", "env", "TZ=UTC", f"MAIL_CONFIG={mail.config}", str(mail.root / "usr/bin/mailq")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (mailq.returncode, mailq.stderr) == (0, "")
    assert mailq.stdout == result.stdout
    queue_file = mail.queue / "incoming" / ids["incoming"]
    cat = subprocess.run(["runuser", "-u", user, "--", "cat", str(queue_file)], capture_output=True, text=True)
    assert cat.returncode != 0
    assert "Permission denied" in cat.stderr
    assert "secret body text" not in cat.stdout


def test_postcat_as_a_user_names_the_directory_and_the_fix(mail, populated, user):
    ids, _ = populated
    result = subprocess.run(
        ["runuser", "-u", user, "--", str(mail.sbin / "postcat"), "-c", str(mail.config), "-q", ids["incoming"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"postcat: fatal: open {mail.queue}/maildrop/{ids['incoming']}: Permission denied "
        '(queue ownership or permissions are wrong: run "postfix set-permissions" as root)\n'
    )


def test_untrusted_config_directory_is_refused(mail, user, tmp_path):
    other = tmp_path / "etc"
    other.mkdir()
    shutil.copy(mail.config / "main.cf", other / "main.cf")
    tmp_path.chmod(0o755)
    result = subprocess.run(
        ["runuser", "-u", user, "--", str(mail.sbin / "postqueue"), "-c", str(other), "-p"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr == (
        f"postqueue: error: unauthorized configuration directory name: {other}\n"
        f'postqueue: fatal: specify "alternate_config_directories = {other}" or '
        f'"multi_instance_directories = {other}" in /etc/postfix/main.cf\n'
    )


def test_showq_down_root_falls_back_user_is_refused(mail, populated, user):
    ids, facts = populated
    socket_path = mail.queue / "public" / "showq"
    hidden = socket_path.with_name("showq.off")
    os.rename(socket_path, hidden)
    try:
        root = postqueue(mail, "-p")
        assert root.returncode == 0
        assert root.stderr == f"postqueue: warning: Mail system is down -- accessing queue directly ({DOWN})\n"
        assert root.stdout == expected_listing(ids, facts)
        refused = postqueue(mail, "-p", user=user)
        assert refused.returncode == EX_UNAVAILABLE
        assert refused.stdout == ""
        assert refused.stderr == f"postqueue: fatal: Queue report unavailable - mail system is down ({DOWN})\n"
    finally:
        os.rename(hidden, socket_path)


def test_mailq_acl_refuses_a_user_not_listed(mail, user):
    mail.postconf("authorized_mailq_users = root")
    result = postqueue(mail, "-p", user=user)
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr == f"postqueue: fatal: User {user}({uid}) is not allowed to view the mail queue\n"


# --- flushing -----------------------------------------------------------------


def test_f_reaches_qmgr(mail):
    """No qmgr runs in this system: a stand-in listens on public/qmgr and
    records what postqueue -f sends."""
    path = mail.queue / "public" / "qmgr"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)
    got = []

    def accept():
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(64))

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        result = postqueue(mail, "-f")
        thread.join(30)
    finally:
        listener.close()
        path.unlink(missing_ok=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert got and b"D" in got[0] and b"F" in got[0], got


def test_f_with_qmgr_down(mail):
    result = postqueue(mail, "-f")
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr.endswith("postqueue: fatal: Cannot flush mail queue - mail system is down\n")


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("args", [["-x"], [], ["-p", "-j"], ["-p", "extra"], ["-i"]])
def test_usage_errors(mail, args):
    result = postqueue(mail, *args)
    assert (result.returncode, result.stdout, result.stderr) == (EX_UNAVAILABLE, "", USAGE)


def test_malformed_queue_id_and_site(mail, populated):
    before = sorted(p for p in mail.queue.rglob("*") if p.is_file() and "public" not in p.parts)
    result = postqueue(mail, "-i", "../../etc/passwd")
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr == 'postqueue: fatal: Cannot flush queue ID - invalid name: "../../etc/passwd"\n'
    result = postqueue(mail, "-s", "bad site!")
    assert result.returncode == EX_UNAVAILABLE
    assert result.stderr == 'postqueue: fatal: Cannot flush mail queue - invalid destination: "bad site!"\n'
    # A well-formed ID that is not queued: Postfix's flush(8) answers OK
    # and does nothing; without a flush service the system is "down".
    result = postqueue(mail, "-i", "ABCDEF12345")
    if (mail.queue / "public" / "flush").exists():
        assert (result.returncode, result.stderr) == (0, "")
    else:
        assert result.returncode == EX_UNAVAILABLE
        assert result.stderr == "postqueue: fatal: Cannot flush mail queue - mail system is down\n"
    after = sorted(p for p in mail.queue.rglob("*") if p.is_file() and "public" not in p.parts)
    assert after == before
