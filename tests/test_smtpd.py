"""smtpd end to end: a real instance (master, smtpd, cleanup) on a
loopback port, driven by smtplib, swaks and raw sockets; every reply is
compared with the code and text Postfix gives, and accepted mail is read
back from incoming/ with postcat (there is no qmgr to move it on)."""

import re
import smtplib
import socket
import time

import pytest

from mailsystem import HOSTNAME, QUEUE_ID, mail, mail_system_fixture, wait_until  # noqa: F401

mailsystem = mail_system_fixture()

LOCAL = "root@test.example"
QUEUED = re.compile(rf"^2\.0\.0 Ok: queued as ({QUEUE_ID})$")
QUEUED_BDAT = re.compile(rf"^2\.0\.0 Ok: \d+ bytes queued as ({QUEUE_ID})$")


def transaction(c, sender="<sender@client.example>", rcpts=(f"<{LOCAL}>",), body=b"Subject: t\r\n\r\nhello\r\n"):
    """MAIL, RCPT..., DATA, body, end of data on a raw client; returns the
    queue ID from the 250 reply."""
    assert c.cmd(f"MAIL FROM:{sender}").code == 250
    for rcpt in rcpts:
        reply = c.cmd(f"RCPT TO:{rcpt}")
        assert reply.code == 250, reply
    reply = c.cmd("DATA")
    assert reply.code == 354, reply
    c.send(body + b".\r\n")
    reply = c.expect(250)
    match = QUEUED.match(reply.lines[-1])
    assert match, reply
    return match.group(1)


def content(mail, queue_id) -> str:
    return mail.postcat(queue_id, "-b", "-h")


# --- greeting, EHLO, simple commands --------------------------------------------


def test_greeting_is_the_banner(mail):
    with mail.raw() as c:
        c.expect(220, f"{HOSTNAME} ESMTP Postfix")
    mail.postconf("smtpd_banner = $myhostname ESMTP custom banner")
    mail.reload()
    with mail.raw() as c:
        c.expect(220, f"{HOSTNAME} ESMTP custom banner")


def test_ehlo_keywords(mail):
    with mail.raw() as c:
        c.expect(220)
        reply = c.cmd("EHLO client.example")
        assert reply.code == 250
        assert reply.lines == [
            HOSTNAME,
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ]
        assert c.cmd("HELO client.example").lines == [HOSTNAME]
    mail.postconf("smtpd_discard_ehlo_keywords = pipelining, dsn, chunking", "message_size_limit = 5000")
    mail.reload()
    with mail.raw() as c:
        c.expect(220)
        reply = c.cmd("EHLO client.example")
        assert reply.lines == [HOSTNAME, "SIZE 5000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"]


def test_simple_commands(mail):
    with mail.raw() as c:
        c.expect(220)
        # smtpd_helo_required = no: MAIL before EHLO is fine.
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(250, "2.1.0 Ok")
        assert c.cmd("EHLO client.example").code == 250  # resets the transaction
        c.send("RCPT TO:<root@test.example>\r\n")
        c.expect(503, "5.5.1 Error: need MAIL command")
        c.send("DATA\r\n")
        c.expect(503, "5.5.1 Error: need RCPT command")
        c.send("FOO bar\r\n")
        c.expect(500, "5.5.2 Error: command not recognized")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")
        c.send("RSET\r\n")
        c.expect(250, "2.0.0 Ok")
        c.send("VRFY root\r\n")
        c.expect(252, "2.0.0 root")
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(250, "2.1.0 Ok")
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(503, "5.5.1 Error: nested MAIL command")
        c.send("DATA\r\n")
        c.expect(554, "5.5.1 Error: no valid recipients")
        c.send("QUIT\r\n")
        c.expect(221, "2.0.0 Bye")
        assert c.closed()


