"""Who may send mail where: the relay matrix (client inside or outside
mynetworks x recipient local / relay_domains / elsewhere), relay tricks
in addresses, unknown local users, and every access(5) action through
check_client_access, check_helo_access, check_sender_access and
check_recipient_access with hash: tables built by postmap.

Clients outside mynetworks (127.0.0.1/32) connect from other 127/8
addresses; each access test has its own source address, HELO name,
sender or recipient as the table key, so one configuration serves the
whole module."""

import re

import pytest

from mailsystem import QUEUE_ID, free_port, mail, mail_system_fixture, wait_until  # noqa: F401

QUEUED = re.compile(rf"^2\.0\.0 Ok: queued as ({QUEUE_ID})$")
OUTSIDE = "127.0.0.2"
LOCAL_DOMAINS = {"test.example", "mail.test.example", "localhost", "localhost.test.example", "[127.0.0.1]"}

# Recipients that exist (aliases of root), one per test that needs a
# deliverable recipient of its own.
ALIASES = [
    "r-ok", "r-dunno", "r-reject", "r-text", "r-defer", "r-4nn", "r-5nn", "r-discard", "r-hold",
    "r-prepend", "r-redirect", "r-filter", "vip", "plain",
]

ACCESS = {
    # source address -> action, for check_client_access
    "client_access": {
        "127.0.0.10": "OK",
        "127.0.0.11": "REJECT",
        "127.0.0.12": "REJECT no clients from here",
        "127.0.0.13": "DEFER",
        "127.0.0.14": "450 4.7.9 come back later",
        "127.0.0.15": "553 bad neighbourhood",
        "127.0.0.16": "DUNNO",
        "127.0.0.17": "DISCARD",
        "127.0.0.18": "HOLD",
        "127.0.0.19": "PREPEND X-Client-Note: flagged",
    },
    "helo_access": {
        "reject.helo.example": "REJECT",
        "text.helo.example": "REJECT helo names like this are not welcome",
        "hold.helo.example": "HOLD",
        "prepend.helo.example": "PREPEND X-Helo-Note: from helo",
    },
    "sender_access": {
        "reject@sender.example": "REJECT",
        "defer@sender.example": "DEFER",
        "text@sender.example": "REJECT sender not wanted",
        "spam.example": "550 5.7.0 domain is blocked",
        "ok@sender.example": "OK",
        "discard@sender.example": "DISCARD",
        "redirect@sender.example": "REDIRECT catcher@test.example",
        "filter@sender.example": "FILTER smtp:[127.0.0.1]:10025",
    },
    "recipient_access": {
        "r-ok@test.example": "OK",
        "r-dunno@test.example": "DUNNO",
        "r-reject@test.example": "REJECT",
        "r-text@test.example": "REJECT mailbox closed",
        "r-defer@test.example": "DEFER",
        "r-4nn@test.example": "452 4.2.2 mailbox full",
        "r-5nn@test.example": "550 5.1.6 moved away",
        "r-discard@test.example": "DISCARD",
        "r-hold@test.example": "HOLD",
        "r-prepend@test.example": "PREPEND X-Rcpt-Note: noted",
        "r-redirect@test.example": "REDIRECT plain@test.example",
        "r-filter@test.example": "FILTER relay:[127.0.0.1]:10026",
        "vip@test.example": "friends_only",
    },
    "friends": {"friend@client.example": "OK"},
}


def setup(system):
    (system.config / "aliases").write_text("".join(f"{name}: root\n" for name in ["postmaster", *ALIASES]))
    result = system.run("postalias", f"hash:{system.config}/aliases")
    assert result.returncode == 0, result.stderr
    tables = {
        name: system.table(name, "".join(f"{k} {v}\n" for k, v in entries.items()))
        for name, entries in ACCESS.items()
    }
    system.postconf(
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
        f"smtpd_client_restrictions = check_client_access {tables['client_access']}",
        f"smtpd_helo_restrictions = check_helo_access {tables['helo_access']}",
        f"smtpd_sender_restrictions = check_sender_access {tables['sender_access']}",
        f"smtpd_recipient_restrictions = check_recipient_access {tables['recipient_access']}",
        "smtpd_restriction_classes = friends_only",
        f"friends_only = check_sender_access {tables['friends']}, reject",
        "smtpd_error_sleep_time = 0",
        "smtpd_soft_error_limit = 1000",
        "smtpd_hard_error_limit = 1000",
    )


