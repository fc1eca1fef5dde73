"""The transports whose nexthop is their answer: error (bounce), retry
(defer) and discard (sent, nothing delivered), chosen with transport_maps.
qmgr answers the stock service names itself; a master.cf service under
another name goes to the real agents: discard(8) serves it, error(8)
refuses it as Postfix's does.  Each outcome must show in the maillog as Postfix
logs it (`to=<…>, relay=none, delay=…, delays=…, dsn=…, status=… (…)`),
and a bounce must reach the sender's mailbox as a delivery status
notification.

The sender is a real account made for this module (as in
test_delivery.py), so the tests need root.
"""

import random
import re
import shutil
import string

import pytest

from helpers import IS_ROOT
from mailsystem import DOMAIN, MailSystem, make_base
from test_delivery import check_report, make_user, remove_user, wait_for_mbox, wait_queue_empty  # one copy of each

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="the bounce goes to a real account: needs root")

NUM = r"[0-9]+(?:\.[0-9]+)?"
# Debian's Postfix needs the stock services in master.cf; ours answers
# them in qmgr and has the lines anyway in etc/master.cf.
STOCK_SERVICES = "error unix - - n - - error\nretry unix - - n - - error\ndiscard unix - - n - - discard\n"
RENAMED_SERVICES = "myerr unix - - n - - error\nmydiscard unix - - n - - discard\n"


def status_line(to: str) -> str:
    return (
        rf"postfix/(?P<program>[\w-]+)\[\d+\]: (?P<id>\w+): to=<{re.escape(to)}>, relay=none, "
        rf"delay={NUM}, delays={NUM}/{NUM}/{NUM}/{NUM}, dsn=(?P<dsn>\d\.\d+\.\d+), "
        r"status=(?P<status>\w+) \((?P<reason>.*)\)$"
    )


@pytest.fixture(scope="module")
def mailsystem(built, mail_accounts):
    base = make_base("pfx-transports-")
    system = MailSystem(base, mail_accounts, delivery=True)
    user = "pfs" + "".join(random.choices(string.ascii_lowercase, k=6))
    try:
        (base / "home").mkdir(mode=0o755)
        make_user(user, base / "home" / user)
        spool = base / "mail"
        spool.mkdir()
        spool.chmod(0o1777)
        system.sender = f"{user}@{DOMAIN}"
        system.sender_mbox = spool / user
        system.postconf(
            f"mail_spool_directory = {spool}",
            "local_recipient_maps =",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
        )
        system.baseline_main_cf = (system.config / "main.cf").read_bytes()
        if system.reference:
            system.extra_master_cf = STOCK_SERVICES
            system.write_master_cf()
            system.baseline_master_cf = (system.config / "master.cf").read_bytes()
        system.start()
        yield system
    finally:
        system.stop()
        remove_user(user)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mail(mailsystem):
    mailsystem.reset()
    mailsystem.sender_mbox.unlink(missing_ok=True)
    yield mailsystem


def route(mail, text: str, services: str = ""):
    """transport_maps from a hash table of text; services added to
    master.cf."""
    if services:
        mail.extra_master_cf = (STOCK_SERVICES if mail.reference else "") + services
        mail.write_master_cf()
    mail.postconf(f"transport_maps = {mail.table('transport', text)}")
    mail.reload()


def send(mail, *recipients: str, subject: str = "routed"):
    result = mail.sendmail("-f", mail.sender, *recipients, input=f"Subject: {subject}\n\nbody\n".encode())
    assert result.returncode == 0, result.stderr


def test_error_transport_bounces_to_the_sender(mail):
    route(mail, "nowhere.example error:5.1.1 gone\nvague.example error:no such place\n")
    mark = mail.log_mark()
    send(mail, "bob@nowhere.example", "carol@vague.example")
    bob = mail.wait_for_log(status_line("bob@nowhere.example"), since=mark)
    assert (bob["status"], bob["dsn"], bob["reason"]) == ("bounced", "5.1.1", "gone")
    carol = mail.wait_for_log(status_line("carol@vague.example"), since=mark)
    assert (carol["status"], carol["dsn"], carol["reason"]) == ("bounced", "5.0.0", "no such place")
    mail.wait_for_log(rf"{bob['id']}: sender non-delivery notification: \w+", since=mark)
    [notice] = wait_for_mbox(mail.sender_mbox)
    check_report(notice, "bob@nowhere.example", "failed", "5.")
    assert "Status: 5.1.1" in notice.as_string()
    assert "gone" in notice.as_string()
    mail.wait_for_log(rf"postfix/qmgr\[\d+\]: {bob['id']}: removed$", since=mark)
    wait_queue_empty(mail)


def test_retry_transport_defers(mail):
    route(mail, "later.example retry:4.4.7 not yet\n")
    mark = mail.log_mark()
    send(mail, "bob@later.example")
    bob = mail.wait_for_log(status_line("bob@later.example"), since=mark)
    assert (bob["status"], bob["dsn"], bob["reason"]) == ("deferred", "4.4.7", "not yet")
    assert mail.wait_for_queue("deferred") == [bob["id"]]
    assert not mail.sender_mbox.exists()


def test_discard_transport_logs_sent_and_delivers_nothing(mail):
    route(mail, "quiet.example discard:silently dropped\nhush.example discard:\n")
    mark = mail.log_mark()
    send(mail, "bob@quiet.example", "carol@hush.example")
    bob = mail.wait_for_log(status_line("bob@quiet.example"), since=mark)
    assert (bob["status"], bob["dsn"], bob["reason"]) == ("sent", "2.0.0", "silently dropped")
    carol = mail.wait_for_log(status_line("carol@hush.example"), since=mark)
    assert (carol["status"], carol["dsn"], carol["reason"]) == ("sent", "2.0.0", "hush.example")
    mail.wait_for_log(rf"postfix/qmgr\[\d+\]: {bob['id']}: removed$", since=mark)
    wait_queue_empty(mail)
    log = mail.log_since(mark)
    assert not re.search(r"postfix/(local|smtp)\[", log), log
    assert "non-delivery notification" not in log
    assert not mail.sender_mbox.exists()


def test_renamed_services_use_the_agents(mail):
    """discard(8) serves any service name; error(8) knows only error and
    retry, and stops on any other (Postfix's "bad error service name"),
    so that its mail waits."""
    route(mail, "gone.example myerr:5.1.1 gone\ndrop.example mydiscard:2.7.0 dropped here\n", RENAMED_SERVICES)
    mark = mail.log_mark()
    send(mail, "bob@gone.example", "carol@drop.example")
    carol = mail.wait_for_log(status_line("carol@drop.example"), since=mark)
    assert (carol["program"], carol["status"], carol["dsn"], carol["reason"]) == ("discard", "sent", "2.7.0", "dropped here")
    mail.wait_for_log(r"postfix/error\[\d+\]: fatal: bad error service name: myerr$", since=mark)
    # bob waits in the queue (master throttles the service that failed to
    # start); carol is marked done in the queue file by discard(8).
    [path] = mail.all_queue_files()
    assert mail.envelope(path.name).get("recipient") == ["bob@gone.example"]
    assert not re.search(r"to=<bob@gone\.example>.*status=bounced", mail.log_since(mark))
    assert not mail.sender_mbox.exists()
