"""Queue operations while mail is flowing: postsuper deletes, holds,
releases and requeues messages that qmgr and local are working on, and
afterwards the counts add up: every message was delivered exactly once,
or deleted, or is still on hold, and no deleted message ever arrived.
Also forced expiry (postsuper -e / -f) returning mail to the sender,
and `postqueue -i` taking one deferred message out of turn.

Delivery is slowed down on purpose (a mailbox_command that sleeps), so
that most messages sit in active/ while postsuper works on them and some
are being delivered at that moment, under the delivery agent's lock.
"""

import json
import random
import re
import shutil
import smtplib
import string
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import IS_ROOT, wait_until
from mailsystem import DOMAIN, MailSystem, make_base

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="local delivery switches to the recipient's uid: needs root")

MESSAGES = 150
SUBJECT = re.compile(rb"^Subject: (msg-\d+)$", re.M)


def make_user(name: str, home: Path):
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-U", name], check=True, capture_output=True)
    home.mkdir(mode=0o755)
    shutil.chown(home, name, name)


@pytest.fixture(scope="module")
def mailsystem(built, mail_accounts):
    base = make_base("pfx-queueops-")
    suffix = "".join(random.choices(string.ascii_lowercase, k=6))
    user = f"pfxq{suffix}"
    system = MailSystem(base, mail_accounts, delivery=True)
    system.extra_master_cf = "showq unix n - n - - showq\n"
    system.write_master_cf()
    system.baseline_master_cf = (system.config / "master.cf").read_bytes()
    try:
        (base / "home").mkdir(mode=0o755)
        home = base / "home" / user
        make_user(user, home)
        # Each delivery takes a while and leaves one file per message.
        script = base / "deliver.sh"
        script.write_text('#!/bin/sh\nsleep 0.03\nexec cat > "$HOME/in/$(date +%s%N).$$"\n')
        script.chmod(0o755)
        system.user = user
        system.inbox = home / "in"
        system.postconf(
            f"mailbox_command = {script}",
            "local_recipient_maps =",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
        )
        system.start()
        yield system
    finally:
        system.stop()
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mail(mailsystem):
    mailsystem.clear_queues()
    shutil.rmtree(mailsystem.inbox, ignore_errors=True)
    mailsystem.inbox.mkdir()
    shutil.chown(mailsystem.inbox, mailsystem.user, mailsystem.user)
    yield mailsystem


def delivered_subjects(mail) -> list[str]:
    subjects = []
    for path in mail.inbox.iterdir():
        found = SUBJECT.search(path.read_bytes())
        assert found, f"no subject in {path}"
        subjects.append(found.group(1).decode())
    return subjects


def queued(mail) -> list[dict]:
    result = mail.run("postqueue", "-j")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def postsuper(mail, option: str, ids: list[str]) -> str:
    result = mail.run("postsuper", option, "-", input="".join(f"{i}\n" for i in ids).encode())
    assert result.returncode == 0, result.stderr
    return result.stderr.decode()


