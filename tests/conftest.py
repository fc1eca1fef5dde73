"""Fixtures shared by the end-to-end tests: where the source tree and the
built programs are, and the accounts that a root install needs."""

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from helpers import age_files

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The source tree: postfix-install, etc/, man/, target/."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def release_dir(repo_root: Path) -> Path:
    """target/release/, with the programs `make all` builds."""
    release = repo_root / "target" / "release"
    if not (release / "postconf").is_file():
        pytest.fail(f"{release}/postconf is missing: run `make all` first")
    return release


@pytest.fixture(scope="session")
def built(repo_root: Path, release_dir: Path) -> Path:
    """Everything the installer copies from the build exists; the repo root."""
    page = repo_root / "target" / "man" / "man5" / "postconf.5"
    if not page.is_file():
        pytest.fail(f"{page} is missing: run `make all` first")
    return repo_root


def _exists(getter, name: str) -> bool:
    try:
        getter(name)
        return True
    except KeyError:
        return False


def _create(getter, name: str, command: list[str]) -> None:
    """Run command unless name exists.  Tolerates another test process
    (pytest -n) creating it at the same moment."""
    if _exists(getter, name):
        return
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 and not _exists(getter, name):
        pytest.fail(f"{' '.join(command)} failed: {result.stderr}")


@pytest.fixture(scope="session")
def mail_accounts() -> tuple[str, str]:
    """(mail_owner, setgid_group) for a root install: the postfix user and
    the postdrop group, created when the machine lacks them (CI machines
    may).  They are left in place afterwards, as an installed system would
    have them.  For a non-root run, the installer uses the caller's own
    account instead, so nothing is created."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    _create(grp.getgrnam, "postfix", ["groupadd", "-r", "postfix"])
    _create(grp.getgrnam, "postdrop", ["groupadd", "-r", "postdrop"])
    nologin = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    _create(
        pwd.getpwnam,
        "postfix",
        ["useradd", "-r", "-g", "postfix", "-M", "-d", "/var/spool/postfix", "-s", nologin, "postfix"],
    )
    return "postfix", "postdrop"


# --- postconf ----------------------------------------------------------------

POSTCONF_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "postconf"
DEBIAN_POSTCONF = Path("/usr/sbin/postconf")


@pytest.fixture(scope="session")
def postconf(release_dir: Path) -> Path:
    """Our postconf binary (target/release/postconf)."""
    return release_dir / "postconf"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of tests/fixtures/postconf (main.cf, master.cf) in
    tmp_path, safe to edit."""
    target = tmp_path / "etc"
    target.mkdir()
    for source in sorted(POSTCONF_FIXTURES.iterdir()):
        (target / source.name).write_bytes(source.read_bytes())
    age_files(target)
    return target



def _is_debian_postconf() -> tuple[bool, str]:
    if not DEBIAN_POSTCONF.is_file():
        return False, f"{DEBIAN_POSTCONF} is missing"
    try:
        owner = subprocess.run(["dpkg", "-S", str(DEBIAN_POSTCONF)], capture_output=True, text=True)
    except FileNotFoundError:
        return False, "dpkg is missing, so /usr/sbin/postconf cannot be identified as Debian's"
    if owner.returncode != 0:
        return False, f"{DEBIAN_POSTCONF} does not belong to a Debian package: {owner.stderr.strip()}"
    return True, ""


@pytest.fixture(scope="session")
def debian_postconf() -> Path:
    """Debian's Postfix postconf, the reference our postconf is compared
    with.  `make test` installs the postfix package for it.  When it is
    missing (or is not Debian's), the test fails under CI (the environment
    variable CI is set) and is skipped elsewhere."""
    ok, why = _is_debian_postconf()
    if not ok:
        message = f"reference postconf unavailable: {why} (install Debian's postfix package: `make test-tools`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DEBIAN_POSTCONF