def test_syntax_errors_501(mail):
    with mail.raw() as c:
        c.expect(220)
        c.send("EHLO\r\n")
        c.expect(501, "Syntax: EHLO hostname")
        c.send("HELO\r\n")
        c.expect(501, "Syntax: HELO hostname")
        assert c.cmd("EHLO client.example").code == 250
        c.send("MAIL\r\n")
        c.expect(501, "5.5.4 Syntax: MAIL FROM:<address>")
        c.send("MAIL FROM:<a b@client.example\r\n")
        c.expect(501, "5.1.7 Bad sender address syntax")
        c.send("MAIL FROM:<a@client.example> FOO=bar\r\n")
        c.expect(555, "5.5.4 Unsupported option: FOO=bar")
        c.send("MAIL FROM:<a@client.example> BODY=9BIT\r\n")
        c.expect(555, "5.5.4 Unsupported option: BODY=9BIT")
        c.send("MAIL FROM:<a@client.example> SIZE=abc\r\n")
        c.expect(501, "5.5.4 Bad message size syntax")
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(250)
        c.send("RCPT\r\n")
        c.expect(501, "5.5.4 Syntax: RCPT TO:<address>")
        c.send("RCPT TO:<root@test.example\r\n")
        c.expect(501, "5.1.3 Bad recipient address syntax")
        c.send("RCPT TO:<root@test.example> NOTIFY=SOMETIMES\r\n")
        c.expect(501, "5.5.4 Error: Bad NOTIFY parameter syntax")
        c.send("VRFY\r\n")
        c.expect(501, "5.5.4 Syntax: VRFY address [SMTPUTF8]")
        c.send("RSET\r\nETRN\r\n")
        c.expect(250, "2.0.0 Ok")
        c.expect(500, "Syntax: ETRN domain")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")


def test_vrfy_disabled_and_etrn(mail):
    mail.postconf("disable_vrfy_command = yes")
    mail.reload()
    with mail.raw() as c:
        c.expect(220)
        reply = c.cmd("EHLO client.example")
        assert "VRFY" not in reply.lines
        c.send("VRFY root\r\n")
        c.expect(502, "5.5.1 VRFY command is disabled")
        # Not in fast_flush_domains ($relay_domains).
        c.send("ETRN other.example\r\n")
        c.expect(459, "<other.example>: service unavailable")
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(250)
        c.send("ETRN relay.example\r\n")
        c.expect(503, "Error: MAIL transaction in progress")


def test_full_transaction_is_queued_and_logged(mail):
    mark = mail.log_mark()
    client = mail.smtp()
    client.ehlo("client.example")
    body = "From: Sender <sender@client.example>\r\nTo: root@test.example\r\nSubject: first\r\nMessage-ID: <m1.test@client.example>\r\n\r\nline one\r\nline two\r\n"
    client.mail("sender@client.example")
    assert client.rcpt(LOCAL) == (250, b"2.1.5 Ok")
    code, text = client.data(body)
    assert code == 250
    queue_id = QUEUED.match(text.decode()).group(1)
    assert client.quit() == (221, b"2.0.0 Bye")

    assert mail.queue_ids("incoming") == [queue_id]
    envelope = mail.envelope(queue_id)
    assert envelope["sender"] == ["sender@client.example"]
    assert envelope["recipient"] == [LOCAL]
    text = mail.postcat(queue_id)
    received = re.search(
        rf"^Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\n"
        rf"\tby {re.escape(HOSTNAME)} \(Postfix\) with ESMTP id {queue_id}\n"
        rf"\tfor <root@test\.example>; \w{{3}}, [ \d]\d \w{{3}} \d{{4}} \d\d:\d\d:\d\d [+-]\d{{4}} \(\w+\)$",
        text,
        re.M,
    )
    assert received, text
    assert "Subject: first\n" in text
    assert "\nline one\nline two\n" in text

    mail.wait_for_log(r"disconnect from localhost\[127\.0\.0\.1\]", mark)
    log = mail.log_since(mark)
    assert re.search(r"postfix/smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]$", log, re.M), log
    assert re.search(rf"postfix/smtpd\[\d+\]: {queue_id}: client=localhost\[127\.0\.0\.1\]$", log, re.M), log
    assert re.search(rf"postfix/cleanup\[\d+\]: {queue_id}: message-id=<m1\.test@client\.example>$", log, re.M), log
    assert re.search(
        r"postfix/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] "
        r"ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$",
        log,
        re.M,
    ), log