mailsystem = mail_system_fixture(setup=setup)


def rcpt_reply(mail, rcpt, source=None, sender="s@client.example", helo="client.example"):
    with mail.raw(source) as c:
        c.expect(220)
        assert c.cmd(f"EHLO {helo}").code == 250
        c.send(f"MAIL FROM:<{sender}>\r\n")
        c.expect(250, "2.1.0 Ok")
        reply = c.cmd(f"RCPT TO:<{rcpt}>")
        c.send("QUIT\r\n")
        c.expect(221)
    return reply


def deliver(mail, rcpts, source=None, sender="s@client.example", helo="client.example"):
    """A whole transaction; returns (RCPT replies, queue ID or None)."""
    with mail.raw(source) as c:
        c.expect(220)
        assert c.cmd(f"EHLO {helo}").code == 250
        c.send(f"MAIL FROM:<{sender}>\r\n")
        c.expect(250, "2.1.0 Ok")
        replies = [c.cmd(f"RCPT TO:<{rcpt}>") for rcpt in rcpts]
        queue_id = None
        if any(r.code == 250 for r in replies):
            c.send("DATA\r\n")
            c.expect(354)
            c.send("Subject: relay test\r\n\r\nbody\r\n.\r\n")
            match = QUEUED.match(c.expect(250).lines[-1])
            assert match
            queue_id = match.group(1)
        c.send("QUIT\r\n")
        c.expect(221)
    return replies, queue_id


def denied(rcpt, shown=None):
    return (554, [f"5.7.1 <{shown or rcpt}>: Relay access denied"])


def as_tuple(reply):
    return reply.code, reply.lines


# --- the relay matrix -----------------------------------------------------------

MATRIX = [
    # (source, recipient, accepted)
    (None, "root@test.example", True),
    (None, "anyone@relay.example", True),
    (None, "anyone@other.example", True),
    (OUTSIDE, "root@test.example", True),
    (OUTSIDE, "anyone@relay.example", True),
    (OUTSIDE, "anyone@other.example", False),
]


@pytest.mark.parametrize("source,rcpt,accepted", MATRIX, ids=[f"{s or 'inside'}-{r}" for s, r, _ in MATRIX])
def test_relay_matrix(mail, source, rcpt, accepted):
    replies, queue_id = deliver(mail, [rcpt], source=source)
    if accepted:
        assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
        assert mail.envelope(queue_id)["recipient"] == [rcpt]
    else:
        assert as_tuple(replies[0]) == denied(rcpt)
        assert queue_id is None and mail.all_queue_files() == []


def test_default_relay_restrictions_defer(mail):
    """With Postfix's default smtpd_relay_restrictions
    (defer_unauth_destination) the refusal is temporary."""
    mail.run("postconf", "-X", "smtpd_relay_restrictions")
    mail.dirty = True
    mail.reload()
    reply = rcpt_reply(mail, "anyone@other.example", source=OUTSIDE)
    assert as_tuple(reply) == (454, ["4.7.1 <anyone@other.example>: Relay access denied"])


