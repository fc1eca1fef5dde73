"""Mail out, locally: qmgr and local(8) end to end.  Mail goes in through
smtpd (smtplib) or sendmail, and comes out in mbox files and Maildirs that
Python's mailbox module parses back, in files and commands named by
aliases and .forward files, or as a delivery status notification in the
sender's mailbox (parsed as multipart/report).  The maillog must carry
Postfix's lines, so that pflogsumm counts the deliveries and bounces.

The recipients are real accounts made for this module (useradd, homes in
the test's directory) and removed afterwards; as a non-root user the
tests are skipped, since local delivery switches to the recipient's uid.
"""

import email
import email.policy
import mailbox
import os
import pwd
import random
import re
import shutil
import signal
import string
import subprocess
import time
from pathlib import Path

import pytest

from helpers import IS_ROOT, wait_until
from mailsystem import DOMAIN, MailSystem, make_base

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="local delivery switches to the recipient's uid: needs root")

# to=<…>, orig_to=<…>, relay=local, delay=N, delays=a/b/c/d, dsn=X.Y.Z, status=… (…)
NUM = r"[0-9]+(?:\.[0-9]+)?"
STATUS_LINE = (
    r"postfix/local\[\d+\]: (?P<id>[0-9A-Za-z]+): to=<{to}>(?:, orig_to=<(?P<orig>[^>]*)>)?, relay=local, "
    rf"delay={NUM}, delays={NUM}/{NUM}/{NUM}/{NUM}, dsn=(?P<dsn>\d\.\d+\.\d+), status=(?P<status>\w+) \((?P<reason>.*)\)$"
)


# The running system's log tail, for timeout messages.
LOG_TAIL = []


def log_tail() -> str:
    return LOG_TAIL[-1]() if LOG_TAIL else ""


def status_line(to: str) -> str:
    return STATUS_LINE.format(to=re.escape(to))


def make_user(name: str, home: Path):
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-U", name], check=True, capture_output=True)
    home.mkdir(mode=0o755)
    shutil.chown(home, name, name)


def remove_user(name: str):
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture(scope="module")
def mailsystem(built, mail_accounts):
    base = make_base("pfx-deliver-")
    suffix = "".join(random.choices(string.ascii_lowercase, k=6))
    users = {role: f"pfx{role[0]}{suffix}" for role in ("alice", "bob")}
    system = MailSystem(base, mail_accounts, delivery=True)
    try:
        (base / "home").mkdir(mode=0o755)
        for name in users.values():
            make_user(name, base / "home" / name)
        spool = base / "mail"
        spool.mkdir()
        spool.chmod(0o1777)
        out = base / "out"
        out.mkdir()
        out.chmod(0o1777)
        system.users = users
        system.spool = spool
        system.out = out
        system.postconf(
            f"mail_spool_directory = {spool}",
            "local_recipient_maps =",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
        )
        system.baseline_main_cf = (system.config / "main.cf").read_bytes()
        system.start()
        LOG_TAIL.append(lambda: system.log()[-4000:])
        yield system
    finally:
        system.stop()
        for name in users.values():
            remove_user(name)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mail(mailsystem):
    mailsystem.reset()
    for name in mailsystem.users.values():
        home = pwd.getpwnam(name).pw_dir
        for entry in Path(home).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (mailsystem.spool / name).unlink(missing_ok=True)
    for entry in mailsystem.out.iterdir():
        entry.unlink()
    mailsystem.set_aliases("")
    yield mailsystem


def set_aliases(self: MailSystem, text: str):
    (self.config / "aliases").write_text("postmaster: root\n" + text)
    result = self.run("postalias", f"hash:{self.config}/aliases")
    assert result.returncode == 0, result.stderr
    # A running local notices a rebuilt table within a second.
    time.sleep(1.1)


MailSystem.set_aliases = set_aliases


def address(mail, role: str) -> str:
    return f"{mail.users[role]}@{DOMAIN}"