def test_postsuper_under_concurrent_delivery(mail):
    rcpt = f"{mail.user}@{DOMAIN}"
    subject_of: dict[str, str] = {}
    sent = threading.Event()

    def send():
        with smtplib.SMTP("127.0.0.1", mail.port, timeout=60) as client:
            for n in range(MESSAGES):
                msg = f"From: a@{DOMAIN}\r\nTo: {rcpt}\r\nSubject: msg-{n}\r\n\r\nbody {n}\r\n"
                client.mail(f"a@{DOMAIN}")
                client.rcpt(rcpt)
                code, text = client.data(msg.encode())
                assert code == 250, text
                subject_of[text.decode().rsplit(" ", 1)[-1]] = f"msg-{n}"
        sent.set()

    sender = threading.Thread(target=send)
    sender.start()
    deleted, held, released, requeued = set(), set(), set(), set()
    touched = set()
    rng = random.Random(7)
    deadline = time.time() + 120
    while (not sent.is_set() or queued(mail)) and time.time() < deadline:
        candidates = [m["queue_id"] for m in queued(mail) if m["queue_id"] in subject_of and m["queue_id"] not in touched]
        picked = rng.sample(candidates, min(6, len(candidates)))
        if len(picked) >= 4:
            touched.update(picked)
            out = postsuper(mail, "-d", picked[:2])
            deleted |= set(re.findall(r"postsuper: (\w+): removed", out))
            out = postsuper(mail, "-h", picked[2:4])
            held |= set(re.findall(r"postsuper: (\w+): placed on hold", out))
            out = postsuper(mail, "-r", picked[4:])
            requeued |= set(re.findall(r"postsuper: (\w+): requeued", out))
        if len(held - released) >= 4:
            release = sorted(held - released)[:2]
            out = postsuper(mail, "-H", release)
            released |= set(re.findall(r"postsuper: (\w+): released from hold", out))
        if sent.is_set() and not candidates and len(queued(mail)) == len(held - released):
            break
        time.sleep(0.02)
    sender.join()
    assert deleted and held and requeued, (deleted, held, requeued)

    still_held = held - released
    wait_until(lambda: len(queued(mail)) == len(still_held), seconds=120, what="the queue to drain")
    on_hold = {m["queue_id"] for m in queued(mail)}
    assert on_hold == still_held
    assert all(m["queue_name"] == "hold" for m in queued(mail))

    subjects = delivered_subjects(mail)
    duplicates = {s for s in subjects if subjects.count(s) > 1}
    assert not duplicates, f"delivered twice: {duplicates}"
    gone = {subject_of[i] for i in deleted | still_held}
    assert not gone & set(subjects), f"deleted or held mail arrived: {gone & set(subjects)}"
    assert len(subjects) + len(deleted) + len(still_held) == MESSAGES
    # A message the agent finished while postsuper waited was delivered,
    # not deleted: postsuper reported only what it really did.
    log = mail.log()
    for queue_id in deleted:
        assert re.search(rf"postfix/postsuper\[\d+\]: {queue_id}: removed", log)
    for queue_id in requeued:
        assert re.search(rf"postfix/pickup\[\d+\]: \w+: uid=\d+ from=<a@{DOMAIN}> orig_id={queue_id}", log)


def test_forced_expiry_returns_mail_and_postqueue_i_retries_one(mail):
    # Mail to a transport that is not running is deferred.
    mail.postconf("relay_domains = relay.example", "fast_flush_domains = relay.example")
    ids = []
    with mail.smtp() as client:
        for n in range(2):
            client.sendmail(f"{mail.user}@{DOMAIN}", [f"far{n}@relay.example"], f"Subject: far-{n}\r\n\r\nx\r\n")
    wait_until(lambda: len([m for m in queued(mail) if m["queue_name"] == "deferred"]) == 2, seconds=60)
    ids = sorted(m["queue_id"] for m in queued(mail))
    reasons = [r.get("delay_reason", "") for m in queued(mail) for r in m["recipients"]]
    assert all("mail transport unavailable" in r for r in reasons), reasons

    # postqueue -i: one message goes back to incoming and is tried again.
    mark = mail.log_mark()
    result = mail.run("postqueue", "-i", ids[0])
    assert result.returncode == 0, result.stderr
    mail.wait_for_log(rf"{ids[0]}: to=<far\d@relay\.example>.*status=deferred", since=mark)
    assert not re.search(rf"{ids[1]}: to=", mail.log_since(mark))

    # postsuper -e: returned to the sender with the deferral reason.
    mark = mail.log_mark()
    out = postsuper(mail, "-e", [ids[1]])
    assert re.search(rf"{ids[1]}: expired", out), out
    mail.run("postqueue", "-f")
    mail.wait_for_log(rf"{ids[1]}: from=<{mail.user}@{DOMAIN}>, status=expired, returned to sender", since=mark)
    wait_until(lambda: any(b"mail transport unavailable" in p.read_bytes() for p in mail.inbox.iterdir()), seconds=60)
    assert [m["queue_id"] for m in queued(mail)] == [ids[0]]