# Relay tricks from outside mynetworks, with the reply Postfix gives.
TRICKS = [
    ("user%other.example@test.example", denied("user%other.example@test.example")),
    ("other.example!user@test.example", denied("other.example!user@test.example")),
    ("@test.example:user@other.example", denied("user@other.example")),
    ("@test.example,@other.example:user@other.example", denied("user@other.example")),
    ('"user@other.example"@test.example', denied("user@other.example@test.example")),
    ('"user%other.example"@test.example', denied("user%other.example@test.example")),
    ('"user@other.example"', denied("user@other.example")),
    ("user@other.example@test.example", denied("user@other.example@test.example")),
    ("user%other.example%test.example@test.example", denied("user%other.example%test.example@test.example")),
    ("other.example!user%test.example@test.example", denied("other.example!user%test.example@test.example")),
    ("User%Other.Example@TEST.EXAMPLE", denied("User%Other.Example@TEST.EXAMPLE")),
    ("USER@OTHER.EXAMPLE", denied("USER@OTHER.EXAMPLE")),
    ("user@other.example.", denied("user@other.example.")),
    ("user@test.example.other.example", denied("user@test.example.other.example")),
    ("user@localhost.other.example", denied("user@localhost.other.example")),
    ("user@[10.1.2.3]", denied("user@[10.1.2.3]")),
    ("user@[IPv6:::1]", denied("user@[IPv6:::1]")),
    ("user@other.example%test.example", (501, ["5.1.3 Bad recipient address syntax"])),
    ("user@[127.0.0.1].other.example", (501, ["5.1.3 Bad recipient address syntax"])),
    ("user@127.0.0.1", (501, ["5.1.3 Bad recipient address syntax"])),
]

# Forms Postfix accepts because they do resolve to a local mailbox.
LOCAL_TRICKS = [
    "root@[127.0.0.1]",
    "root@test.example.",
    "ROOT@TEST.EXAMPLE",
    "root%test.example@test.example",
    "test.example!root@test.example",
    '"root"@test.example',
    "@other.example:root@test.example",
]


@pytest.mark.parametrize("rcpt,expected", TRICKS, ids=[t for t, _ in TRICKS])
def test_relay_tricks_are_refused(mail, rcpt, expected):
    replies, queue_id = deliver(mail, [rcpt], source=OUTSIDE)
    assert as_tuple(replies[0]) == expected
    assert queue_id is None


def resolve(address: str) -> str:
    """The domain an address finally goes to, as trivial-rewrite would
    see it (source route, %-hack, bang path)."""
    address = address.split(":")[-1].lower()
    local, _, domain = address.rpartition("@")
    local = local.strip('"')
    domain = domain.rstrip(".")
    while True:
        if "%" in local:
            local, _, domain = local.rpartition("%")
        elif "!" in local:
            domain, _, local = local.partition("!")
        else:
            return domain


def test_relay_tricks_that_resolve_locally_stay_local(mail):
    replies, queue_id = deliver(mail, LOCAL_TRICKS, source=OUTSIDE)
    assert [as_tuple(r) for r in replies] == [(250, ["2.1.5 Ok"])] * len(LOCAL_TRICKS)
    recipients = mail.envelope(queue_id)["recipient"]
    assert len(recipients) == len(LOCAL_TRICKS), recipients
    for recipient in recipients:
        assert resolve(recipient) in LOCAL_DOMAINS, recipient
        assert "other.example" not in recipient.lower().split("@")[-1], recipient


def test_unknown_local_user(mail):
    reply = rcpt_reply(mail, "nosuchuser@test.example")
    text = "5.1.1 <nosuchuser@test.example>: Recipient address rejected: User unknown in local recipient table"
    assert as_tuple(reply) == (550, [text])
    mail.postconf("show_user_unknown_table_name = no")
    mail.reload()
    reply = rcpt_reply(mail, "nosuchuser@test.example")
    assert as_tuple(reply) == (550, ["5.1.1 <nosuchuser@test.example>: Recipient address rejected: User unknown"])


# --- access(5) ------------------------------------------------------------------

CLIENT = "<unknown[{ip}]>: Client host rejected"

CLIENT_CASES = [
    ("127.0.0.11", (554, ["5.7.1 <unknown[127.0.0.11]>: Client host rejected: Access denied"])),
    ("127.0.0.12", (554, ["5.7.1 <unknown[127.0.0.12]>: Client host rejected: no clients from here"])),
    ("127.0.0.13", (450, ["4.7.1 <unknown[127.0.0.13]>: Client host rejected: Access denied"])),
    ("127.0.0.14", (450, ["4.7.9 <unknown[127.0.0.14]>: Client host rejected: come back later"])),
    ("127.0.0.15", (553, ["5.7.1 <unknown[127.0.0.15]>: Client host rejected: bad neighbourhood"])),
]