def home(mail, role: str) -> Path:
    return Path(pwd.getpwnam(mail.users[role]).pw_dir)


def send(mail, sender: str, recipients: list[str], subject: str, body: str = "Hello.\n", headers: str = "") -> str:
    text = f"From: <{sender}>\r\nTo: <{recipients[0]}>\r\nSubject: {subject}\r\n{headers}\r\n" + body.replace("\n", "\r\n")
    with mail.smtp() as client:
        client.ehlo("client.example")
        refused = client.sendmail(sender, recipients, text.encode())
        assert refused == {}, refused
    return subject


def wait_for_mbox(path: Path, count: int = 1, seconds: float = 30) -> list[email.message.Message]:
    def ready():
        if not path.exists():
            return False
        messages = list(mailbox.mbox(str(path)))
        return len(messages) >= count and messages

    return wait_until(ready, seconds, f"{count} message(s) in {path}; log:\n{log_tail()}")


def wait_for_maildir(path: Path, count: int = 1, seconds: float = 30) -> list[email.message.Message]:
    def ready():
        if not (path / "new").is_dir():
            return False
        messages = list(mailbox.Maildir(str(path), create=False))
        return len(messages) >= count and messages

    return wait_until(ready, seconds, f"{count} message(s) in {path}/new; log:\n{log_tail()}")


def wait_queue_empty(mail, seconds: float = 30):
    wait_until(lambda: not mail.all_queue_files(), seconds, f"an empty queue; log:\n{mail.log()[-3000:]}")


# --- mailboxes ---------------------------------------------------------------


def test_smtp_to_mbox_with_postfix_log_lines(mail):
    mark = mail.log_mark()
    to = address(mail, "alice")
    send(mail, "sender@client.example", [to], "to the mbox", body="First line.\nFrom the start, quoted.\n")
    [msg] = wait_for_mbox(mail.spool / mail.users["alice"])
    assert msg["Subject"] == "to the mbox"
    assert msg["Return-Path"] == "<sender@client.example>"
    assert msg["Delivered-To"] == to
    assert msg["X-Original-To"] == to
    assert msg.get_from().startswith("sender@client.example ")
    raw = (mail.spool / mail.users["alice"]).read_bytes()
    assert b"\n>From the start, quoted.\n" in raw
    assert raw.endswith(b"\n\n")
    line = mail.wait_for_log(status_line(to), since=mark)
    assert line["status"] == "sent" and line["dsn"] == "2.0.0"
    assert line["reason"] == "delivered to mailbox"
    queue_id = line["id"]
    log = mail.log_since(mark)
    assert re.search(
        rf"postfix/qmgr\[\d+\]: {queue_id}: from=<sender@client.example>, size=\d+, nrcpt=1 \(queue active\)$", log, re.M
    )
    mail.wait_for_log(rf"postfix/qmgr\[\d+\]: {queue_id}: removed$", since=mark)
    wait_queue_empty(mail)
    assert os.stat(mail.spool / mail.users["alice"]).st_uid == pwd.getpwnam(mail.users["alice"]).pw_uid


def test_maildir_in_home_mailbox(mail):
    mail.postconf("home_mailbox = Maildir/")
    mail.reload()
    mark = mail.log_mark()
    to = address(mail, "bob")
    send(mail, "sender@client.example", [to], "to the maildir")
    maildir = home(mail, "bob") / "Maildir"
    [msg] = wait_for_maildir(maildir)
    assert msg["Subject"] == "to the maildir"
    assert msg["Delivered-To"] == to
    assert msg["Return-Path"] == "<sender@client.example>"
    line = mail.wait_for_log(status_line(to), since=mark)
    assert (line["status"], line["reason"]) == ("sent", "delivered to maildir")
    uid = pwd.getpwnam(mail.users["bob"]).pw_uid
    [path] = list((maildir / "new").iterdir())
    assert path.stat().st_uid == uid
    assert not list((maildir / "tmp").iterdir())
    wait_queue_empty(mail)