def test_bare_sender_is_qualified_with_myorigin(mail):
    with mail.dialog() as c:
        c.send("mail from:<root>\r\nrcpt to:<root>\r\ndata\r\n")
        c.expect(250, "2.1.0 Ok")
        c.expect(250, "2.1.5 Ok")
        c.expect(354)
        c.send("Subject: bare\r\n\r\nx\r\n.\r\n")
        queue_id = QUEUED.match(c.expect(250).lines[-1]).group(1)
    envelope = mail.envelope(queue_id)
    assert envelope["sender"] == ["root@test.example"]
    assert envelope["recipient"] == ["root@test.example"]
    # Postfix adds the missing header fields from the envelope.
    text = content(mail, queue_id)
    assert "From: root@test.example\n" in text
    assert re.search(rf"^Message-Id: <\d{{14}}\.{queue_id}@{re.escape(HOSTNAME)}>$", text, re.M), text


def test_swaks_transactions(mail):
    result = mail.swaks("--from", "alice@client.example", "--to", "root@test.example", "--helo", "swaks.example",
                        "--header", "Subject: via swaks", "--body", "swaks body line")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(rf"<-  250 2\.0\.0 Ok: queued as ({QUEUE_ID})", result.stdout)
    assert match, result.stdout
    text = mail.postcat(match.group(1))
    assert "sender: alice@client.example" in text
    assert "recipient: root@test.example" in text
    assert "Subject: via swaks" in text and "swaks body line" in text
    assert "Received: from swaks.example (localhost [127.0.0.1])" in text

    # A refused recipient: swaks reports it and exits 24.
    result = mail.swaks("--from", "alice@client.example", "--to", "nobody@other.example", "--helo", "swaks.example",
                        "--local-interface", "127.0.0.2")
    assert result.returncode == 24, result.stdout
    assert "<** 454 4.7.1 <nobody@other.example>: Relay access denied" in result.stdout


def test_pipelining_replies_in_order(mail):
    with mail.raw(source="127.0.0.2") as c:
        c.expect(220)
        c.send(
            b"EHLO client.example\r\nMAIL FROM:<p@client.example>\r\nRCPT TO:<root@test.example>\r\n"
            b"RCPT TO:<nosuchuser@test.example>\r\nRCPT TO:<u@other.example>\r\nDATA\r\n"
        )
        assert c.reply().code == 250
        c.expect(250, "2.1.0 Ok")
        c.expect(250, "2.1.5 Ok")
        c.expect(550, "5.1.1 <nosuchuser@test.example>: Recipient address rejected: User unknown in local recipient table")
        c.expect(454, "4.7.1 <u@other.example>: Relay access denied")
        c.expect(354, "End data with <CR><LF>.<CR><LF>")
        c.send(b"Subject: p\r\n\r\npipelined\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n")
        queue_id = QUEUED.match(c.expect(250).lines[-1]).group(1)
        c.expect(250, "2.0.0 Ok")
        c.expect(250, "2.0.0 Ok")
        c.expect(221, "2.0.0 Bye")
    assert mail.envelope(queue_id)["recipient"] == [LOCAL]


def test_dot_stuffing_round_trip(mail):
    body = b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n. \r\n..\r\nend\r\n"
    with mail.dialog() as c:
        queue_id = transaction(c, body=body)
    text = content(mail, queue_id)
    assert "\n.leading dot\n..two dots\n \n.\nend\n" in text, text