@pytest.mark.parametrize("source,expected", CLIENT_CASES, ids=[s for s, _ in CLIENT_CASES])
def test_client_access_refusals(mail, source, expected):
    mark = mail.log_mark()
    replies, queue_id = deliver(mail, ["root@test.example"], source=source)
    assert as_tuple(replies[0]) == expected
    code, lines = expected
    mail.wait_for_log(
        rf"NOQUEUE: reject: RCPT from unknown\[{re.escape(source)}\]: {code} {re.escape(lines[0])}; "
        r"from=<s@client\.example> to=<root@test\.example> proto=ESMTP helo=<client\.example>$",
        mark,
    )


def test_client_access_ok_and_dunno(mail):
    # OK ends the client restrictions; the relay check still applies.
    replies, queue_id = deliver(mail, ["root@test.example", "u@other.example"], source="127.0.0.10")
    assert [as_tuple(r) for r in replies] == [(250, ["2.1.5 Ok"]), denied("u@other.example")]
    assert queue_id in mail.queue_ids()
    replies, queue_id = deliver(mail, ["root@test.example"], source="127.0.0.16")
    assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
    assert queue_id in mail.queue_ids()


def test_discard_accepts_and_drops(mail):
    mark = mail.log_mark()
    for kwargs in ({"source": "127.0.0.17"}, {"sender": "discard@sender.example"}, {}):
        rcpt = "r-discard@test.example" if not kwargs else "root@test.example"
        replies, queue_id = deliver(mail, [rcpt], **kwargs)
        assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
        assert queue_id is not None
        wait_until(lambda: mail.all_queue_files() == [], 30, f"discarded {queue_id} to go")
    log = mail.wait_for_log(r"discard: RCPT from unknown\[127\.0\.0\.17\]: <unknown\[127\.0\.0\.17\]>: "
                            r"Client host triggers DISCARD action", mark)
    assert log


@pytest.mark.parametrize(
    "kwargs",
    [{"source": "127.0.0.18"}, {"helo": "hold.helo.example"}, {"rcpt": "r-hold@test.example"}],
    ids=["client", "helo", "recipient"],
)
def test_hold_puts_the_file_in_hold(mail, kwargs):
    kwargs = dict(kwargs)
    rcpt = kwargs.pop("rcpt", "root@test.example")
    replies, queue_id = deliver(mail, [rcpt], **kwargs)
    assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
    wait_until(lambda: queue_id in mail.queue_ids("hold"), 30, "the file in hold/")
    assert mail.queue_ids("incoming") == []
    assert mail.envelope(queue_id)["recipient"] == [rcpt]


@pytest.mark.parametrize(
    "kwargs,header",
    [
        ({"source": "127.0.0.19"}, "X-Client-Note: flagged"),
        ({"helo": "prepend.helo.example"}, "X-Helo-Note: from helo"),
        ({"rcpt": "r-prepend@test.example"}, "X-Rcpt-Note: noted"),
    ],
    ids=["client", "helo", "recipient"],
)
def test_prepend_adds_a_header(mail, kwargs, header):
    kwargs = dict(kwargs)
    rcpt = kwargs.pop("rcpt", "root@test.example")
    replies, queue_id = deliver(mail, [rcpt], **kwargs)
    assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
    headers = mail.postcat(queue_id, "-h").splitlines()
    assert header in headers, headers
    # Prepended above Postfix's own Received: header.
    assert headers.index(header) < next(i for i, h in enumerate(headers) if h.startswith("Received:"))


def test_redirect(mail):
    replies, queue_id = deliver(mail, ["root@test.example"], sender="redirect@sender.example")
    assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
    assert mail.envelope(queue_id)["redirect_to"] == ["catcher@test.example"]
    replies, queue_id = deliver(mail, ["r-redirect@test.example"])
    assert mail.envelope(queue_id)["redirect_to"] == ["plain@test.example"]


