"""Mail out, remotely: smtp(8) end to end.  Mail goes in through smtpd
(smtplib), qmgr hands it to the smtp client, which finds its way with a
real name server (BIND's named on a loopback port, tests/dns_server.py)
and talks to real SMTP peers on loopback addresses: a Python aiosmtpd
sink that records every byte it was given (and answers as the test
asks), and Debian's smtp-sink.

Every peer listens on the same port on its own 127.0.0.x address; the
transport table sends each test domain to `DOMAIN:PORT`, so that MX
lookups still happen (only `[host]` suppresses them).
"""

import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from dns_server import NameServer
from helpers import IS_ROOT, wait_until
from mailsystem import MailSystem, make_base

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

NUM = r"[0-9]+(?:\.[0-9]+)?"


def status_line(to: str, status: str, relay: str = r"\S+") -> str:
    return (
        rf"postfix/smtp\[\d+\]: (?P<id>[0-9A-Za-z]+): to=<{re.escape(to)}>, relay={relay}, "
        rf"delay={NUM}, delays={NUM}/{NUM}/{NUM}/{NUM}, dsn=(?P<dsn>\d\.\d+\.\d+), "
        rf"status={status} \((?P<reason>.*)\)$"
    )


def common_port() -> int:
    """A port free on each of the addresses the peers use."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            for last in range(2, 8):
                with socket.socket() as t:
                    t.bind((f"127.0.0.{last}", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


ZONES = {
    # Two MX hosts; the better one is tested down and up.
    "example.test": "@ MX 10 mx1\n@ MX 20 mx2\nmx1 A 127.0.0.2\nmx2 A 127.0.0.3\n",
    # No MX: the domain's own address.
    "plain.test": "@ A 127.0.0.4\n",
    # One MX, for the 4xx and TLS cases.
    "one.test": "@ MX 10 mx\nmx A 127.0.0.5\n",
    "tls.test": "@ MX 10 mx\nmx A 127.0.0.6\n",
    "sink.test": "@ MX 10 mx\nmx A 127.0.0.7\n",
    # RFC 7505: accepts no mail.
    "null.test": "@ MX 0 .\n",
    # The best MX is this host (inet_interfaces = 127.0.0.1).
    "loop.test": "@ MX 10 mail\nmail A 127.0.0.1\n",
}
DOMAINS = [*ZONES, "nosuch.example.test", "servfail.test"]


class Recorder:
    """An aiosmtpd handler: keeps each transaction, answers RCPT and end
    of data as the test sets."""

    def __init__(self):
        self.messages: list[dict] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply = "250 2.0.0 Ok: queued as SINK1"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "sender": envelope.mail_from,
                "mail_options": list(envelope.mail_options),
                "recipients": list(envelope.rcpt_tos),
                "content": envelope.original_content,
                "helo": session.host_name,
                "tls": session.ssl is not None,
            }
        )
        return self.data_reply


class Peer:
    def __init__(self, address: str, port: int, tls_context=None):
        self.recorder = Recorder()
        kwargs = {"tls_context": tls_context, "require_starttls": False} if tls_context else {}
        self.controller = aiosmtpd_controller.Controller(
            self.recorder, hostname=address, port=port, ready_timeout=10, **kwargs
        )

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


@pytest.fixture(scope="module")
def world(built, mail_accounts):
    """named, the mail system with an smtp transport, and the port every
    peer uses."""
    base = make_base("pfx-smtp-")
    ns = NameServer(base, ZONES, broken=["servfail.test"])
    ns.start()
    port = common_port()
    system = MailSystem(base, mail_accounts, delivery=True)
    try:
        system.extra_master_cf = "smtp unix - - n - - smtp\n"
        system.write_master_cf()
        transport = "".join(f"{d} smtp:{d}:{port}\n" for d in DOMAINS)
        table = system.table("transport", transport)
        system.postconf(
            f"dns_resolver_servers = {ns.address}",
            f"transport_maps = {table}",
            "smtp_connect_timeout = 5s",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
        )
        system.baseline_main_cf = (system.config / "main.cf").read_bytes()
        system.baseline_master_cf = (system.config / "master.cf").read_bytes()
        system.start()
        yield system, port, base
    finally:
        system.stop()
        ns.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def out(world):
    system, port, base = world
    system.reset()
    return system, port, base


def send(system: MailSystem, recipients: list[str], sender: str = "", body: str = "Hello world\n") -> int:
    """Submits a message; returns the log mark from before it."""
    mark = system.log_mark()
    message = f"From: sender@test.example\r\nTo: {recipients[0]}\r\nSubject: out\r\n\r\n{body}"
    with system.smtp() as client:
        client.sendmail(sender, recipients, message)
    return mark


def wait_status(system: MailSystem, to: str, status: str, mark: int, relay: str = r"\S+", seconds: float = 40):
    return system.wait_for_log(status_line(to, status, relay), since=mark, seconds=seconds)


def test_best_mx_first_with_the_exact_bytes(out):
    system, port, _ = out
    mx1 = Peer("127.0.0.2", port).start()
    mx2 = Peer("127.0.0.3", port).start()
    try:
        mark = send(system, ["bob@example.test"], sender="alice@test.example", body="line\r\n.dot\r\n")
        line = wait_status(system, "bob@example.test", "sent", mark, rf"mx1\.example\.test\[127\.0\.0\.2\]:{port}")
        assert line.group("dsn") == "2.0.0"
        assert line.group("reason") == "250 2.0.0 Ok: queued as SINK1"
        assert not mx2.recorder.messages
        [got] = mx1.recorder.messages
        assert got["sender"] == "alice@test.example"
        assert got["recipients"] == ["bob@example.test"]
        assert got["helo"] == "mail.test.example"
        content = got["content"]
        # What smtpd and cleanup made, with CRLF line ends; the leading
        # dot was stuffed on the wire and unstuffed by the peer.
        assert content.endswith(b"\r\n\r\nline\r\n.dot\r\n"), content
        assert b"\r\nSubject: out\r\n" in content
        assert re.search(rb"^Received: from \S+ \(\S+ \[127\.0\.0\.1\]\)\r\n", content), content
        assert b"\n" not in content.replace(b"\r\n", b"")
    finally:
        mx1.stop()
        mx2.stop()


def test_refused_first_mx_falls_back_to_the_second(out):
    system, port, _ = out
    mx2 = Peer("127.0.0.3", port).start()
    try:
        mark = send(system, ["carol@example.test"])
        wait_status(system, "carol@example.test", "sent", mark, rf"mx2\.example\.test\[127\.0\.0\.3\]:{port}")
        assert re.search(
            rf"postfix/smtp\[\d+\]: connect to mx1\.example\.test\[127\.0\.0\.2\]:{port}: Connection refused",
            system.log_since(mark),
        )
        assert mx2.recorder.messages[0]["recipients"] == ["carol@example.test"]
    finally:
        mx2.stop()


def test_no_mx_means_the_domains_own_address(out):
    system, port, _ = out
    peer = Peer("127.0.0.4", port).start()
    try:
        mark = send(system, ["dave@plain.test"])
        wait_status(system, "dave@plain.test", "sent", mark, rf"plain\.test\[127\.0\.0\.4\]:{port}")
        assert len(peer.recorder.messages) == 1
    finally:
        peer.stop()


@pytest.mark.parametrize(
    "to, status, dsn, reason",
    [
        (
            "x@nosuch.example.test",
            "bounced",
            "5.4.4",
            "Host or domain name not found. Name service error for name=nosuch.example.test type=MX: Host not found",
        ),
        (
            "x@servfail.test",
            "deferred",
            "4.4.3",
            "Host or domain name not found. Name service error for name=servfail.test type=MX: Host not found, try again",
        ),
        ("x@null.test", "bounced", "5.1.0", "Domain null.test does not accept mail (nullMX)"),
        ("x@loop.test", "bounced", "5.4.6", "mail for loop.test loops back to myself"),
    ],
    ids=["nxdomain", "servfail", "null-mx", "loops-back"],
)
def test_dns_answers_decide(out, to, status, dsn, reason):
    system, _, _ = out
    mark = send(system, [to])
    line = wait_status(system, to, status, mark, relay="none")
    assert (line.group("dsn"), line.group("reason")) == (dsn, reason)
    if status == "deferred":
        assert system.queue_ids("deferred") == [line.group("id")]


def test_4xx_defers_then_flush_delivers(out):
    system, port, _ = out
    peer = Peer("127.0.0.5", port).start()
    try:
        peer.recorder.rcpt_replies["erin@one.test"] = "451 4.3.0 Try again later"
        mark = send(system, ["erin@one.test"])
        line = wait_status(system, "erin@one.test", "deferred", mark, rf"mx\.one\.test\[127\.0\.0\.5\]:{port}")
        assert line.group("dsn") == "4.3.0"
        assert line.group("reason") == (
            "host mx.one.test[127.0.0.5] said: 451 4.3.0 Try again later (in reply to RCPT TO command)"
        )
        queue_id = line.group("id")
        assert system.queue_ids("deferred") == [queue_id]
        del peer.recorder.rcpt_replies["erin@one.test"]
        mark = system.log_mark()
        assert system.run("postqueue", "-f").returncode == 0
        sent = wait_status(system, "erin@one.test", "sent", mark)
        assert sent.group("id") == queue_id
        wait_until(lambda: not system.all_queue_files(), what="the queue to empty")
        assert len(peer.recorder.messages) == 1
    finally:
        peer.stop()


def test_5xx_for_one_of_two_recipients(out):
    system, port, _ = out
    peer = Peer("127.0.0.5", port).start()
    try:
        peer.recorder.rcpt_replies["nobody@one.test"] = "550 5.1.1 <nobody@one.test>: Recipient address rejected: User unknown"
        mark = send(system, ["frank@one.test", "nobody@one.test"])
        sent = wait_status(system, "frank@one.test", "sent", mark)
        bounced = wait_status(system, "nobody@one.test", "bounced", mark)
        assert bounced.group("dsn") == "5.1.1"
        assert bounced.group("reason") == (
            "host mx.one.test[127.0.0.5] said: 550 5.1.1 <nobody@one.test>: "
            "Recipient address rejected: User unknown (in reply to RCPT TO command)"
        )
        assert sent.group("id") == bounced.group("id")
        # One transaction carried both recipients; the peer kept one.
        [got] = peer.recorder.messages
        assert got["recipients"] == ["frank@one.test"]
    finally:
        peer.stop()


@pytest.fixture
def tls_context(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=mx.tls.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def test_starttls_at_level_may_with_a_self_signed_certificate(out, tls_context):
    system, port, _ = out
    system.postconf("smtp_tls_security_level = may", "smtp_tls_loglevel = 1")
    system.reload()
    peer = Peer("127.0.0.6", port, tls_context=tls_context).start()
    try:
        mark = send(system, ["gina@tls.test"])
        wait_status(system, "gina@tls.test", "sent", mark, rf"mx\.tls\.test\[127\.0\.0\.6\]:{port}")
        assert peer.recorder.messages[0]["tls"] is True
        assert re.search(
            rf"postfix/smtp\[\d+\]: Untrusted TLS connection established to mx\.tls\.test\[127\.0\.0\.6\]:{port}: "
            r"TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)",
            system.log_since(mark),
        )
    finally:
        peer.stop()


def test_encrypt_level_defers_when_tls_is_not_offered(out):
    system, port, _ = out
    system.postconf("smtp_tls_security_level = encrypt")
    system.reload()
    peer = Peer("127.0.0.5", port).start()
    try:
        mark = send(system, ["hank@one.test"])
        line = wait_status(system, "hank@one.test", "deferred", mark)
        assert line.group("dsn") == "4.7.4"
        assert line.group("reason") == "TLS is required, but was not offered by host mx.one.test[127.0.0.5]"
        assert not peer.recorder.messages
    finally:
        peer.stop()


def test_relayhost_sends_everything_to_one_host_without_mx(out):
    system, port, _ = out
    system.postconf("transport_maps =", f"relayhost = [127.0.0.4]:{port}")
    system.reload()
    peer = Peer("127.0.0.4", port).start()
    try:
        # example.test's MX hosts are down: only the relayhost can take it.
        mark = send(system, ["ivan@example.test"])
        wait_status(system, "ivan@example.test", "sent", mark, rf"127\.0\.0\.4\[127\.0\.0\.4\]:{port}")
        assert peer.recorder.messages[0]["recipients"] == ["ivan@example.test"]
    finally:
        peer.stop()


def test_smtp_sink_takes_mail_and_its_5xx_at_rcpt_bounces(out):
    system, port, base = out
    if not shutil.which("smtp-sink", path="/usr/sbin:/usr/bin"):
        pytest.skip("Debian's smtp-sink is not installed")
    user = ["-u", "nobody"] if IS_ROOT else []
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", *user, f"127.0.0.7:{port}", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening("127.0.0.7", port), what="smtp-sink")
        mark = send(system, ["judy@sink.test", "kim@sink.test"])
        for to in ("judy@sink.test", "kim@sink.test"):
            line = wait_status(system, to, "sent", mark, rf"mx\.sink\.test\[127\.0\.0\.7\]:{port}")
            assert line.group("reason").startswith("250 2.0.0 Ok")
    finally:
        sink.terminate()
        sink.wait()
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", *user, "-f", "rcpt", f"127.0.0.7:{port}", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening("127.0.0.7", port), what="smtp-sink")
        mark = send(system, ["lou@sink.test"])
        line = wait_status(system, "lou@sink.test", "bounced", mark)
        assert line.group("reason") == (
            "host mx.sink.test[127.0.0.7] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)"
        )
    finally:
        sink.terminate()
        sink.wait()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_silent_server_times_out_and_the_mail_waits(out):
    """A peer that accepts the connection and says nothing: smtp_helo_timeout
    ends the wait, and the message is deferred with Postfix's reason."""
    system, port, _ = out
    system.postconf("smtp_helo_timeout = 2s")
    system.reload()
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.5", port))
    silent.listen(5)
    try:
        mark = send(system, ["mia@one.test"])
        line = wait_status(system, "mia@one.test", "deferred", mark)
        assert line.group("dsn") == "4.4.2"
        assert line.group("reason") == (
            "conversation with mx.one.test[127.0.0.5] timed out while receiving the initial server greeting"
        )
    finally:
        silent.close()


def test_ehlo_refused_falls_back_to_helo(out):
    system, port, _ = out
    if not shutil.which("smtp-sink", path="/usr/sbin:/usr/bin"):
        pytest.skip("Debian's smtp-sink is not installed")
    user = ["-u", "nobody"] if IS_ROOT else []
    # -e: no ESMTP, so EHLO is refused and only HELO works.
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", *user, "-e", f"127.0.0.7:{port}", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening("127.0.0.7", port), what="smtp-sink")
        mark = send(system, ["ned@sink.test"])
        wait_status(system, "ned@sink.test", "sent", mark, rf"mx\.sink\.test\[127\.0\.0\.7\]:{port}")
    finally:
        sink.terminate()
        sink.wait()