def test_8bit_and_smtputf8_kept_byte_for_byte(mail):
    body8 = b"Subject: 8bit\r\n\r\ncaf\xc3\xa9 \xff\xfe latin \xe9t\xe9\r\n"
    with mail.dialog() as c:
        queue_id = transaction(c, sender="<s@client.example> BODY=8BITMIME", body=body8)
    assert b"caf\xc3\xa9 \xff\xfe latin \xe9t\xe9\n" in mail.postcat_bytes(queue_id, "-b")

    bodyu = "Subject: gr\u00fc\u00dfe\r\nFrom: J\u00f6rg <j\u00f6rg@b\u00fccher.example>\r\n\r\n\u65e5\u672c\u8a9e\r\n".encode()
    with mail.dialog() as c:
        queue_id = transaction(
            c,
            sender="<j\u00f6rg@b\u00fccher.example> SMTPUTF8 BODY=8BITMIME",
            rcpts=("<root@test.example>",),
            body=bodyu,
        )
    raw = mail.postcat_bytes(queue_id)
    assert "sender: j\u00f6rg@b\u00fccher.example".encode() in raw
    assert "\u65e5\u672c\u8a9e\n".encode() in raw
    assert "Subject: gr\u00fc\u00dfe\n".encode() in raw


def bdat(c, chunk: bytes, last: bool = False):
    c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)


def test_bdat(mail):
    with mail.dialog() as c:
        c.send("MAIL FROM:<b@client.example>\r\nRCPT TO:<root@test.example>\r\n")
        c.expect(250)
        c.expect(250)
        bdat(c, b"Subject: chunked\r\n\r\n")
        c.expect(250, "2.0.0 Ok: 20 bytes")
        bdat(c, b"body\r\n.\r\nend", last=True)
        queue_id = QUEUED_BDAT.match(c.expect(250).lines[-1]).group(1)

        c.send("MAIL FROM:<b@client.example>\r\nRCPT TO:<root@test.example>\r\n")
        c.expect(250)
        c.expect(250)
        bdat(c, b"Subject: y\r\n\r\nbody\r\n")
        c.expect(250, "2.0.0 Ok: 20 bytes")
        c.send("DATA\r\n")
        c.expect(503, "5.5.1 Error: DATA after BDAT")
        # An empty last chunk ends the message.
        c.send("BDAT 0 LAST\r\n")
        second = QUEUED_BDAT.match(c.expect(250).lines[-1]).group(1)
        # BDAT without a transaction; the chunk is read and discarded.
        bdat(c, b"xxxxx")
        c.expect(503, "5.5.1 Error: need RCPT command")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")
        # A BDAT command that cannot be parsed: the chunk boundary is lost,
        # so the session ends.
        c.send("BDAT abc\r\n")
        c.expect(521, "5.5.4 Syntax: BDAT count [LAST]")
        assert c.closed()
    text = content(mail, queue_id)
    assert "Subject: chunked\n" in text
    # BDAT data is not dot-stuffed: the "." line is content.
    assert "\nbody\n.\nend" in text
    assert sorted(mail.queue_ids()) == sorted([queue_id, second])


def test_message_size_limit(mail):
    mail.postconf("message_size_limit = 2000")
    mail.reload()
    with mail.dialog() as c:
        c.send("MAIL FROM:<s@client.example> SIZE=2001\r\n")
        c.expect(552, "5.3.4 Message size exceeds fixed limit")
        c.send("MAIL FROM:<s@client.example> SIZE=1000\r\n")
        c.expect(250, "2.1.0 Ok")
        c.send("RCPT TO:<root@test.example>\r\nDATA\r\n")
        c.expect(250)
        c.expect(354)
        c.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 40 + b".\r\n")
        c.expect(552, "5.3.4 Error: message file too big")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")
    wait_until(lambda: mail.all_queue_files() == [], 30, "the refused message's file to go")


