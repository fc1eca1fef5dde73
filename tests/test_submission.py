"""Local submission through the running system: sendmail writes through
postdrop into maildrop/, pickup hands the file to cleanup, and the
message lands in incoming/ (no qmgr yet), where postcat reads it."""

import re
import shutil

from mailsystem import QUEUE_ID, HOSTNAME, mail, mail_system_fixture, wait_until  # noqa: F401

mailsystem = mail_system_fixture()


def picked_up(mail, count=1) -> list[str]:
    """Waits until pickup has moved the submitted message(s) on."""
    ids = mail.wait_for_queue("incoming", count)
    wait_until(lambda: mail.queue_files("maildrop") == [], 60, "maildrop/ to empty")
    return ids


def test_sendmail_t_takes_recipients_from_headers(mail):
    mark = mail.log_mark()
    message = (
        b"To: root@test.example, alias1@test.example\n"
        b"Cc: postmaster\n"
        b"Bcc: root@localhost\n"
        b"Subject: from headers\n"
        b"\n"
        b"hello\n"
        b".\n"
        b"after the dot\n"
    )
    result = mail.sendmail("-t", input=message)
    assert result.returncode == 0, result.stderr
    [queue_id] = picked_up(mail)
    envelope = mail.envelope(queue_id)
    assert envelope["sender"] == ["root@test.example"]
    assert envelope["recipient"] == [
        "root@test.example",
        "alias1@test.example",
        "postmaster@test.example",
        "root@localhost",
    ]
    headers = mail.postcat(queue_id, "-h")
    assert "Bcc:" not in headers
    assert "\nCc: postmaster@test.example\n" in headers  # qualified by cleanup
    assert re.search(rf"^Received: by {re.escape(HOSTNAME)} \(Postfix, from userid 0\)\n\tid {queue_id}; ", headers, re.M), headers
    assert "\nFrom: root@test.example\n" in headers or "\nFrom: root <root@test.example>\n" in headers, headers
    body = mail.postcat(queue_id, "-b")
    # Without -i a line with a single dot ends the input.
    assert body == "\nhello\n", body  # postcat -b starts at the empty line
    mail.wait_for_log(rf"postfix/pickup\[\d+\]: {queue_id}: uid=0 from=<root>$", mark)
    mail.wait_for_log(rf"postfix/cleanup\[\d+\]: {queue_id}: message-id=<\d+\.{queue_id}@{re.escape(HOSTNAME)}>$", mark)


def test_sendmail_with_sender_and_full_name(mail):
    message = b"Subject: with -f -F\n\nfirst\n.\nlast\n"
    result = mail.sendmail("-i", "-f", "alice@client.example", "-F", "Alice Example", "root", "alias1@test.example", input=message)
    assert result.returncode == 0, result.stderr
    [queue_id] = picked_up(mail)
    envelope = mail.envelope(queue_id)
    assert envelope["sender"] == ["alice@client.example"]
    assert envelope["sender_fullname"] == ["Alice Example"]
    assert envelope["recipient"] == ["root@test.example", "alias1@test.example"]
    headers = mail.postcat(queue_id, "-h")
    assert "\nFrom: Alice Example <alice@client.example>\n" in headers, headers
    # -i: the dot is content.
    assert mail.postcat(queue_id, "-b") == "\nfirst\n.\nlast\n"


def test_sendmail_8bit_body_kept(mail):
    message = "Subject: caf\u00e9\n\n\u00fcber \u65e5\u672c\n".encode() + b"\xff raw\n"
    result = mail.sendmail("-i", "root", input=message)
    assert result.returncode == 0, result.stderr
    [queue_id] = picked_up(mail)
    assert mail.postcat_bytes(queue_id, "-b") == "\n\u00fcber \u65e5\u672c\n".encode() + b"\xff raw\n"


def test_sendmail_bs_speaks_smtp_on_stdin(mail):
    dialog = (
        b"EHLO submit.example\r\n"
        b"MAIL FROM:<bs@client.example>\r\n"
        b"RCPT TO:<root>\r\n"
        b"RCPT TO:<nosuchuser@test.example>\r\n"
        b"DATA\r\n"
        b"Subject: bs mode\r\n\r\nbody\r\n..dot\r\n.\r\n"
        b"QUIT\r\n"
    )
    result = mail.sendmail("-bs", input=dialog)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\r\n")
    assert lines[0] == f"220 {HOSTNAME} ESMTP Postfix"
    assert lines[1] == f"250-{HOSTNAME}"
    assert "250-PIPELINING" in lines and "250 CHUNKING" in lines
    rest = lines[lines.index("250 CHUNKING") + 1:]
    assert rest[0] == "250 2.1.0 Ok"
    assert rest[1] == "250 2.1.5 Ok"
    # Stand-alone mode: no access controls (nor a local recipient check).
    assert rest[2] == "250 2.1.5 Ok"
    assert rest[3] == "354 End data with <CR><LF>.<CR><LF>"
    assert re.fullmatch(rf"250 2\.0\.0 Ok: queued as {QUEUE_ID}", rest[4]), rest
    assert rest[5:] == ["221 2.0.0 Bye", ""]
    [queue_id] = picked_up(mail)
    envelope = mail.envelope(queue_id)
    assert envelope["sender"] == ["bs@client.example"]
    assert envelope["recipient"] == ["root@test.example", "nosuchuser@test.example"]
    assert mail.postcat(queue_id, "-b") == "\nbody\n.dot\n"


def test_damaged_maildrop_file_goes_to_corrupt(mail):
    mark = mail.log_mark()
    damaged = mail.queue / "maildrop" / "ABCDEF12345"
    damaged.write_bytes(b"garbage\x00\x01 this is not a queue file\n")
    damaged.chmod(0o744)  # complete, as postdrop leaves a file
    shutil.chown(damaged, mail.mail_owner)
    # A good submission wakes pickup, which scans the whole directory.
    result = mail.sendmail("root", input=b"Subject: trigger\n\nx\n")
    assert result.returncode == 0, result.stderr
    ids = mail.wait_for_queue("incoming", 1)
    wait_until(lambda: "ABCDEF12345" in mail.queue_ids("corrupt"), 60, f"the damaged file in corrupt/\n{mail.log()[-2000:]}")
    assert not damaged.exists()
    assert len(ids) == 1
    # Postfix's own pickup logs "warning: maildrop/ID: <what is wrong>" and
    # deletes the file; we keep it, and say so as qmgr does for corrupt/.
    mail.wait_for_log(r"postfix/pickup\[\d+\]: warning: (maildrop/)?ABCDEF12345: \S", mark)
    mail.wait_for_log(r'postfix/pickup\[\d+\]: warning: saving corrupt file "ABCDEF12345" from queue "maildrop" '
                      r'to queue "corrupt"$', mark)
