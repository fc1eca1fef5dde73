"""smtpd and the DNS, end to end: the client's names (PTR, then forward
confirmation) in `connect from` and the Received: header, and the
DNS-based restrictions (reject_unknown_*, reject_rbl_client,
reject_rhsbl_sender) with Postfix's replies for "not found" and for a
temporary failure.  A BIND named on a loopback port serves the zones,
dns_resolver_servers points smtpd at it, and clients connect from
127.0.0.x source addresses whose reverse zone the test writes."""

import re
import shutil

import pytest

from dns_server import NameServer
from mailsystem import QUEUE_ID, MailSystem, make_base

LOCAL = "root@test.example"
RELAYED = "u@outside.example"

ZONES = {
    "0.0.127.in-addr.arpa": (
        "2 PTR good.example.test.\n"  # confirmed by its A record
        "3 PTR forged.example.test.\n"  # its A record names another address
        "4 PTR nxhost.example.test.\n"  # no such name
        "5 PTR host.servfail.test.\n"  # the forward lookup fails
        # 127.0.0.6 has no PTR record
    ),
    "example.test": (
        "good A 127.0.0.2\n"
        "forged A 127.0.0.99\n"
        "client A 127.0.0.9\n"
        "maildomain MX 10 client\n"
        "nullmx MX 0 .\n"
    ),
    "rbl.test": '2.0.0.127 A 127.0.0.2\n2.0.0.127 TXT "Listed for testing"\n',
    "rhsbl.test": 'spam.example.test A 127.0.0.2\nspam.example.test TXT "Spam domain"\n',
}
# 127.0.1.x clients: their reverse zone answers SERVFAIL.
BROKEN = ["servfail.test", "1.0.127.in-addr.arpa"]


@pytest.fixture(scope="module")
def world(built, mail_accounts):
    base = make_base("pfx-smtpd-dns-")
    ns = NameServer(base, ZONES, broken=BROKEN)
    ns.start()
    system = MailSystem(base, mail_accounts)
    try:
        system.postconf(f"dns_resolver_servers = {ns.address}")
        system.baseline_main_cf = (system.config / "main.cf").read_bytes()
        system.start()
        yield system
    finally:
        system.stop()
        ns.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mail(world):
    world.reset()
    return world


def configure(mail, *settings):
    mail.postconf(*settings)
    mail.reload()


def rcpt_reply(mail, source, helo="client.example.test", sender="<s@maildomain.example.test>", rcpt=LOCAL):
    """The reply to RCPT TO after EHLO and MAIL FROM from `source`."""
    with mail.raw(source) as c:
        c.expect(220)
        assert c.cmd(f"EHLO {helo}").code == 250
        reply = c.cmd(f"MAIL FROM:{sender}")
        assert reply.code == 250, reply
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        c.cmd("QUIT")
    return f"{reply.code} {reply.text}"


def queue_one(mail, source) -> str:
    """A message accepted from `source`; its queue ID."""
    with mail.dialog(source) as c:
        assert c.cmd("MAIL FROM:<s@maildomain.example.test>").code == 250
        assert c.cmd(f"RCPT TO:<{LOCAL}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: t\r\n\r\nhello\r\n.\r\n")
        reply = c.expect(250)
        match = re.search(rf"queued as ({QUEUE_ID})", reply.text)
        assert match, reply
        c.cmd("QUIT")
    return match.group(1)


# --- the client's names ---------------------------------------------------------


def test_confirmed_name_in_log_and_received_header(mail):
    mark = mail.log_mark()
    queue_id = queue_one(mail, "127.0.0.2")
    mail.wait_for_log(r"smtpd\[\d+\]: connect from good\.example\.test\[127\.0\.0\.2\]$", mark)
    header = mail.postcat(queue_id, "-h")
    assert "Received: from client.example (good.example.test [127.0.0.2])" in header, header