def test_recipient_limit(mail):
    mail.postconf("smtpd_recipient_limit = 3")
    mail.reload()
    rcpts = ["root@test.example", "root@mail.test.example", "root@localhost"]
    with mail.dialog() as c:
        c.send("MAIL FROM:<s@client.example>\r\n")
        c.expect(250)
        for rcpt in rcpts:
            c.send(f"RCPT TO:<{rcpt}>\r\n")
            c.expect(250, "2.1.5 Ok")
        c.send("RCPT TO:<root@localhost.test.example>\r\n")
        c.expect(452, "4.5.3 Error: too many recipients")
        c.send("DATA\r\n")
        c.expect(354)
        c.send("Subject: limit\r\n\r\nx\r\n.\r\n")
        queue_id = QUEUED.match(c.expect(250).lines[-1]).group(1)
    assert mail.envelope(queue_id)["recipient"] == rcpts


def test_long_lines(mail):
    """A command longer than line_length_limit is cut there (the rest is
    thrown away); a long body line is kept whole."""
    with mail.dialog() as c:
        c.send(b"NOOP " + b"a" * 5000 + b"\r\n")
        c.expect(250, "2.0.0 Ok")
        c.send(b"MAIL FROM:<" + b"a" * 5000 + b"@client.example>\r\n")
        c.expect(501, "5.1.7 Bad sender address syntax")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")
        long_line = b"z" * 10000
        queue_id = transaction(c, body=b"Subject: long\r\n\r\n" + long_line + b"\r\nafter\r\n")
    assert b"\n" + long_line + b"\nafter\n" in mail.postcat_bytes(queue_id, "-b")


def test_nul_and_garbage_get_errors_and_the_session_goes_on(mail):
    with mail.dialog() as c:
        c.send(b"\xff\xfe\x80 \x01garbage\r\n")
        c.expect(500, "5.5.2 Error: bad UTF-8 syntax")
        c.send(b"MAIL FROM:<a\x00b@client.example>\r\n")
        c.expect(501, "5.1.7 Bad sender address syntax")
        c.send(b"\x00\x00\x00\r\n")
        c.expect(500, "5.5.2 Error: bad syntax")
        c.send("NOOP\r\n")
        c.expect(250, "2.0.0 Ok")
        queue_id = transaction(c, body=b"Subject: nul\r\n\r\nbefore\x00after\r\n")
    assert queue_id in mail.queue_ids()


def test_hard_error_limit(mail):
    mail.postconf("smtpd_hard_error_limit = 3", "smtpd_soft_error_limit = 1", "smtpd_error_sleep_time = 0")
    mail.reload()
    mark = mail.log_mark()
    with mail.dialog() as c:
        for _ in range(3):
            c.send("BOGUS\r\n")
            c.expect(500, "5.5.2 Error: command not recognized")
        c.send("BOGUS\r\n")
        c.expect(421, f"4.7.0 {HOSTNAME} Error: too many errors")
        assert c.closed()
    mail.wait_for_log(r"too many errors after UNKNOWN from localhost\[127\.0\.0\.1\]", mark)


def test_ten_thousand_recipients(mail):
    mail.postconf("smtpd_recipient_limit = 20000", "smtpd_hard_error_limit = 100000", "smtpd_error_sleep_time = 0",
                  "smtpd_soft_error_limit = 100000")
    mail.reload()
    with mail.dialog(source="127.0.0.2") as c:
        c.send("MAIL FROM:<s@client.example>\r\n")
        c.expect(250)
        batch = 500
        for start in range(0, 10000, batch):
            c.send(b"".join(f"RCPT TO:<u{n}@other.example>\r\n".encode() for n in range(start, start + batch)))
            for n in range(start, start + batch):
                c.expect(454, f"4.7.1 <u{n}@other.example>: Relay access denied")
        c.send("RCPT TO:<root@test.example>\r\nDATA\r\n")
        c.expect(250, "2.1.5 Ok")
        c.expect(354)
        c.send("Subject: many\r\n\r\nx\r\n.\r\n")
        assert QUEUED.match(c.expect(250).lines[-1])