def test_many_recipients_one_message(mail):
    mark = mail.log_mark()
    recipients = [address(mail, "alice"), address(mail, "bob")]
    send(mail, "sender@client.example", recipients, "two at once")
    wait_for_mbox(mail.spool / mail.users["alice"])
    wait_for_mbox(mail.spool / mail.users["bob"])
    for to in recipients:
        mail.wait_for_log(status_line(to), since=mark)
    assert re.search(r"nrcpt=2 \(queue active\)", mail.log_since(mark))
    wait_queue_empty(mail)


def test_sendmail_to_local_user(mail):
    mark = mail.log_mark()
    to = address(mail, "alice")
    result = mail.sendmail("-f", "root@" + DOMAIN, to, input=b"Subject: by sendmail\n\nvia postdrop\n")
    assert result.returncode == 0, result.stderr
    [msg] = wait_for_mbox(mail.spool / mail.users["alice"])
    assert msg["Subject"] == "by sendmail"
    assert msg["Return-Path"] == f"<root@{DOMAIN}>"
    mail.wait_for_log(status_line(to), since=mark)


# --- aliases and .forward ---------------------------------------------------------


def test_alias_list_include_file_and_command(mail):
    include = mail.out / "list.include"
    include.write_text(f"{mail.users['bob']}\n")
    mail.set_aliases(
        f"team: {mail.users['alice']}, :include:{include}\n"
        f"tofile: {mail.out}/file.mbox\n"
        f'tocmd: "|/bin/cat > {mail.out}/command.out"\n'
    )
    mark = mail.log_mark()
    send(mail, "sender@client.example", [f"team@{DOMAIN}", f"tofile@{DOMAIN}", f"tocmd@{DOMAIN}"], "for the team")
    [a] = wait_for_mbox(mail.spool / mail.users["alice"])
    [b] = wait_for_mbox(mail.spool / mail.users["bob"])
    assert a["Subject"] == b["Subject"] == "for the team"
    assert a["X-Original-To"] == f"team@{DOMAIN}"
    [f] = wait_for_mbox(mail.out / "file.mbox")
    assert f["Subject"] == "for the team"
    wait_until(lambda: b"for the team" in (mail.out / "command.out").read_bytes() if (mail.out / "command.out").exists() else False, 30, "command output")
    line = mail.wait_for_log(status_line(address(mail, "alice")), since=mark)
    assert line["orig"] == f"team@{DOMAIN}"
    mail.wait_for_log(rf"to=<tofile@{DOMAIN}>, .*status=sent \(delivered to file: {re.escape(str(mail.out))}/file.mbox\)", since=mark)
    mail.wait_for_log(rf"to=<tocmd@{DOMAIN}>, .*status=sent \(delivered to command: /bin/cat", since=mark)
    wait_queue_empty(mail)


def test_dot_forward(mail):
    bob_home = home(mail, "bob")
    forward = bob_home / ".forward"
    forward.write_text(f"{mail.users['alice']}, \\{mail.users['bob']}\n")
    shutil.chown(forward, mail.users["bob"])
    send(mail, "sender@client.example", [address(mail, "bob")], "forwarded on")
    [a] = wait_for_mbox(mail.spool / mail.users["alice"])
    [b] = wait_for_mbox(mail.spool / mail.users["bob"])
    assert a["Subject"] == b["Subject"] == "forwarded on"
    wait_queue_empty(mail)


def test_alias_loop_bounces_and_loses_nothing(mail):
    mail.set_aliases("loop1: loop2\nloop2: loop1\n")
    mark = mail.log_mark()
    sender = address(mail, "alice")
    send(mail, sender, [f"loop1@{DOMAIN}"], "going round")
    mail.wait_for_log(r"dsn=5\.\d+\.\d+, status=bounced", since=mark)
    [notice] = wait_for_mbox(mail.spool / mail.users["alice"])
    assert notice.get_content_type() == "multipart/report"
    wait_queue_empty(mail)


# --- commands ---------------------------------------------------------------------