def test_filter(mail):
    replies, queue_id = deliver(mail, ["root@test.example"], sender="filter@sender.example")
    assert as_tuple(replies[0]) == (250, ["2.1.5 Ok"])
    assert mail.envelope(queue_id)["content_filter"] == ["smtp:[127.0.0.1]:10025"]
    replies, queue_id = deliver(mail, ["r-filter@test.example"])
    assert mail.envelope(queue_id)["content_filter"] == ["relay:[127.0.0.1]:10026"]


HELO_CASES = [
    ("reject.helo.example", (554, ["5.7.1 <reject.helo.example>: Helo command rejected: Access denied"])),
    ("text.helo.example", (554, ["5.7.1 <text.helo.example>: Helo command rejected: helo names like this are not welcome"])),
]

SENDER_CASES = [
    ("reject@sender.example", (554, ["5.7.1 <reject@sender.example>: Sender address rejected: Access denied"])),
    ("defer@sender.example", (450, ["4.7.1 <defer@sender.example>: Sender address rejected: Access denied"])),
    ("text@sender.example", (554, ["5.7.1 <text@sender.example>: Sender address rejected: sender not wanted"])),
    ("anyone@spam.example", (550, ["5.7.0 <anyone@spam.example>: Sender address rejected: domain is blocked"])),
]

RECIPIENT_CASES = [
    ("r-reject@test.example", (554, ["5.7.1 <r-reject@test.example>: Recipient address rejected: Access denied"])),
    ("r-text@test.example", (554, ["5.7.1 <r-text@test.example>: Recipient address rejected: mailbox closed"])),
    ("r-defer@test.example", (450, ["4.7.1 <r-defer@test.example>: Recipient address rejected: Access denied"])),
    ("r-4nn@test.example", (452, ["4.2.2 <r-4nn@test.example>: Recipient address rejected: mailbox full"])),
    ("r-5nn@test.example", (550, ["5.1.6 <r-5nn@test.example>: Recipient address rejected: moved away"])),
]


@pytest.mark.parametrize("helo,expected", HELO_CASES, ids=[h for h, _ in HELO_CASES])
def test_helo_access_refusals(mail, helo, expected):
    assert as_tuple(rcpt_reply(mail, "root@test.example", helo=helo)) == expected


@pytest.mark.parametrize("sender,expected", SENDER_CASES, ids=[s for s, _ in SENDER_CASES])
def test_sender_access_refusals(mail, sender, expected):
    assert as_tuple(rcpt_reply(mail, "root@test.example", sender=sender)) == expected


@pytest.mark.parametrize("rcpt,expected", RECIPIENT_CASES, ids=[r for r, _ in RECIPIENT_CASES])
def test_recipient_access_refusals(mail, rcpt, expected):
    assert as_tuple(rcpt_reply(mail, rcpt)) == expected


def test_access_ok_and_dunno_accept(mail):
    # Sender OK permits the sender stage only: unknown users and relaying
    # are still refused.
    replies, queue_id = deliver(
        mail, ["root@test.example", "nosuchuser@test.example", "u@other.example"], source=OUTSIDE, sender="ok@sender.example"
    )
    assert [r.code for r in replies] == [250, 550, 554]
    replies, queue_id = deliver(mail, ["r-ok@test.example", "r-dunno@test.example"])
    assert [as_tuple(r) for r in replies] == [(250, ["2.1.5 Ok"])] * 2
    assert mail.envelope(queue_id)["recipient"] == ["r-ok@test.example", "r-dunno@test.example"]


def test_restriction_class(mail):
    reply = rcpt_reply(mail, "vip@test.example", sender="friend@client.example")
    assert as_tuple(reply) == (250, ["2.1.5 Ok"])
    reply = rcpt_reply(mail, "vip@test.example", sender="stranger@client.example")
    assert as_tuple(reply) == (554, ["5.7.1 <vip@test.example>: Recipient address rejected: Access denied"])