def test_forged_name_is_unknown_with_a_warning(mail):
    mark = mail.log_mark()
    queue_id = queue_one(mail, "127.0.0.3")
    mail.wait_for_log(
        r"warning: hostname forged\.example\.test does not resolve to address 127\.0\.0\.3$", mark
    )
    mail.wait_for_log(r"connect from unknown\[127\.0\.0\.3\]$", mark)
    header = mail.postcat(queue_id, "-h")
    assert "Received: from client.example (unknown [127.0.0.3])" in header, header


def test_forward_lookup_failures_are_logged_with_the_resolver_error(mail):
    mark = mail.log_mark()
    for source in ("127.0.0.4", "127.0.0.5"):
        with mail.raw(source) as c:
            c.expect(220)
            c.cmd("QUIT")
    mail.wait_for_log(
        r"warning: hostname nxhost\.example\.test does not resolve to address 127\.0\.0\.4: "
        r"Name or service not known$",
        mark,
    )
    mail.wait_for_log(
        r"warning: hostname host\.servfail\.test does not resolve to address 127\.0\.0\.5: "
        r"Temporary failure in name resolution$",
        mark,
    )
    mail.wait_for_log(r"connect from unknown\[127\.0\.0\.5\]$", mark)


# --- reject_unknown_client_hostname, reject_unknown_reverse_client_hostname -----


def test_reject_unknown_client_hostname(mail):
    configure(mail, "smtpd_client_restrictions = reject_unknown_client_hostname")
    assert rcpt_reply(mail, "127.0.0.2") == "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.3") == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.3]"
    )
    configure(mail, "unknown_client_reject_code = 550")
    assert rcpt_reply(mail, "127.0.0.3") == (
        "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.3]"
    )
    # A lookup that failed temporarily is never a 5xx.
    assert rcpt_reply(mail, "127.0.0.5") == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.5]"
    )
    assert rcpt_reply(mail, "127.0.1.2") == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.1.2]"
    )


def test_reject_unknown_reverse_client_hostname(mail):
    configure(
        mail,
        "smtpd_client_restrictions = reject_unknown_reverse_client_hostname",
        "unknown_client_reject_code = 550",
    )
    # A forged name is still a reverse name.
    assert rcpt_reply(mail, "127.0.0.3") == "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.6") == (
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.6]"
    )
    assert rcpt_reply(mail, "127.0.1.2") == (
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.1.2]"
    )


# --- reject_unknown_helo_hostname ----------------------------------------------


def test_reject_unknown_helo_hostname(mail):
    configure(mail, "smtpd_helo_restrictions = reject_unknown_helo_hostname")
    assert rcpt_reply(mail, "127.0.0.2", helo="client.example.test") == "250 2.1.5 Ok"
    # An MX record will do, and so will a null MX.
    assert rcpt_reply(mail, "127.0.0.2", helo="maildomain.example.test") == "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.2", helo="nullmx.example.test") == "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.2", helo="nosuch.example.test") == (
        "450 4.7.1 <nosuch.example.test>: Helo command rejected: Host not found"
    )
    configure(mail, "unknown_hostname_reject_code = 550")
    assert rcpt_reply(mail, "127.0.0.2", helo="nosuch.example.test") == (
        "550 5.7.1 <nosuch.example.test>: Helo command rejected: Host not found"
    )


def test_helo_tempfail_is_defer_if_permit(mail):
    configure(mail, "smtpd_helo_restrictions = reject_unknown_helo_hostname")
    deferred = "450 4.7.1 <host.servfail.test>: Helo command rejected: Host not found"
    # What would be accepted is deferred; what is refused anyway stays refused.
    assert rcpt_reply(mail, "127.0.0.2", helo="host.servfail.test") == deferred
    assert rcpt_reply(mail, "127.0.0.2", helo="host.servfail.test", rcpt=RELAYED) == (
        f"454 4.7.1 <{RELAYED}>: Relay access denied"
    )
    configure(
        mail,
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
        "unknown_hostname_reject_code = 550",
    )
    assert rcpt_reply(mail, "127.0.0.2", helo="host.servfail.test", rcpt=RELAYED) == (
        f"554 5.7.1 <{RELAYED}>: Relay access denied"
    )
    assert rcpt_reply(mail, "127.0.0.2", helo="host.servfail.test") == deferred