def test_mailbox_command_runs_as_the_user(mail):
    mail.postconf('mailbox_command = /bin/sh -c "id -u > $HOME/uid; cat > $HOME/piped"')
    mail.reload()
    mark = mail.log_mark()
    to = address(mail, "alice")
    send(mail, "sender@client.example", [to], "through a command")
    piped = home(mail, "alice") / "piped"
    wait_until(lambda: piped.exists() and b"through a command" in piped.read_bytes(), 30, "the command's file")
    uid = pwd.getpwnam(mail.users["alice"]).pw_uid
    wait_until(lambda: (home(mail, "alice") / "uid").read_text().strip() == str(uid), 10, "the uid file")
    line = mail.wait_for_log(status_line(to), since=mark)
    assert line["status"] == "sent" and line["reason"].startswith("delivered to command: ")


def test_command_tempfail_is_deferred_then_flushed(mail):
    flag = mail.out / "ok"
    mail.postconf(f'mailbox_command = /bin/sh -c "test -e {flag} || exit 75; cat > $HOME/got"')
    mail.reload()
    mark = mail.log_mark()
    to = address(mail, "alice")
    send(mail, "sender@client.example", [to], "try again")
    line = mail.wait_for_log(status_line(to), since=mark)
    assert line["status"] == "deferred" and line["dsn"].startswith("4.")
    mail.wait_for_queue("deferred")
    # Retries are a second apart here; what matters is that nothing is
    # lost and that flush makes the next try happen now.
    flag.touch()
    result = mail.run("postqueue", "-f")
    assert result.returncode == 0, result.stderr
    got = home(mail, "alice") / "got"
    wait_until(lambda: got.exists() and b"try again" in got.read_bytes(), 30, "delivery after flush")
    wait_queue_empty(mail)


def test_command_failure_bounces_with_a_report(mail):
    mail.set_aliases('broken: "|/bin/sh -c \'echo no such folder; exit 1\'"\n')
    mark = mail.log_mark()
    sender = address(mail, "bob")
    to = f"broken@{DOMAIN}"
    send(mail, sender, [to], "will bounce")
    line = mail.wait_for_log(status_line(to), since=mark)
    assert line["status"] == "bounced" and line["dsn"].startswith("5.")
    assert "no such folder" in line["reason"]
    mail.wait_for_log(rf"{line['id']}: sender non-delivery notification: \w+", since=mark)
    [notice] = wait_for_mbox(mail.spool / mail.users["bob"])
    check_report(notice, to, "failed", "5.")
    wait_queue_empty(mail)


