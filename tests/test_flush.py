"""The fast flush service, flush(8), and smtpd's ETRN, end to end.

Mail for relay.example (the fixture's relay_domains, so in
fast_flush_domains by default) is deferred: there is no smtp agent in
this master.cf, so qmgr defers it with "mail transport unavailable".
The site's log is filled with flush's `add` request, spoken here by a
small client of libmail::ipc (what qmgr does when it defers mail for an
eligible site); ETRN then moves the mail back to incoming/, where qmgr
tries it again.
"""

import re
import socket
import struct

import pytest

from helpers import IS_ROOT, wait_until
from mailsystem import RELAY_DOMAIN, mail, mail_system_fixture  # noqa: F401

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="qmgr and local run as the mail system's users: needs root")

FLUSH_LINE = "flush unix n - n 1000? 0 flush\n"


def with_flush(system):
    # tests/mailsystem.py lists flush already; older versions did not.
    if "flush unix" not in (system.config / "master.cf").read_text():
        system.extra_master_cf = FLUSH_LINE
        system.write_master_cf()


mailsystem = mail_system_fixture(delivery=True, setup=with_flush)

# FlushStatus values on the wire.
OK, FAIL, BAD, DENY = 0, 1, 3, 4


def frame(**attributes: str) -> bytes:
    """One libmail::ipc message: version 1, u32 LE payload length, then
    each attribute as u8 name length, name, u32 LE value length, value."""
    payload = b""
    for name, value in attributes.items():
        raw = value.encode()
        payload += bytes([len(name)]) + name.encode() + struct.pack("<I", len(raw)) + raw
    return bytes([1]) + struct.pack("<I", len(payload)) + payload


def parse(data: bytes) -> dict[str, str]:
    assert data[0] == 1, data
    (length,) = struct.unpack("<I", data[1:5])
    payload, out = data[5 : 5 + length], {}
    while payload:
        name_len = payload[0]
        name = payload[1 : 1 + name_len].decode()
        (value_len,) = struct.unpack("<I", payload[1 + name_len : 5 + name_len])
        out[name] = payload[5 + name_len : 5 + name_len + value_len].decode()
        payload = payload[5 + name_len + value_len :]
    return out


def flush_request(mail, **attributes: str) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(mail.queue / "public" / "flush"))
        s.sendall(frame(**attributes))
        data = b""
        while len(data) < 5 or len(data) < 5 + struct.unpack("<I", data[1:5])[0]:
            chunk = s.recv(4096)
            assert chunk, f"flush closed the connection after {data!r}"
            data += chunk
    return int(parse(data)["status"])


def deferred_relay_mail(mail) -> str:
    """Queues mail for relay.example and waits until qmgr deferred it."""
    client = mail.smtp()
    client.ehlo("client.example")
    client.mail("sender@client.example")
    assert client.rcpt(f"user@{RELAY_DOMAIN}")[0] == 250
    code, text = client.data("Subject: wait\r\n\r\nfor ETRN\r\n")
    assert code == 250, text
    client.quit()
    queue_id = re.search(r"queued as (\w+)", text.decode()).group(1)
    mail.wait_for_log(rf"{queue_id}: to=<user@{RELAY_DOMAIN}>, .*status=deferred")
    mail.wait_for_queue("deferred")
    return queue_id


def deferrals(mail, queue_id: str) -> int:
    return len(re.findall(rf"{queue_id}: to=<user@{RELAY_DOMAIN}>, .*status=deferred", mail.log()))


def site_log(mail, name: str = RELAY_DOMAIN) -> list[str]:
    path = mail.queue / "flush" / name
    return path.read_text().split() if path.exists() else []