# --- built-in restrictions ----------------------------------------------------------


def test_reject_non_fqdn_and_invalid_helo(mail):
    mail.postconf(
        "smtpd_helo_required = yes",
        "smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
        "smtpd_sender_restrictions = reject_non_fqdn_sender",
        "smtpd_recipient_restrictions = reject_non_fqdn_recipient",
    )
    mail.reload()
    reply = rcpt_reply(mail, "root@test.example", helo="nodots")
    assert as_tuple(reply) == (504, ["5.5.2 <nodots>: Helo command rejected: need fully-qualified hostname"])
    reply = rcpt_reply(mail, "root@test.example", helo="bad_name!.example")
    assert as_tuple(reply) == (501, ["5.5.2 <bad_name!.example>: Helo command rejected: Invalid name"])
    reply = rcpt_reply(mail, "root@test.example", sender="user@nodots")
    assert as_tuple(reply) == (504, ["5.5.2 <user@nodots>: Sender address rejected: need fully-qualified address"])
    reply = rcpt_reply(mail, "user@nodots")
    assert as_tuple(reply) == (504, ["5.5.2 <user@nodots>: Recipient address rejected: need fully-qualified address"])
    reply = rcpt_reply(mail, "root@test.example", helo="client.example")
    assert as_tuple(reply) == (250, ["2.1.5 Ok"])
    with mail.raw() as c:
        c.expect(220)
        c.send("MAIL FROM:<s@client.example>\r\n")
        c.expect(503, "5.5.1 Error: send HELO/EHLO first")


def test_reject_unauth_pipelining(mail):
    mail.postconf("smtpd_data_restrictions = reject_unauth_pipelining")
    mail.reload()
    mark = mail.log_mark()
    with mail.raw() as c:
        c.expect(220)
        # HELO, not EHLO: the client was never told PIPELINING exists.
        c.send("HELO client.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<root@test.example>\r\nDATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(250)
        c.expect(503, "5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining")
        c.send("QUIT\r\n")
        c.expect(221)
    mail.wait_for_log(r"improper command pipelining after HELO from localhost\[127\.0\.0\.1\]: "
                      r"MAIL FROM:<s@client\.example>\\r\\nRCPT TO:<root@test\.example>\\r\\nDATA\\r\\n$", mark)
    # The queue ID exists since the first accepted RCPT.
    mail.wait_for_log(rf"{QUEUE_ID}: reject: DATA from localhost\[127\.0\.0\.1\]: 503 5\.5\.0 <DATA>: Data command "
                      r"rejected: Improper use of SMTP command pipelining; from=<s@client\.example> to=<root@test\.example> proto=SMTP helo=<client\.example>", mark)
    # The same, one command at a time, is fine.
    replies, queue_id = deliver(mail, ["root@test.example"])
    assert queue_id in mail.queue_ids()


def test_mysql_table_down_is_a_temporary_failure(mail):
    port = free_port()  # nothing listens there
    cf = mail.config / "mysql-down.cf"
    cf.write_text(
        f"hosts = 127.0.0.1:{port}\nuser = postfix\npassword = secret\ndbname = mail\n"
        "query = SELECT action FROM access WHERE address = '%s'\n"
    )
    mail.postconf(f"smtpd_recipient_restrictions = check_recipient_access mysql:{cf}")
    mail.reload()
    mark = mail.log_mark()
    reply = rcpt_reply(mail, "root@test.example")
    # Postfix's reply to a table that cannot answer (its tcp: tables give
    # the same): a temporary error, never "not found".
    assert as_tuple(reply) == (451, ["4.3.5 <root@test.example>: Recipient address rejected: Server configuration error"])
    mail.wait_for_log(rf'warning: mysql:{re.escape(str(cf))} lookup error for "root@test\.example"', mark)
    mail.wait_for_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 451 4\.3\.5 <root@test\.example>: "
                      r"Recipient address rejected: Server configuration error;", mark)