def check_report(notice, recipient: str, action: str, status_prefix: str):
    parsed = email.message_from_bytes(notice.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["From"].startswith("MAILER-DAEMON@")
    parts = list(parsed.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    report = parts[1].as_string()
    assert f"Final-Recipient: rfc822; {recipient}" in report
    assert f"Action: {action}" in report
    assert re.search(rf"Status: {re.escape(status_prefix)}\d+\.\d+", report)
    assert parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")


def test_unknown_user_bounces_to_sender(mail):
    mark = mail.log_mark()
    sender = address(mail, "bob")
    result = mail.sendmail("-f", sender, f"nosuchuser@{DOMAIN}", input=b"Subject: lost\n\nnobody home\n")
    assert result.returncode == 0
    line = mail.wait_for_log(status_line(f"nosuchuser@{DOMAIN}"), since=mark)
    assert (line["status"], line["dsn"], line["reason"]) == ("bounced", "5.1.1", 'unknown user: "nosuchuser"')
    [notice] = wait_for_mbox(mail.spool / mail.users["bob"])
    assert notice["Subject"] == "Undelivered Mail Returned to Sender"
    assert notice.get_from().startswith("MAILER-DAEMON ")
    check_report(notice, f"nosuchuser@{DOMAIN}", "failed", "5.1.1"[:2])
    wait_queue_empty(mail)


def test_expiry_returns_mail_to_sender(mail):
    mail.set_aliases('later: "|/bin/sh -c \'exit 75\'"\n')
    mail.postconf("maximal_queue_lifetime = 0")
    mail.reload()
    mark = mail.log_mark()
    sender = address(mail, "bob")
    send(mail, sender, [f"later@{DOMAIN}"], "too late")
    line = mail.wait_for_log(rf"postfix/qmgr\[\d+\]: (\w+): from=<{re.escape(sender)}>, status=expired, returned to sender$", since=mark)
    queue_id = line[1]
    mail.wait_for_log(rf"{queue_id}: sender non-delivery notification: \w+", since=mark)
    mail.wait_for_log(rf"{queue_id}: removed", since=mark)
    [notice] = wait_for_mbox(mail.spool / mail.users["bob"])
    check_report(notice, f"later@{DOMAIN}", "failed", "4.")
    wait_queue_empty(mail)


def test_missing_home_directory_defers(mail):
    mail.postconf("home_mailbox = Maildir/")
    mail.reload()
    alice_home = home(mail, "alice")
    moved = alice_home.with_name(alice_home.name + ".away")
    alice_home.rename(moved)
    try:
        mark = mail.log_mark()
        to = address(mail, "alice")
        send(mail, "sender@client.example", [to], "nowhere to go")
        line = mail.wait_for_log(status_line(to), since=mark)
        assert line["status"] == "deferred" and line["dsn"].startswith("4.")
        mail.wait_for_queue("deferred")
    finally:
        moved.rename(alice_home)
    result = mail.sendmail("-q", input=b"")
    assert result.returncode == 0, result.stderr
    wait_for_maildir(alice_home / "Maildir")
    wait_queue_empty(mail)


# --- crashes and reports -------------------------------------------------------------


def qmgr_pids(mail) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == str(mail.daemons / "qmgr"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_qmgr_killed_mid_delivery_loses_nothing(mail):
    mail.postconf('mailbox_command = /bin/sh -c "sleep 0.2; cat >> $HOME/all"')
    mail.reload()
    to = address(mail, "alice")
    subjects = [f"message {n}" for n in range(12)]
    for subject in subjects[:6]:
        send(mail, "sender@client.example", [to], subject)
    wait_until(lambda: qmgr_pids(mail), 30, "a running qmgr")
    for pid in qmgr_pids(mail):
        os.kill(pid, signal.SIGKILL)
    for subject in subjects[6:]:
        send(mail, "sender@client.example", [to], subject)
    everything = home(mail, "alice") / "all"

    def all_there():
        text = everything.read_bytes() if everything.exists() else b""
        return all(f"Subject: {s}\n".encode() in text for s in subjects)

    wait_until(all_there, 90, "every message delivered after qmgr's SIGKILL")
    wait_queue_empty(mail, 60)


def test_pflogsumm_counts_deliveries_and_bounces(mail):
    if not shutil.which("pflogsumm"):
        pytest.skip("pflogsumm is not installed (make test-tools installs it)")
    before = mail.log()
    send(mail, "sender@client.example", [address(mail, "alice")], "counted 1")
    send(mail, "sender@client.example", [address(mail, "bob")], "counted 2")
    mail.sendmail("-f", address(mail, "bob"), f"nobody-here@{DOMAIN}", input=b"Subject: counted 3\n\nx\n")
    wait_for_mbox(mail.spool / mail.users["alice"])
    wait_for_mbox(mail.spool / mail.users["bob"], 2)
    wait_queue_empty(mail)
    log = mail.log()[len(before):]
    path = mail.out / "maillog"
    path.write_text(log)
    report = subprocess.run(["pflogsumm", str(path)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    delivered = int(re.search(r"^\s*(\d+)\s+delivered", report.stdout, re.M)[1])
    bounced = int(re.search(r"^\s*(\d+)\s+bounced", report.stdout, re.M)[1])
    # alice, bob, and the bounce notice to bob; one bounce.
    assert (delivered, bounced) == (3, 1), report.stdout
