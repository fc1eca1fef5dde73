"""Fixtures shared by the end-to-end tests: where the source tree and the
built programs are, and the accounts that a root install needs."""

import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

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