# --- reject_unknown_sender_domain, reject_unknown_recipient_domain -------------


def test_reject_unknown_sender_domain(mail):
    configure(mail, "smtpd_sender_restrictions = reject_unknown_sender_domain")
    ok = "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@maildomain.example.test>") == ok
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@good.example.test>") == ok
    assert rcpt_reply(mail, "127.0.0.2", sender="<>") == ok
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@nosuch.example.test>") == (
        "450 4.1.8 <s@nosuch.example.test>: Sender address rejected: Domain not found"
    )
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@nullmx.example.test>") == (
        "550 5.7.27 <s@nullmx.example.test>: Sender address rejected: "
        "Domain nullmx.example.test does not accept mail (nullMX)"
    )
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@servfail.test>") == (
        "450 4.1.8 <s@servfail.test>: Sender address rejected: Domain not found"
    )
    configure(mail, "unknown_address_reject_code = 550")
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@nosuch.example.test>") == (
        "550 5.1.8 <s@nosuch.example.test>: Sender address rejected: Domain not found"
    )
    # Still 4xx when the DNS could not say.
    assert rcpt_reply(mail, "127.0.0.2", sender="<s@servfail.test>") == (
        "450 4.1.8 <s@servfail.test>: Sender address rejected: Domain not found"
    )


def test_reject_unknown_recipient_domain(mail):
    configure(
        mail,
        "smtpd_relay_restrictions = permit",
        "smtpd_recipient_restrictions = reject_unknown_recipient_domain",
        "unknown_address_reject_code = 550",
    )
    assert rcpt_reply(mail, "127.0.0.2", rcpt="u@maildomain.example.test") == "250 2.1.5 Ok"
    assert rcpt_reply(mail, "127.0.0.2", rcpt="u@nosuch.example.test") == (
        "550 5.1.2 <u@nosuch.example.test>: Recipient address rejected: Domain not found"
    )
    assert rcpt_reply(mail, "127.0.0.2", rcpt="u@nullmx.example.test") == (
        "556 5.1.10 <u@nullmx.example.test>: Recipient address rejected: "
        "Domain nullmx.example.test does not accept mail (nullMX)"
    )
    assert rcpt_reply(mail, "127.0.0.2", rcpt="u@servfail.test") == (
        "450 4.1.2 <u@servfail.test>: Recipient address rejected: Domain not found"
    )


# --- DNS block lists -------------------------------------------------------------


def test_reject_rbl_client(mail):
    configure(mail, "smtpd_client_restrictions = reject_rbl_client rbl.test")
    assert rcpt_reply(mail, "127.0.0.2") == (
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using rbl.test; "
        "Listed for testing"
    )
    assert rcpt_reply(mail, "127.0.0.3") == "250 2.1.5 Ok"
    configure(mail, "maps_rbl_reject_code = 550")
    assert rcpt_reply(mail, "127.0.0.2").startswith("550 5.7.1 Service unavailable; ")


def test_unreachable_rbl_lists_no_one(mail):
    configure(mail, "smtpd_client_restrictions = reject_rbl_client servfail.test")
    mark = mail.log_mark()
    assert rcpt_reply(mail, "127.0.0.2") == "250 2.1.5 Ok"
    mail.wait_for_log(r"warning: 2\.0\.0\.127\.servfail\.test: RBL lookup error: ", mark)


def test_reject_rhsbl_sender(mail):
    configure(mail, "smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.test")
    assert rcpt_reply(mail, "127.0.0.2", sender="<u@spam.example.test>") == (
        "554 5.7.1 Service unavailable; Sender address [u@spam.example.test] blocked using "
        "rhsbl.test; Spam domain"
    )
    assert rcpt_reply(mail, "127.0.0.2", sender="<u@maildomain.example.test>") == "250 2.1.5 Ok"
