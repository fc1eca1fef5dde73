"""End-to-end tests of mysql: tables (mysql_table(5)) through postmap -q,
against a throwaway MariaDB server that the tests start themselves.

postmap's exit status tells the three answers apart: 0 found (the value on
stdout), 1 not found, anything else a temporary failure (the database could
not answer), with `fatal:` on stderr.  A table that cannot be opened at all
(a missing configuration file) is also exit 1, with `fatal:`."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mysql_server import MariaDB, ServerError, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Pass-4711"
WRONG_PASSWORD = "Wr0ng-Pass-0815"

SCHEMA = r"""
CREATE DATABASE mail CHARACTER SET utf8mb4;
CREATE USER 'postfix'@'localhost' IDENTIFIED BY '{password}';
CREATE USER 'postfix'@'127.0.0.1' IDENTIFIED BY '{password}';
-- More than a lookup needs: an injected DELETE or DROP would work.
GRANT ALL ON mail.* TO 'postfix'@'localhost';
GRANT ALL ON mail.* TO 'postfix'@'127.0.0.1';
USE mail;
CREATE TABLE aliases (
    address VARCHAR(255) NOT NULL,
    goto VARCHAR(255),
    position INT NOT NULL DEFAULT 0,
    active TINYINT NOT NULL DEFAULT 1
);
INSERT INTO aliases (address, goto, position, active) VALUES
    ('alice@example.com', 'alice@mail.example.com', 0, 1),
    ('team@example.com', 'ann@example.com', 1, 1),
    ('team@example.com', 'bob@example.com', 2, 1),
    ('team@example.com', 'cy@example.com', 3, 1),
    ('carol@other.org', 'carol@mail.other.org', 0, 1),
    ('o''brien@example.com', 'obrien@mail.example.com', 0, 1),
    ('back\\slash@example.com', 'backslash@mail.example.com', 0, 1),
    ('100%@example.com', 'percent@mail.example.com', 0, 1),
    ('blank@example.com', '', 0, 1),
    ('null@example.com', NULL, 0, 1),
    ('gone@example.com', 'gone@mail.example.com', 0, 0);
CREATE TABLE mailboxes (
    local_part VARCHAR(64) NOT NULL,
    domain VARCHAR(255) NOT NULL,
    maildir VARCHAR(255) NOT NULL
);
-- The rows with an empty part would answer a query that Postfix
-- suppresses: finding them would show that it was sent.
INSERT INTO mailboxes VALUES
    ('bob', 'example.com', 'example.com/bob/'),
    ('bob', '', 'SENT-without-domain'),
    ('', 'example.com', 'SENT-without-localpart');
CREATE TABLE domains (domain VARCHAR(255) PRIMARY KEY, transport VARCHAR(255));
INSERT INTO domains VALUES
    ('example.com', 'smtp:[mx.example.com]'),
    ('.com', 'SENT-without-label');
""".format(password=PASSWORD)

ALIAS_COUNT = 11
ALIAS_QUERY = "SELECT goto FROM aliases WHERE address='%s' AND active = 1 ORDER BY position"


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A running server with the schema above.  When it cannot be started
    the tests fail under CI (the environment variable CI is set) and are
    skipped elsewhere."""
    base = tmp_path_factory.mktemp("mysql")
    try:
        server = MariaDB(base)
    except ServerError as err:
        _unavailable(str(err))
    try:
        server.start()
        server.sql(SCHEMA)
    except (ServerError, OSError, subprocess.SubprocessError) as err:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"MariaDB test server: {err}")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postmap() -> Path:
    program = REPO_ROOT / "target" / "release" / "postmap"
    if not program.is_file():
        pytest.fail(f"{program} is missing: run `make all` first")
    return program


@pytest.fixture(scope="session")
def mail_config(tmp_path_factory) -> Path:
    """A configuration directory with an empty main.cf."""
    directory = tmp_path_factory.mktemp("mail-config")
    (directory / "main.cf").write_text("")
    return directory


@pytest.fixture
def make_table(tmp_path, mariadb):
    """Writes a mysql: configuration file; returns `mysql:/path`.  Settings
    not given default to the test server's socket, user and database."""
    count = 0

    def make(**settings) -> str:
        nonlocal count
        count += 1
        values = {
            "hosts": f"unix:{mariadb.socket}",
            "user": "postfix",
            "password": PASSWORD,
            "dbname": "mail",
            "query": ALIAS_QUERY,
        }
        values.update(settings)
        lines = [f"{name} = {value}" for name, value in values.items() if value is not None]
        path = tmp_path / f"table{count}.cf"
        path.write_text("# written by test_mysql.py\n" + "\n".join(lines) + "\n")
        return f"mysql:{path}"

    return make