def test_add_logs_eligible_sites_only(mail):
    assert flush_request(mail, request="add", site="Relay.Example", queue_id="4F9D1C2A3B") == OK
    assert flush_request(mail, request="add", site=f"sub.{RELAY_DOMAIN}", queue_id="5A0B1C2D3E") == OK
    assert "4F9D1C2A3B" in site_log(mail)
    assert site_log(mail, f"sub.{RELAY_DOMAIN}") == ["5A0B1C2D3E"]
    assert flush_request(mail, request="add", site="other.example", queue_id="4F9D1C2A3B") == DENY
    assert not (mail.queue / "flush" / "other.example").exists()
    assert flush_request(mail, request="add", site=RELAY_DOMAIN, queue_id="../x") == BAD
    assert flush_request(mail, request="explode") == BAD
    # An unknown site with nothing deferred: nothing to do.
    assert flush_request(mail, request="send_site", site=f"quiet.{RELAY_DOMAIN}") == OK
    assert flush_request(mail, request="send_site", site="other.example") == DENY
    assert flush_request(mail, request="purge") == OK


def test_etrn_delivers_the_site_again(mail):
    queue_id = deferred_relay_mail(mail)
    # What qmgr asks when it defers mail for an eligible site (it may have
    # asked already: a repeated ID is sent once).
    assert flush_request(mail, request="add", site=RELAY_DOMAIN, queue_id=queue_id) == OK
    assert queue_id in site_log(mail)
    before = deferrals(mail, queue_id)
    with mail.raw() as c:
        c.expect(220)
        c.cmd("EHLO client.example")
        c.send(f"ETRN {RELAY_DOMAIN}\r\n")
        c.expect(250, "Queuing started")
    # Moved to incoming/, so qmgr tried it again at once (its retry time
    # is far away), and the log was emptied until qmgr adds it again.
    wait_until(lambda: deferrals(mail, queue_id) > before, 30, f"a new delivery attempt of {queue_id}")
    assert site_log(mail).count(queue_id) <= 1


def test_send_file_delivers_one_message_again(mail):
    queue_id = deferred_relay_mail(mail)
    before = deferrals(mail, queue_id)
    assert flush_request(mail, request="send_file", queue_id=queue_id) == OK
    wait_until(lambda: deferrals(mail, queue_id) > before, 30, f"a new delivery attempt of {queue_id}")
    # Gone or not, a well-formed ID is fine; a malformed one is not.
    assert flush_request(mail, request="send_file", queue_id="0123456789") == OK
    assert flush_request(mail, request="send_file", queue_id="../etc") == BAD


def test_etrn_refusals(mail):
    mark = mail.log_mark()
    with mail.raw() as c:
        c.expect(220)
        c.cmd("EHLO client.example")
        c.send("ETRN other.example\r\n")
        c.expect(459, "<other.example>: service unavailable")
        c.send("ETRN\r\n")
        c.expect(500, "Syntax: ETRN domain")
        c.send(f"ETRN {RELAY_DOMAIN} extra\r\n")
        c.expect(500, "Syntax: ETRN domain")
        c.send("ETRN bad..example\r\n")
        c.expect(501, "Error: invalid parameter syntax")
        c.send(f"ETRN @{RELAY_DOMAIN}\r\n")
        c.expect(250, "Queuing started")
        c.send("MAIL FROM:<a@client.example>\r\n")
        c.expect(250)
        c.send(f"ETRN {RELAY_DOMAIN}\r\n")
        c.expect(503, "Error: MAIL transaction in progress")
    mail.wait_for_log(r"warning: reject: ETRN other\.example\.\.\. from localhost\[127\.0\.0\.1\]", since=mark)


def test_etrn_restrictions(mail):
    mail.postconf(f"smtpd_etrn_restrictions = check_etrn_access inline:{{ {{{RELAY_DOMAIN}=REJECT not now}} }}, permit")
    with mail.raw() as c:
        c.expect(220)
        c.cmd("EHLO client.example")
        c.send(f"ETRN {RELAY_DOMAIN}\r\n")
        c.expect(554, f"5.7.1 <{RELAY_DOMAIN}>: Etrn command rejected: not now")
