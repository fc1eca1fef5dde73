"""A real, authoritative name server for the DNS tests: Debian's BIND 9
`named`, in the foreground on a free loopback port, serving zones the
test writes.  Point postfix-rs at it with

    dns_resolver_servers = 127.0.0.1:PORT

    with NameServer(base, {"example.test": "@ MX 10 mx1\\nmx1 A 127.0.0.2\\n"},
                    broken=["servfail.test"]) as ns:
        mail.postconf(f"dns_resolver_servers = {ns.address}")

Zone texts are records relative to the zone's origin; the SOA and NS
records, and a TTL of 1 second (so that a test's change is seen at
once), are added.  A zone named in `broken` is configured with a file
named cannot load, so every question about it is answered SERVFAIL.
Names outside all zones are REFUSED (named does not recurse), which a
resolver also treats as a temporary failure.
"""

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from helpers import IS_ROOT, free_port

NAMED = "/usr/sbin/named"


def _zone_file(origin: str, records: str) -> str:
    return (
        "$TTL 1\n"
        f"$ORIGIN {origin}.\n"
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 60 60 60 1\n"
        f"@ IN NS ns.{origin}.\n"
        "ns IN A 127.0.0.1\n"
        f"{records}\n"
    )


class NameServer:
    def __init__(self, base: Path, zones: dict[str, str], broken: list[str] | tuple = ()):
        self.dir = base / "named"
        self.zones = dict(zones)
        self.broken = list(broken)
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _write(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        conf = [
            "options {",
            f'  directory "{self.dir}";',
            f"  listen-on port {self.port} {{ 127.0.0.1; }};",
            "  listen-on-v6 { none; };",
            "  recursion no;",
            "  dnssec-validation no;",
            f'  pid-file "{self.dir}/named.pid";',
            f'  session-keyfile "{self.dir}/session.key";',
            "};",
        ]
        for origin, records in self.zones.items():
            (self.dir / f"{origin}.zone").write_text(_zone_file(origin, records))
            conf.append(f'zone "{origin}" {{ type primary; file "{self.dir}/{origin}.zone"; }};')
        for origin in self.broken:
            # Not a zone file: named refuses to load it and answers SERVFAIL.
            (self.dir / f"{origin}.zone").write_text("this is not a zone file\n")
            conf.append(f'zone "{origin}" {{ type primary; file "{self.dir}/{origin}.zone"; }};')
        (self.dir / "named.conf").write_text("\n".join(conf) + "\n")
        if IS_ROOT:
            bind = pwd.getpwnam("bind")
            for path in [self.dir, *self.dir.iterdir()]:
                os.chown(path, bind.pw_uid, bind.pw_gid)

    def start(self):
        for _ in range(5):
            self.port = free_port()
            self._write()
            user = ["-u", "bind"] if IS_ROOT else []
            log = open(self.dir / "named.log", "wb")
            self.process = subprocess.Popen(
                [NAMED, "-g", "-c", str(self.dir / "named.conf"), *user],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            if self._ready():
                return
            self.stop()
        raise RuntimeError(f"named did not start:\n{self.log()}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if "running" in self.log():
                return True
            time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            return (self.dir / "named.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