@pytest.fixture
def query(postmap, mail_config):
    """Runs `postmap -q KEY TABLE`; returns the CompletedProcess."""

    def run(key: str, table: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, MAIL_CONFIG=str(mail_config))
        return subprocess.run(
            [str(postmap), "-q", key, table],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    return run


def found(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"expected found: {result}"
    assert "fatal:" not in result.stderr, result.stderr
    return result.stdout.rstrip("\n")


def not_found(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1, f"expected not found: {result}"
    assert result.stdout == "", result.stdout
    assert "fatal:" not in result.stderr, result.stderr


def temporary_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode not in (0, 1), f"expected a temporary failure: {result}"
    assert result.stdout == "", result.stdout
    assert "fatal:" in result.stderr, result.stderr
    return result.stderr


def alias_count(server: MariaDB) -> int:
    return int(server.sql("SELECT COUNT(*) FROM aliases", database="mail").strip())


# --- answers -----------------------------------------------------------------


def test_found_and_not_found(query, make_table):
    table = make_table()
    assert found(query("alice@example.com", table)) == "alice@mail.example.com"
    not_found(query("nobody@example.com", table))
    # Inactive rows are filtered by the query itself.
    not_found(query("gone@example.com", table))


def test_keys_are_folded_to_lower_case(query, make_table):
    assert found(query("Alice@Example.COM", make_table())) == "alice@mail.example.com"


def test_multiple_rows_are_joined_with_commas(query, make_table):
    assert found(query("team@example.com", make_table())) == "ann@example.com,bob@example.com,cy@example.com"


def test_multiple_columns_skip_null_and_empty_values(query, make_table):
    table = make_table(query="SELECT goto, NULL, '', 'extra' FROM aliases WHERE address='%s'")
    assert found(query("alice@example.com", table)) == "alice@mail.example.com,extra"
    # Only NULL and empty values: not found; the empty one is warned about.
    blank = query("blank@example.com", make_table())
    not_found(blank)
    assert "empty lookup result" in blank.stderr
    not_found(query("null@example.com", make_table()))


def test_local_part_and_domain_expansions(query, make_table):
    table = make_table(query="SELECT maildir FROM mailboxes WHERE local_part='%u' AND domain='%d'")
    assert found(query("bob@example.com", table)) == "example.com/bob/"
    # No domain, or no local part: the query is not even sent.
    not_found(query("bob", table))
    not_found(query("@example.com", table))
    # %u alone takes a key without @ whole.
    table = make_table(query="SELECT maildir FROM mailboxes WHERE local_part='%u' AND domain='example.com'")
    assert found(query("bob", table)) == "example.com/bob/"


def test_domain_label_expansions(query, make_table):
    table = make_table(query="SELECT transport FROM domains WHERE domain='%2.%1'")
    assert found(query("joe@mail.example.com", table)) == "smtp:[mx.example.com]"
    assert found(query("joe@example.com", table)) == "smtp:[mx.example.com]"
    # One label is not enough for %2: no query.
    not_found(query("joe@com", table))
    not_found(query("joe", table))
    table = make_table(query="SELECT transport FROM domains WHERE domain='%s'")
    assert found(query("example.com", table)) == "smtp:[mx.example.com]"


def test_result_format(query, make_table):
    table = make_table(result_format="%s via %d for %U at %D (%%)")
    assert found(query("alice@example.com", table)) == "alice@mail.example.com via mail.example.com for alice at example.com (%)"
    table = make_table(query="SELECT transport FROM domains WHERE domain='%d'", result_format="relay:%s")
    assert found(query("joe@example.com", table)) == "relay:smtp:[mx.example.com]"
    # %u of each value; values lacking a domain are skipped for %d.
    table = make_table(query="SELECT goto FROM aliases WHERE address='%s' ORDER BY position", result_format="%u")
    assert found(query("team@example.com", table)) == "ann,bob,cy"


def test_expansion_limit(query, make_table):
    result = query("team@example.com", make_table(expansion_limit="2"))
    stderr = temporary_failure(result)
    assert "warning:" in stderr and "Expansion limit exceeded" in stderr
    assert found(query("team@example.com", make_table(expansion_limit="3"))).count(",") == 2
    assert found(query("alice@example.com", make_table(expansion_limit="1"))) == "alice@mail.example.com"


def test_domain_list_limits_the_keys_queried(query, make_table, tmp_path):
    table = make_table(domain="example.com, example.net")
    assert found(query("alice@example.com", table)) == "alice@mail.example.com"
    # carol@other.org has a row, but other.org is not on the list.
    not_found(query("carol@other.org", table))
    domains = tmp_path / "domains"
    domains.write_text("# searchable domains\nother.org\n")
    table = make_table(domain=f"!example.com {domains}")
    assert found(query("carol@other.org", table)) == "carol@mail.other.org"
    not_found(query("alice@example.com", table))


def test_legacy_query_settings(query, make_table):
    table = make_table(
        query=None,
        select_field="goto",
        table="aliases",
        where_field="address",
        additional_conditions="AND active = 1",
    )
    assert found(query("alice@example.com", table)) == "alice@mail.example.com"
    not_found(query("gone@example.com", table))


def test_a_statement_without_result_set(query, make_table):
    stderr = temporary_failure(query("alice@example.com", make_table(query="DO '%s'")))
    assert "result set" in stderr
    not_found(query("alice@example.com", make_table(query="DO '%s'", require_result_set="no")))


def test_many_keys_share_one_connection(postmap, mail_config, make_table, mariadb):
    table = make_table()

    def connections() -> int:
        return int(mariadb.sql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])

    keys = "alice@example.com\nnobody@example.com\nteam@example.com\ncarol@other.org\n"
    env = dict(os.environ, MAIL_CONFIG=str(mail_config))
    before = connections()
    result = subprocess.run(
        [str(postmap), "-q", "-", table], input=keys, capture_output=True, text=True, env=env, timeout=60
    )
    after = connections()
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        "alice@example.com\talice@mail.example.com",
        "team@example.com\tann@example.com,bob@example.com,cy@example.com",
        "carol@other.org\tcarol@mail.other.org",
    ]
    # One connection for postmap, one for the second count.
    assert after - before == 2


def test_a_killed_connection_is_reopened(postmap, mail_config, make_table, mariadb):
    table = make_table()
    env = dict(os.environ, MAIL_CONFIG=str(mail_config))
    process = subprocess.Popen(
        [str(postmap), "-q", "-", table],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        process.stdin.write("alice@example.com\n")
        process.stdin.flush()
        ids = _wait_for_connections(mariadb, "postfix")
        for connection in ids:
            mariadb.sql(f"KILL CONNECTION {connection}")
        process.stdin.write("carol@other.org\n")
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == [
        "alice@example.com\talice@mail.example.com",
        "carol@other.org\tcarol@mail.other.org",
    ]
    # The kept connection was found broken and opened again, silently.
    assert "fatal:" not in stderr and "warning:" not in stderr, stderr


def _wait_for_connections(server: MariaDB, user: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = server.sql(f"SELECT id FROM information_schema.processlist WHERE user = '{user}'").split()
        if ids:
            return ids
        time.sleep(0.1)
    raise AssertionError(f"no connection from {user} appeared")


# --- SQL injection -------------------------------------------------------------

INJECTIONS = [
    "x' or '1'='1",
    "x' or 1=1 -- ",
    "x' or 1=1 #",
    "x\\' or 1=1 -- ",
    "x\\",
    "\\",
    "'",
    '"',
    "x\" or \"1\"=\"1",
    "%",
    "%' or address like '%",
    "_%@example.com",
    "x'; delete from aliases; -- ",
    "x'; drop table aliases; -- ",
    "x' union select password from mysql.user -- ",
    "x'\nor 1=1 -- ",
    "alice@example.com' -- ",
    "alice@example.com\\",
]


@pytest.mark.parametrize("key", INJECTIONS)
def test_injection_attempts_are_not_found(query, make_table, mariadb, key):
    not_found(query(key, make_table()))
    assert alias_count(mariadb) == ALIAS_COUNT


def test_injection_attempts_in_local_part_and_domain(query, make_table, mariadb):
    table = make_table(query="SELECT maildir FROM mailboxes WHERE local_part='%u' AND domain='%d'")
    for key in ["x' or '1'='1@example.com", "bob@x' or '1'='1", "bob@example.com' -- ", "x\\@example.com"]:
        not_found(query(key, table))
    assert alias_count(mariadb) == ALIAS_COUNT


def test_keys_with_quotes_backslashes_and_percent_are_found(query, make_table):
    table = make_table()
    assert found(query("o'brien@example.com", table)) == "obrien@mail.example.com"
    assert found(query("back\\slash@example.com", table)) == "backslash@mail.example.com"
    assert found(query("100%@example.com", table)) == "percent@mail.example.com"


def test_quoting_follows_no_backslash_escapes(query, make_table, mariadb):
    """With sql_mode NO_BACKSLASH_ESCAPES a backslash is an ordinary
    character: quoting must double quotes instead."""
    mariadb.sql("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")
    try:
        table = make_table()
        assert found(query("o'brien@example.com", table)) == "obrien@mail.example.com"
        assert found(query("back\\slash@example.com", table)) == "backslash@mail.example.com"
        for key in ["x\\' or 1=1 -- ", "x' or '1'='1", "\\", "x'; delete from aliases; -- "]:
            not_found(query(key, table))
        assert alias_count(mariadb) == ALIAS_COUNT
    finally:
        mariadb.sql("SET GLOBAL sql_mode = REPLACE(@@GLOBAL.sql_mode, 'NO_BACKSLASH_ESCAPES', '')")


# --- hosts ---------------------------------------------------------------------


def test_unix_socket_and_tcp_hosts(query, make_table, mariadb):
    for hosts in [
        f"unix:{mariadb.socket}",
        f"inet:127.0.0.1:{mariadb.port}",
        f"127.0.0.1:{mariadb.port}",
    ]:
        assert found(query("alice@example.com", make_table(hosts=hosts))) == "alice@mail.example.com", hosts


def test_failover_from_a_dead_host(query, make_table, mariadb, tmp_path):
    # UNIX sockets are tried first: the dead one is always tried first.
    dead = tmp_path / "no-such.sock"
    result = query("alice@example.com", make_table(hosts=f"unix:{dead}, inet:127.0.0.1:{mariadb.port}"))
    assert found(result) == "alice@mail.example.com"
    assert "warning:" in result.stderr and f"connect to mysql server unix:{dead}" in result.stderr
    # Random order among TCP hosts: whichever comes first, the answer is found.
    table = make_table(hosts=f"127.0.0.1:{free_port()} 127.0.0.1:{mariadb.port} 127.0.0.1:{free_port()}")
    for _ in range(5):
        assert found(query("alice@example.com", table)) == "alice@mail.example.com"


def test_no_server_is_a_temporary_failure(query, make_table, tmp_path):
    for hosts in [f"127.0.0.1:{free_port()}", f"unix:{tmp_path / 'no-such.sock'}"]:
        stderr = temporary_failure(query("alice@example.com", make_table(hosts=hosts)))
        assert "warning:" in stderr and "connect to mysql server" in stderr, stderr
        assert PASSWORD not in stderr


def test_a_stopped_server_is_a_temporary_failure(query, make_table, tmp_path):
    """A second server of its own, stopped after a first answer."""
    base = tmp_path / "db"
    base.mkdir()
    try:
        server = MariaDB(base)
        try:
            server.start()
            server.sql(SCHEMA)
        except ServerError as err:
            server.stop()
            _unavailable(str(err))
        table = make_table(hosts=f"127.0.0.1:{server.port}")
        try:
            assert found(query("alice@example.com", table)) == "alice@mail.example.com"
        finally:
            server.stop()
        stderr = temporary_failure(query("alice@example.com", table))
        assert f"connect to mysql server 127.0.0.1:{server.port}" in stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_wrong_password_is_a_temporary_failure_that_hides_it(query, make_table, mariadb):
    for hosts in [f"unix:{mariadb.socket}", f"127.0.0.1:{mariadb.port}"]:
        stderr = temporary_failure(query("alice@example.com", make_table(hosts=hosts, password=WRONG_PASSWORD)))
        assert "Access denied" in stderr, stderr
        assert WRONG_PASSWORD not in stderr and PASSWORD not in stderr


def test_unknown_database_is_a_temporary_failure(query, make_table):
    stderr = temporary_failure(query("alice@example.com", make_table(dbname="nosuchdb")))
    assert "nosuchdb" in stderr


def test_bad_query_is_a_temporary_failure(query, make_table):
    stderr = temporary_failure(query("alice@example.com", make_table(query="SELECT goto FROM nosuchtable WHERE address='%s'")))
    assert "query failed" in stderr and "nosuchtable" in stderr


# --- configuration errors --------------------------------------------------------


def test_configuration_errors_are_fatal(query, make_table, tmp_path):
    missing = tmp_path / "missing.cf"
    result = query("alice@example.com", f"mysql:{missing}")
    assert result.returncode == 1 and "fatal:" in result.stderr and str(missing) in result.stderr
    result = query("alice@example.com", make_table(dbname=None))
    assert result.returncode == 1 and "fatal:" in result.stderr and "dbname" in result.stderr
    result = query("alice@example.com", make_table(query="SELECT '%q'"))
    assert result.returncode == 1 and "invalid query template" in result.stderr
    assert PASSWORD not in result.stderr