def test_idle_client_times_out_while_another_is_served(mail):
    mail.postconf("smtpd_timeout = 2s")
    mail.reload()
    mark = mail.log_mark()
    idle = mail.raw()
    idle.expect(220)
    try:
        with mail.dialog() as busy:
            queue_id = transaction(busy)
            busy.send("QUIT\r\n")
            busy.expect(221)
        idle.sock.settimeout(120)
        idle.expect(421, f"4.4.2 {HOSTNAME} Error: timeout exceeded")
        assert idle.closed()
    finally:
        idle.close()
    assert queue_id in mail.queue_ids()
    mail.wait_for_log(r"timeout after CONNECT from localhost\[127\.0\.0\.1\]", mark)


def test_disconnect_mid_data_leaves_no_file(mail):
    before = set(p.name for p in mail.queue.rglob("*"))
    mark = mail.log_mark()
    c = mail.dialog()
    c.send("MAIL FROM:<s@client.example>\r\nRCPT TO:<root@test.example>\r\nDATA\r\n")
    c.expect(250)
    c.expect(250)
    c.expect(354)
    c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 2000)
    c.close()
    mail.wait_for_log(r"lost connection after DATA .*from localhost\[127\.0\.0\.1\]", mark)
    mail.wait_for_log(r"disconnect from localhost\[127\.0\.0\.1\]", mark)
    wait_until(lambda: mail.all_queue_files() == [], 30, f"the partial file to go: {mail.all_queue_files()}")
    wait_until(lambda: set(p.name for p in mail.queue.rglob("*")) == before, 30, "no new file in the queue tree")


SMUGGLING = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.mark.parametrize("ending", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_never_yields_a_second_message(mail, ending):
    """From outside mynetworks (smtpd_forbid_bare_newline_exclusions
    exempts $mynetworks)."""
    smuggled = (
        b"MAIL FROM:<admin@test.example>\r\nRCPT TO:<root@test.example>\r\nDATA\r\n"
        b"From: admin@test.example\r\nSubject: smuggled\r\n\r\nevil\r\n"
    )
    with mail.dialog(source="127.0.0.2") as c:
        c.send("MAIL FROM:<s@client.example>\r\nRCPT TO:<root@test.example>\r\nDATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.send(b"Subject: outer\r\n\r\nouter body" + ending + smuggled + b".\r\n")
        replies = [c.reply()]
        c.send("QUIT\r\n")
        while (reply := c.reply()) is not None:
            replies.append(reply)
    # One reply to the whole DATA (queued, or refused), then Bye: no
    # reply to a smuggled MAIL/RCPT/DATA.
    assert len(replies) == 2 and replies[1].code == 221, replies
    queued = [r for r in replies if r.code == 250 and "queued as" in r.lines[-1]]
    ids = mail.queue_ids("incoming") + mail.queue_ids("hold")
    assert len(ids) == len(queued) <= 1, (ids, replies)
    for queue_id in ids:
        assert mail.envelope(queue_id)["sender"] == ["s@client.example"]


def test_relay_reject_log_line(mail):
    mail.postconf("mynetworks = 127.0.0.2/32")
    mail.reload()
    mark = mail.log_mark()
    with mail.dialog() as c:
        c.send("MAIL FROM:<s@client.example>\r\n")
        c.expect(250)
        c.send("RCPT TO:<u@other.example>\r\n")
        c.expect(454, "4.7.1 <u@other.example>: Relay access denied")
        c.send("QUIT\r\n")
        c.expect(221)
    mail.wait_for_log(r"disconnect from", mark)
    log = mail.log_since(mark)
    assert re.search(
        r"postfix/smtpd\[\d+\]: NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 454 4\.7\.1 "
        r"<u@other\.example>: Relay access denied; from=<s@client\.example> to=<u@other\.example> "
        r"proto=ESMTP helo=<client\.example>$",
        log,
        re.M,
    ), log
    assert re.search(
        r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4$", log, re.M
    ), log
