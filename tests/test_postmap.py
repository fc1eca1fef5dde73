"""postmap, postalias and newaliases end to end: building indexed tables
from source files, querying every table type, listing, deleting, adding,
and the files they write, compared with Debian's Postfix 3.7 programs (the
reference) wherever both can do the same thing.

Each program runs with MAIL_CONFIG pointing at a private directory
(`Side.root/etc`, an empty main.cf unless a test writes one).  Ours and
Debian's never share a directory: Debian's hash: files are Berkeley DB,
ours are CDB, and both are called FILE.db.  Paths in the output are
replaced by <DIR> before the two sides are compared.

Source fixtures are in tests/fixtures/tables/:
  access    postmap source format (and texthash:)
  aliases   aliases(5) format
  regexp, pcre, cidr   pattern tables

The reference tests need Debian's postfix, postfix-pcre and postfix-cdb
packages (`make test-tools` installs them).  Without them the tests fail
when the environment variable CI is set and are skipped otherwise.
"""

import os
import pwd
import stat
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import IS_ROOT

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "tables"
DEBIAN_SBIN = Path("/usr/sbin")

# --- running the programs ------------------------------------------------------


@dataclass
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Side:
    """One implementation (ours or Debian's) with a directory of its own:
    ROOT/etc holds main.cf, tables go anywhere under ROOT."""

    name: str
    bindir: Path
    root: Path

    def __post_init__(self):
        self.etc.mkdir(parents=True, exist_ok=True)
        if not (self.etc / "main.cf").exists():
            self.main_cf("")

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def main_cf(self, text: str) -> None:
        write_aged(self.etc / "main.cf", text)

    def path(self, name: str) -> Path:
        return self.root / name

    def expand(self, arg: str) -> str:
        """{dir} in an argument is this side's directory."""
        return arg.replace("{dir}", str(self.root))

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env.update(LC_ALL="C", LANG="C", MAIL_CONFIG=str(self.etc))
        return env

    def run(self, program: str, *args: str, input: str | bytes | None = None, argv0: Path | None = None) -> Result:
        binary = argv0 or self.bindir / program
        argv = [str(binary), *(self.expand(a) for a in args)]
        data = input.encode() if isinstance(input, str) else input
        done = subprocess.run(
            argv,
            env=self.env(),
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            cwd=self.root,
        )
        decode = lambda b: b.decode("utf-8", "surrogateescape")  # noqa: E731
        return Result(argv, done.returncode, decode(done.stdout), decode(done.stderr))

    def view(self, result: Result) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) with this side's directory as <DIR>."""
        clean = lambda text: text.replace(str(self.root), "<DIR>")  # noqa: E731
        return result.returncode, clean(result.stdout), clean(result.stderr)

    def copy(self, fixture: str, name: str | None = None) -> Path:
        """A fixture copied into this side's directory (as name)."""
        target = self.path(name or fixture)
        write_aged(target, (FIXTURES / fixture).read_bytes())
        return target

    def write(self, name: str, text: str) -> Path:
        target = self.path(name)
        write_aged(target, text)
        return target


def write_aged(path: Path, data: str | bytes) -> None:
    """Writes a file dated an hour back.  Postfix re-reads a file modified
    in the last second or so (texthash: tables, main.cf) and repeats its
    warnings each time; aged files keep its messages regular."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    past = time.time() - 3600
    os.utime(path, (past, past))


def ok(result: Result) -> Result:
    assert result.returncode == 0, f"{result.args} failed ({result.returncode}):\n{result.stderr}"
    return result


def sorted_lines(text: str, drop_nis: bool = False) -> list[str]:
    """-s output in a comparable order; drop_nis: without the
    YP_LAST_MODIFIED and YP_MASTER_NAME records that Debian's postalias
    adds (NIS compatibility, which we deliberately do not write)."""
    lines = text.splitlines()
    if drop_nis:
        lines = [line for line in lines if not line.startswith(("YP_LAST_MODIFIED", "YP_MASTER_NAME"))]
    return sorted(lines)


def both(ours: Side, debian: Side, program: str, *args: str, input: str | None = None) -> tuple:
    """Runs the same command on both sides; their views (see Side.view)."""
    return ours.view(ours.run(program, *args, input=input)), debian.view(debian.run(program, *args, input=input))


def assert_same(ours: Side, debian: Side, program: str, cases: list[tuple[str, ...]]) -> None:
    """Each case (a list of arguments) gives the same exit status, stdout
    and stderr on both sides; all differences are reported together."""
    problems = []
    for args in cases:
        mine, theirs = both(ours, debian, program, *args)
        if mine != theirs:
            problems.append(f"{program} {' '.join(args)}\n    ours:   {mine!r}\n    Debian: {theirs!r}")
    assert not problems, "differences from Debian's " + program + ":\n" + "\n".join(problems)


# --- fixtures: ours and Debian's ---------------------------------------------------


@pytest.fixture
def ours(release_dir: Path, tmp_path: Path) -> Side:
    for program in ("postmap", "postalias"):
        if not (release_dir / program).is_file():
            pytest.fail(f"{release_dir / program} is missing: run `make all` first")
    return Side("ours", release_dir, tmp_path / "ours")


def _unavailable(message: str):
    message += " (install Debian's packages: `make test-tools`)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _debian_package(package: str) -> None:
    try:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except FileNotFoundError:
        _unavailable("dpkg-query is missing")
    if status.returncode != 0 or "install ok installed" not in status.stdout:
        _unavailable(f"Debian's {package} package is not installed")


@pytest.fixture
def debian(tmp_path: Path) -> Side:
    """Debian's postmap and postalias (package postfix), the reference."""
    _debian_package("postfix")
    for program in ("postmap", "postalias"):
        if not (DEBIAN_SBIN / program).is_file():
            _unavailable(f"{DEBIAN_SBIN / program} is missing")
    return Side("debian", DEBIAN_SBIN, tmp_path / "debian")


@pytest.fixture
def debian_pcre(debian: Side) -> Side:
    """Debian's postmap with pcre: tables (package postfix-pcre)."""
    _debian_package("postfix-pcre")
    return debian


@pytest.fixture
def debian_cdb(debian: Side) -> Side:
    """Debian's postmap with cdb: tables (package postfix-cdb)."""
    _debian_package("postfix-cdb")
    return debian


# --- reading a CDB file directly -----------------------------------------------------


def cdb_get(data: bytes, key: bytes) -> bytes | None:
    """The value of key in a constant database (D. J. Bernstein's cdb
    format, which our hash:, btree: and cdb: files use), or None."""
    h = 5381
    for byte in key:
        h = ((h << 5) + h ^ byte) & 0xFFFFFFFF
    table_pos, slots = struct.unpack_from("<II", data, (h & 0xFF) * 8)
    if slots == 0:
        return None
    start = (h >> 8) % slots
    for i in range(slots):
        slot_hash, record = struct.unpack_from("<II", data, table_pos + ((start + i) % slots) * 8)
        if record == 0:
            return None
        if slot_hash == h:
            klen, dlen = struct.unpack_from("<II", data, record)
            if data[record + 8 : record + 8 + klen] == key:
                return data[record + 8 + klen : record + 8 + klen + dlen]
    return None


# --- 1. postmap source format, against Debian ----------------------------------------

ACCESS_KEYS = [
    "example.com",
    "EXAMPLE.COM",  # keys are folded to lower case at build and query
    "mixed.example.com",
    "Mixed.Example.COM",
    "user@example.net",
    "spaces",  # internal whitespace kept, trailing whitespace dropped
    "multi",  # continuation lines
    "foo",  # the first of two duplicates
    "novalue",  # a line without value: skipped
    "alias-like:",
    "key#hash",
    "last",
    "missing",
    "#",
]


def test_build_warnings_equal_debian(built, ours, debian):
    """The warnings for the fixture, in line order: the duplicate, the line
    without value and the line that looks like an alias."""
    for side in (ours, debian):
        side.copy("access")
    mine, theirs = both(ours, debian, "postmap", "{dir}/access")
    assert mine == theirs
    assert mine == (
        0,
        "",
        'postmap: warning: <DIR>/access.db: duplicate entry: "foo"\n'
        "postmap: warning: <DIR>/access, line 21: expected format: key whitespace value\n"
        'postmap: warning: <DIR>/access, line 22: record is in "key: value" format; is this an alias file?\n',
    )


def test_query_each_key_equals_debian(built, ours, debian):
    for side in (ours, debian):
        side.copy("access")
        ok(side.run("postmap", "hash:{dir}/access"))
    assert_same(ours, debian, "postmap", [("-q", key, "hash:{dir}/access") for key in ACCESS_KEYS])


def test_query_values(built, ours):
    """A few values spelled out, so that the format is pinned down even
    where no reference is installed."""
    ours.copy("access")
    ok(ours.run("postmap", "{dir}/access"))
    q = lambda key: ours.run("postmap", "-q", key, "{dir}/access")  # noqa: E731
    assert q("multi").stdout == (
        "first line    continued with leading spaces kept\tand a tab    after the comment\n"
    )
    assert q("spaces").stdout == "value  with   internal    spaces\n"
    assert q("FOO").stdout == "first value wins\n"
    assert q("last").stdout == "the line after the bad ones is still built\n"
    # a key that is not there: exit 1, nothing printed
    missing = q("novalue")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", "")


def test_continuation_keeps_whitespace(built, ours, debian):
    for side in (ours, debian):
        side.write("t", "long value\n  more\nnext\tv\n")
        ok(side.run("postmap", "{dir}/t"))
    assert_same(ours, debian, "postmap", [("-q", "long", "{dir}/t"), ("-q", "next", "{dir}/t")])
    assert ours.run("postmap", "-q", "long", "{dir}/t").stdout == "value  more\n"


def test_list_sorted_equals_debian(built, ours, debian):
    results = []
    for side in (ours, debian):
        side.copy("access")
        ok(side.run("postmap", "{dir}/access"))
        listing = ok(side.run("postmap", "-s", "{dir}/access"))
        results.append(sorted_lines(listing.stdout))
    assert results[0] == results[1]
    assert "foo\tfirst value wins" in results[0]


def test_no_fold_at_build_and_query(built, ours, debian):
    """-f keeps keys as written: both duplicates of foo are kept, and a
    query finds only the exact spelling (without -f the query key is still
    folded)."""
    for side in (ours, debian):
        side.copy("access")
        ok(side.run("postmap", "-f", "{dir}/access"))
    keys = ["Mixed.Example.COM", "mixed.example.com", "foo", "Foo", "FOO"]
    cases = [("-f", "-q", key, "{dir}/access") for key in keys] + [("-q", key, "{dir}/access") for key in keys]
    assert_same(ours, debian, "postmap", cases)
    assert ours.run("postmap", "-f", "-q", "Foo", "{dir}/access").stdout.startswith("duplicate of foo")
    assert ours.run("postmap", "-f", "-q", "mixed.example.com", "{dir}/access").returncode == 1


def test_query_keys_on_stdin(built, ours, debian):
    """-q -: key<TAB>value for each key found, in input order; exit 0 when
    any was found, 1 when none."""
    for side in (ours, debian):
        side.copy("access")
        ok(side.run("postmap", "{dir}/access"))
    keys = "".join(f"{key}\n" for key in ACCESS_KEYS)
    mine, theirs = both(ours, debian, "postmap", "-q", "-", "{dir}/access", input=keys)
    assert mine == theirs
    assert mine[0] == 0 and "EXAMPLE.COM\tOK\n" in mine[1]
    mine, theirs = both(ours, debian, "postmap", "-q", "-", "{dir}/access", input="missing\nnovalue\n")
    assert mine == theirs == (1, "", "")


def test_first_table_wins(built, ours, debian):
    for side in (ours, debian):
        side.write("t1", "both one\nfirst only-1\n")
        side.write("t2", "both two\nsecond only-2\n")
        ok(side.run("postmap", "{dir}/t1", "{dir}/t2"))
    tables = ("hash:{dir}/t1", "hash:{dir}/t2")
    cases = [("-q", key, *tables) for key in ("both", "first", "second", "none")]
    assert_same(ours, debian, "postmap", cases)
    assert_same(ours, debian, "postmap", [("-q", "-", *tables)])  # empty stdin: not found
    mine, theirs = both(ours, debian, "postmap", "-q", "-", *tables, input="both\nsecond\nnone\n")
    assert mine == theirs == (0, "both\tone\nsecond\tonly-2\n", "")


def test_later_tables_are_not_opened(built, ours, debian):
    """Once a table answers, later ones are not opened: a missing one is
    no error.  When the key is not found, the missing table is fatal."""
    cases = [
        ("-q", "x", "static:y", "hash:{dir}/missing"),
        ("-q", "x", "inline:{a=1}", "hash:{dir}/missing"),
    ]
    assert_same(ours, debian, "postmap", cases)
    assert ours.view(ours.run("postmap", *cases[0])) == (0, "y\n", "")
    assert ours.view(ours.run("postmap", *cases[1])) == (
        1,
        "",
        "postmap: fatal: open database <DIR>/missing.db: No such file or directory\n",
    )


# --- 2. duplicates, -N, default type ----------------------------------------------------


@pytest.mark.parametrize("flag", ["", "-r", "-w"], ids=["default", "replace", "ignore"])
def test_duplicate_policies(built, ours, debian, flag):
    """Default: warn and keep the first; -r: the later replaces, silently;
    -w: the first stays, silently."""
    flags = (flag,) if flag else ()
    for side in (ours, debian):
        side.write("t", "Foo bar\nfoo two\nBaz qux\n")
    mine, theirs = both(ours, debian, "postmap", *flags, "{dir}/t")
    assert mine == theirs
    warning = 'postmap: warning: <DIR>/t.db: duplicate entry: "foo"\n'
    assert mine == (0, "", warning if not flag else "")
    assert_same(ours, debian, "postmap", [("-q", key, "{dir}/t") for key in ("foo", "FOO", "baz")])
    want = "two\n" if flag == "-r" else "bar\n"
    assert ours.run("postmap", "-q", "foo", "{dir}/t").stdout == want


def test_null_terminated_keys(built, ours, debian):
    """-N stores keys and values with a terminating null; they are still
    found (Postfix tries both forms)."""
    for side in (ours, debian):
        side.copy("access")
        ok(side.run("postmap", "-N", "-w", "{dir}/access"))
    assert_same(ours, debian, "postmap", [("-q", key, "{dir}/access") for key in ("example.com", "multi", "nope")])
    data = ours.path("access.db").read_bytes()
    assert cdb_get(data, b"example.com\0") == b"OK\0"
    assert cdb_get(data, b"example.com") is None


def test_default_database_type(built, ours):
    """A name without type: gets $default_database_type."""
    ours.copy("access")
    ok(ours.run("postmap", "-w", "{dir}/access"))
    assert ours.path("access.db").is_file()
    ours.main_cf("default_database_type = cdb\n")
    ok(ours.run("postmap", "-w", "{dir}/access"))
    assert ours.path("access.cdb").is_file()
    assert ok(ours.run("postmap", "-q", "example.com", "{dir}/access")).stdout == "OK\n"
    assert ok(ours.run("postmap", "-q", "example.com", "cdb:{dir}/access")).stdout == "OK\n"


@pytest.mark.parametrize("compatibility_level", ["", "3.6"], ids=["level-0", "level-3.6"])
def test_non_ascii_key_folding(built, ours, debian, compatibility_level):
    """Postfix folds keys with UTF-8 case folding only when smtputf8_enable
    is on (compatibility_level 1 and later); before that, only ASCII
    letters are folded."""
    text = f"compatibility_level = {compatibility_level}\n" if compatibility_level else ""
    for side in (ours, debian):
        side.main_cf(text)
        side.write("t", "KÉy upper\nkéy lower\n")
        side.run("postmap", "-w", "{dir}/t")
    assert_same(ours, debian, "postmap", [("-q", key, "{dir}/t") for key in ("kÉy", "KÉY", "kéy")])
    mine, theirs = both(ours, debian, "postmap", "-s", "{dir}/t")
    assert sorted_lines(mine[1]) == sorted_lines(theirs[1])


# --- 3. changing a table: -d, -i -------------------------------------------------------------


def test_delete(built, ours, debian):
    """-d KEY: exit 0 when removed, 1 when absent; -d - takes keys from
    stdin; the key is folded like any other."""
    for side in (ours, debian):
        side.write("t", "foo bar\nbaz qux\nkeep me\nlast one\n")
        ok(side.run("postmap", "{dir}/t"))
    for args, stdin in [
        (("-d", "FOO", "{dir}/t"), None),
        (("-d", "foo", "{dir}/t"), None),
        (("-d", "-", "{dir}/t"), "baz\nnope\n"),
        (("-d", "-", "{dir}/t"), "nope\n"),
        (("-d", "x", "{dir}/nonexistent"), None),
    ]:
        mine, theirs = both(ours, debian, "postmap", *args, input=stdin)
        assert mine == theirs, args
    assert ours.view(ours.run("postmap", "-d", "foo", "{dir}/t")) == (1, "", "")
    mine, theirs = both(ours, debian, "postmap", "-s", "{dir}/t")
    assert sorted_lines(mine[1]) == sorted_lines(theirs[1]) == ["keep\tme", "last\tone"]


def test_incremental_keeps_existing_entries(built, ours, debian):
    """-i adds the entries on stdin to the existing table: old keys stay,
    and a key already there keeps its value (with the duplicate warning)."""
    for side in (ours, debian):
        side.write("t", "foo bar\nkeep me\n")
        ok(side.run("postmap", "{dir}/t"))
    mine, theirs = both(ours, debian, "postmap", "-i", "{dir}/t", input="New val\nkeep other\n")
    assert mine == theirs
    assert mine == (0, "", 'postmap: warning: <DIR>/t.db: duplicate entry: "keep"\n')
    mine, theirs = both(ours, debian, "postmap", "-s", "{dir}/t")
    assert sorted_lines(mine[1]) == sorted_lines(theirs[1]) == ["foo\tbar", "keep\tme", "new\tval"]
    mine, theirs = both(ours, debian, "postmap", "-r", "-i", "{dir}/t", input="keep replaced\n")
    assert mine == theirs
    assert ours.run("postmap", "-q", "keep", "{dir}/t").stdout == "replaced\n"


def test_incremental_warnings_name_stdin(built, ours, debian):
    """A bad line read by -i is reported as `stdin, line N`, like Debian."""
    for side in (ours, debian):
        side.write("t", "foo bar\n")
        ok(side.run("postmap", "{dir}/t"))
    mine, theirs = both(ours, debian, "postmap", "-i", "{dir}/t", input="#c\nok v\nbad\n")
    assert mine == theirs
    assert mine == (0, "", "postmap: warning: stdin, line 3: expected format: key whitespace value\n")


# --- 4. errors -----------------------------------------------------------------------------------


def test_missing_source_file(built, ours, debian):
    for program in ("postmap", "postalias"):
        mine, theirs = both(ours, debian, program, "{dir}/nosuch")
        assert mine == theirs
        assert mine == (1, "", f"{program}: fatal: open <DIR>/nosuch: No such file or directory\n")


def test_unknown_type(built, ours, debian):
    """Ours names the type; Debian's postmap adds, when building, a hint
    about its packages (`. Is the postfix-xyz package installed?`)."""
    ours.write("t", "a b\n")
    want = (1, "", "postmap: fatal: unsupported dictionary type: xyz\n")
    assert ours.view(ours.run("postmap", "xyz:{dir}/t")) == want
    assert ours.view(ours.run("postmap", "-q", "a", "xyz:{dir}/t")) == want
    debian.write("t", "a b\n")
    assert_same(ours, debian, "postmap", [("-q", "a", "xyz:{dir}/t")])


@pytest.mark.parametrize("spec", ["hash:", "static:", "texthash:", "inline:", ":x"])
def test_table_without_name(built, ours, debian, spec):
    """`type:` with nothing after the colon, or `:name` without a type,
    is not a table name."""
    mine, theirs = both(ours, debian, "postmap", "-q", "x", spec)
    assert mine == theirs
    assert mine == (1, "", f'postmap: fatal: open dictionary: expecting "type:name" form instead of "{spec}"\n')


def test_pattern_tables_cannot_be_built(built, ours, debian):
    for side in (ours, debian):
        side.copy("regexp")
    mine, theirs = both(ours, debian, "postmap", "regexp:{dir}/regexp")
    assert mine == theirs
    assert mine == (1, "", "postmap: fatal: unsupported dictionary type: regexp does not support bulk-mode creation.\n")


def test_pattern_tables_cannot_be_listed(built, ours, debian):
    for side in (ours, debian):
        side.copy("regexp")
    mine, theirs = both(ours, debian, "postmap", "-s", "regexp:{dir}/regexp")
    assert mine == theirs
    assert mine == (1, "", "postmap: fatal: table regexp:<DIR>/regexp: sequence operation is not supported\n")


def test_bad_regexp_names_file_and_line(built, ours):
    """A rule with a broken pattern stops the table from opening: `fatal:`
    with the file, the line and the regular expression error, exit 1.
    (Debian's 3.7 only warns and runs without the rule; a header_checks
    filter silently missing a rule is worse than a clear stop.)"""
    ours.write("bad", "/^ok$/ fine\n\n/a(/ broken\n/^z/ zed\n")
    result = ours.run("postmap", "-q", "zz", "regexp:{dir}/bad")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"postmap: fatal: regexp map {ours.path('bad')}, line 3: Unmatched ( or \\(\n"
    ), result.stderr
    ours.write("badpcre", "/^ok$/ fine\n/a(/ broken\n")
    result = ours.run("postmap", "-q", "ok", "pcre:{dir}/badpcre")
    assert result.returncode == 1
    assert result.stderr.startswith(f"postmap: fatal: pcre map {ours.path('badpcre')}, line 2: "), result.stderr
    assert "missing closing parenthesis" in result.stderr


def test_berkeley_db_file_is_refused(built, ours, debian):
    """A hash: table built by Debian's postmap (Berkeley DB) given to ours:
    a fatal error that says what it is, not a crash or "not found"."""
    debian.copy("access")
    ok(debian.run("postmap", "-w", "{dir}/access"))
    foreign = f"hash:{debian.path('access')}"
    for args, stdin in [(("-q", "example.com", foreign), None), (("-s", foreign), None), (("-i", foreign), "k v\n")]:
        result = ours.run("postmap", *args, input=stdin)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr.startswith("postmap: fatal: ") and "Berkeley DB" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


# --- 5. postalias and aliases(5) -----------------------------------------------------------------

# Every name in the aliases fixture (as stored: folded), and names that
# are not there.
ALIAS_NAMES = [
    "root",
    "postmaster",
    "mailer-daemon",
    "MAILER-DAEMON",
    "quoted name",
    'q"n',
    "spaced",
    "list",
    "comments",
    "display",
    "words",
    "empties",
    "routes",
    "literals",
    "tabbed",
    "hash",
    "group",
    "unterminated",
    "dotted",
    "escaped",
    "escaped-specials",
    "open-comment",
    "cont",
    "inc",
    "pipe",
    "pipe-args",
    "file",
    "remote",
    "owner-list",
    "list-request",
    "upper",
    "@",  # the "database is complete" sentinel
    "empty",
    "no",
    "missing",
]


@pytest.fixture
def alias_pair(ours: Side, debian: Side) -> tuple[Side, Side]:
    """The aliases fixture built by both postalias programs."""
    for side in (ours, debian):
        side.copy("aliases")
    mine, theirs = both(ours, debian, "postalias", "{dir}/aliases")
    assert mine == theirs
    assert mine == (
        0,
        "",
        "postalias: warning: <DIR>/aliases, line 43: need name:value pair\n"
        "postalias: warning: <DIR>/aliases, line 44: need name:value pair\n"
        'postalias: warning: <DIR>/aliases.db: duplicate entry: "root"\n',
    )
    return ours, debian


@pytest.mark.parametrize("name", ALIAS_NAMES)
def test_alias_values_equal_debian(built, alias_pair, name):
    """Each name's stored value, exactly as Debian's postalias stores it."""
    assert_same(*alias_pair, "postalias", [("-q", name, "{dir}/aliases")])


def test_alias_values(built, alias_pair):
    ours, _ = alias_pair
    q = lambda name: ours.run("postalias", "-q", name, "{dir}/aliases").stdout  # noqa: E731
    assert q("list") == "a, b, c@example.com, d\n"
    assert q("comments") == 'x (c1), "q\\"x", y <z@w>\n'
    assert q("cont") == "one, two, three\n"
    assert q("quoted name") == "quoted\n"
    assert q("pipe-args") == '"|/usr/bin/filter -a  two"\n'
    assert q("inc") == ":include:/etc/postfix/inc.list\n"
    assert q("root") == "admin\n"
    assert q("@") == "@\n"


def test_alias_list_equals_debian(built, alias_pair):
    """-s lists `name:<TAB>value`; Debian's has two NIS records more."""
    ours, debian = alias_pair
    mine = ok(ours.run("postalias", "-s", "{dir}/aliases")).stdout
    theirs = ok(debian.run("postalias", "-s", "{dir}/aliases")).stdout
    assert "YP_LAST_MODIFIED" not in mine
    assert sorted_lines(mine) == sorted_lines(theirs, drop_nis=True)


def test_newaliases_builds_alias_database(built, ours, tmp_path):
    """postalias invoked as newaliases (a symlink) rebuilds every table in
    $alias_database, warnings in newaliases' name."""
    link = tmp_path / "bin" / "newaliases"
    link.parent.mkdir()
    link.symlink_to(ours.bindir / "postalias")
    ours.copy("aliases")
    ours.write("more", "extra: someone\n")
    ours.main_cf(f"alias_database = hash:{ours.root}/aliases, cdb:{ours.root}/more\n")
    result = ours.run("newaliases", argv0=link)
    assert result.returncode == 0, result.stderr
    assert 'newaliases: warning: <DIR>/aliases.db: duplicate entry: "root"' in ours.view(result)[2]
    assert ours.path("aliases.db").is_file() and ours.path("more.cdb").is_file()
    assert ok(ours.run("postalias", "-q", "root", "hash:{dir}/aliases")).stdout == "admin\n"
    assert ok(ours.run("postalias", "-q", "extra", "cdb:{dir}/more")).stdout == "someone\n"


# --- 6. the other table types, against Debian -------------------------------------------------------


def test_texthash_equals_debian(built, ours, debian):
    """texthash: reads the source file itself, with its own warnings (every
    open repeats them)."""
    for side in (ours, debian):
        side.copy("access")
    assert_same(ours, debian, "postmap", [("-q", key, "texthash:{dir}/access") for key in ACCESS_KEYS])
    result = ours.run("postmap", "-q", "foo", "texthash:{dir}/access")
    assert ours.view(result)[2] == (
        'postmap: warning: <DIR>/access, line 20: duplicate entry: "Foo"\n'
        "postmap: warning: <DIR>/access, line 21: expected format: key whitespace value -- ignoring this line\n"
        'postmap: warning: <DIR>/access, line 22: record is in "key: value" format; is this an alias file?\n'
    )
    mine, theirs = both(ours, debian, "postmap", "-s", "texthash:{dir}/access")
    assert (mine[0], sorted_lines(mine[1]), mine[2]) == (theirs[0], sorted_lines(theirs[1]), theirs[2])


def test_texthash_missing_file(built, ours, debian):
    assert_same(ours, debian, "postmap", [("-q", "x", "texthash:{dir}/nosuch")])


INLINE = "inline:{a=1, { b = x y }, c=3, A=4}"


def test_inline_and_static_equal_debian(built, ours, debian):
    """inline: (the last of duplicate keys wins, braces keep spaces) and
    static: (every key finds the value)."""
    cases = [("-q", key, INLINE) for key in ("a", "A", "b", "c", "d")]
    cases += [("-f", "-q", key, "inline:{A=1}") for key in ("A", "a")]
    cases += [("-q", "anything", "static:{ hello  world }"), ("-q", "x", "static:OK")]
    cases += [("-q", "x", "inline:{}"), ("-q", "x", "inline:{a=1, b}")]
    assert_same(ours, debian, "postmap", cases)
    assert ours.run("postmap", "-q", "a", INLINE).stdout == "4\n"
    assert ours.run("postmap", "-q", "b", INLINE).stdout == "x y\n"
    assert ours.run("postmap", "-q", "k", "static:{ hello  world }").stdout == "hello  world\n"


def test_inline_pattern_tables_equal_debian(built, ours, debian):
    """Postfix 3.7's inline pattern tables: `regexp:{ {rule}, {rule} }`, the
    same for pcre: and cidr:; a rule without braces is fatal."""
    regexp = "regexp:{{/^a(b)/ got-$1}, { /x/ y }}"
    cidr = "cidr:{{10.0.0.0/8 ten}, {0.0.0.0/0 any}}"
    cases = [("-q", key, regexp) for key in ("abc", "ax", "zzz")]
    cases += [("-q", key, cidr) for key in ("10.1.2.3", "192.0.2.1", "::1")]
    cases += [("-q", "abc", "pcre:{ {/^a(?=b)/ look} }")]
    cases += [("-q", "abc", spec) for spec in ("regexp:{/^a/ x}", "regexp:{{/^a/ x} junk}", "regexp:{}")]
    assert_same(ours, debian, "postmap", cases)
    assert ours.run("postmap", "-q", "abc", regexp).stdout == "got-b\n"


def test_unix_tables_equal_debian(built, ours, debian):
    cases = [
        ("-q", "root", "unix:passwd.byname"),
        ("-q", "root", "unix:group.byname"),
        ("-q", "no-such-user-here", "unix:passwd.byname"),
        ("-q", "no-such-group-here", "unix:group.byname"),
        ("-q", "root", "unix:nosuch.byname"),
    ]
    assert_same(ours, debian, "postmap", cases)
    assert ours.run("postmap", "-q", "root", "unix:passwd.byname").stdout.startswith("root:x:0:0:")


REGEXP_KEYS = [
    "spam",
    "spamx",
    "SPAM",
    "joe@example.com",
    "a-b@sub.example",
    "CaseOnly",
    "caseonly",
    "CASEANY",
    "user",
    "userx",
    "user42",
    "long",
    "axb",
    "host.test.net",
    "host.other.net",
    "nothing",
]
PCRE_KEYS = [
    "spam",
    "spamx",
    "SPAM",
    "joe@example.com",
    "a-b@sub.example",
    "num12x",
    "num12",
    "CaseOnly",
    "caseonly",
    "CASEANY",
    "user",
    "userx",
    "user42",
    "xyz",
    "XYZ",
    "long",
    "nothing",
]
CIDR_KEYS = [
    "192.168.1.1",
    "192.168.1.2",
    "192.168.2.1",
    "192.169.0.1",
    "10.1.2.3",
    "11.0.0.1",
    "2001:db8::1",
    "2001:DB8::2",
    "2001:db9::1",
    "::ffff:10.1.1.1",
    "172.16.5.9",
    "172.17.0.1",
    "172.16.9.9",
    "1.2.3.4",
    "192.168.001.1",
    "not-an-address",
]


def test_regexp_equals_debian(built, ours, debian):
    """First match, case-insensitive unless the i flag toggles it, $1 and
    ${1}, `!` rules and if/endif, a continued result."""
    for side in (ours, debian):
        side.copy("regexp")
    assert_same(ours, debian, "postmap", [("-q", key, "regexp:{dir}/regexp") for key in REGEXP_KEYS])
    assert ours.run("postmap", "-q", "a-b@sub.example", "regexp:{dir}/regexp").stdout == (
        "redirect b.a@other.example $5\n"
    )


def test_pcre_equals_debian(built, ours, debian_pcre):
    for side in (ours, debian_pcre):
        side.copy("pcre")
    assert_same(ours, debian_pcre, "postmap", [("-q", key, "pcre:{dir}/pcre") for key in PCRE_KEYS])
    assert ours.run("postmap", "-q", "user42", "pcre:{dir}/pcre").stdout == "user number 42\n"


def test_cidr_equals_debian(built, ours, debian):
    """IPv4 and IPv6 networks, the first match, `!` and if/endif."""
    for side in (ours, debian):
        side.copy("cidr")
    assert_same(ours, debian, "postmap", [("-q", key, "cidr:{dir}/cidr") for key in CIDR_KEYS])
    assert ours.run("postmap", "-q", "192.168.1.2", "cidr:{dir}/cidr").stdout == "the /24\n"


def test_pattern_tables_with_keys_on_stdin(built, ours, debian):
    for side in (ours, debian):
        side.copy("regexp")
        side.copy("cidr")
    keys = "".join(f"{key}\n" for key in REGEXP_KEYS + CIDR_KEYS)
    mine, theirs = both(ours, debian, "postmap", "-q", "-", "regexp:{dir}/regexp", "cidr:{dir}/cidr", input=keys)
    assert mine == theirs


# --- 7. cdb: files shared with Debian's postmap ----------------------------------------------------


def test_cdb_built_by_debian_read_by_ours(built, ours, debian_cdb):
    for flags in ((), ("-N",)):
        debian_cdb.copy("access")
        ok(debian_cdb.run("postmap", "-w", *flags, "cdb:{dir}/access"))
        table = f"cdb:{debian_cdb.path('access')}"
        for key in ACCESS_KEYS:
            mine = ours.run("postmap", "-q", key, table)
            theirs = debian_cdb.run("postmap", "-q", key, table)
            assert (mine.returncode, mine.stdout, mine.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), (
                flags,
                key,
            )


def test_cdb_built_by_ours_read_by_debian(built, ours, debian_cdb):
    for flags in ((), ("-N",)):
        ours.copy("access")
        ok(ours.run("postmap", "-w", *flags, "cdb:{dir}/access"))
        table = f"cdb:{ours.path('access')}"
        for key in ACCESS_KEYS:
            mine = ours.run("postmap", "-q", key, table)
            theirs = debian_cdb.run("postmap", "-q", key, table)
            assert (mine.returncode, mine.stdout, mine.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), (
                flags,
                key,
            )


# --- 8. every type that postconf -m lists opens -------------------------------------------------------


def _type_examples(side: Side) -> dict[str, tuple[str, str, str | None]]:
    """type -> (a table of that type, a key it finds, the value or None
    when it depends on the machine).  mysql: is not here: test_mysql.py
    covers it (it needs a server)."""
    return {
        "hash": (f"hash:{side.root}/access", "example.com", "OK"),
        "btree": (f"btree:{side.root}/access", "example.com", "OK"),
        "cdb": (f"cdb:{side.root}/access", "example.com", "OK"),
        "texthash": (f"texthash:{side.root}/access", "example.com", "OK"),
        "inline": ("inline:{k=v}", "K", "v"),
        "static": ("static:OK", "anything", "OK"),
        "unix": ("unix:passwd.byname", "root", None),
        "regexp": (f"regexp:{side.root}/regexp", "spam", "REJECT spam"),
        "pcre": (f"pcre:{side.root}/pcre", "spam", "REJECT spam"),
        "cidr": (f"cidr:{side.root}/cidr", "10.1.2.3", "ten"),
        "proxy": (f"proxy:hash:{side.root}/access", "example.com", "OK"),
    }


def listed_types(ours: Side) -> list[str]:
    result = ok(ours.run("postconf", "-m"))
    return result.stdout.split()


def test_every_listed_type_opens(built, ours):
    types = listed_types(ours)
    assert "hash" in types
    for fixture in ("access", "regexp", "pcre", "cidr"):
        ours.copy(fixture)
    for kind in ("hash", "btree", "cdb"):
        ok(ours.run("postmap", "-w", f"{kind}:{{dir}}/access"))
    examples = _type_examples(ours)
    problems = []
    for kind in types:
        if kind == "mysql":
            continue  # test_mysql.py
        if kind not in examples:
            problems.append(f"{kind}: listed by postconf -m, but this test has no example table for it")
            continue
        table, key, value = examples[kind]
        result = ours.run("postmap", "-q", key, table)
        if result.returncode != 0 or (value is not None and result.stdout != f"{value}\n"):
            problems.append(f"{table} -q {key}: exit {result.returncode}, {result.stdout!r} {result.stderr!r}")
    assert not problems, "\n".join(problems)


# --- 9. the files: atomic rebuilds, modes, owners -----------------------------------------------------


def test_rebuild_is_atomic(built, ours):
    """While the table is rebuilt 30 times, readers always find the key:
    a Python loop that opens the .db file and looks the key up itself, and
    postmap -q run over and over."""
    filler = "".join(f"filler{i}@example.com value number {i}\n" for i in range(20000))
    source = ours.path("t")
    db = ours.path("t.db")

    def write_source(n: int) -> None:
        source.write_text(f"key value {n}\n{filler}")

    write_source(0)
    ok(ours.run("postmap", "hash:{dir}/t"))
    stop = threading.Event()
    failures: list[str] = []
    counts = {"file": 0, "postmap": 0}

    def file_reader():
        while not stop.is_set():
            try:
                with open(db, "rb") as handle:
                    data = handle.read()
                value = cdb_get(data, b"key")
            except Exception as err:  # noqa: BLE001 - any failure is the finding
                failures.append(f"reading {db}: {err!r}")
                return
            if value is None or not value.startswith(b"value "):
                failures.append(f"{db}: key not found ({len(data)} bytes)")
                return
            counts["file"] += 1

    def postmap_reader():
        while not stop.is_set():
            result = ours.run("postmap", "-q", "key", "hash:{dir}/t")
            if result.returncode != 0 or not result.stdout.startswith("value "):
                failures.append(f"postmap -q: exit {result.returncode}, {result.stdout!r} {result.stderr!r}")
                return
            counts["postmap"] += 1

    readers = [threading.Thread(target=file_reader), threading.Thread(target=postmap_reader)]
    for reader in readers:
        reader.start()
    try:
        for n in range(1, 31):
            write_source(n)
            ok(ours.run("postmap", "hash:{dir}/t"))
            if failures:
                break
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert not failures, failures
    assert counts["file"] >= 30 and counts["postmap"] >= 3, counts
    assert ok(ours.run("postmap", "-q", "key", "hash:{dir}/t")).stdout == "value 30\n"
    assert [p.name for p in ours.root.iterdir() if p.name.startswith("t.")] == ["t.db"], "temporary files left"


def test_mode_follows_source(built, ours):
    ours.copy("access")
    ours.path("access").chmod(0o640)
    ok(ours.run("postmap", "-w", "{dir}/access"))
    assert stat.S_IMODE(ours.path("access.db").stat().st_mode) == 0o640
    ok(ours.run("postmap", "-w", "-p", "{dir}/access"))
    assert stat.S_IMODE(ours.path("access.db").stat().st_mode) == 0o644
    ours.copy("aliases")
    ours.path("aliases").chmod(0o600)
    ok(ours.run("postalias", "-w", "{dir}/aliases"))
    assert stat.S_IMODE(ours.path("aliases.db").stat().st_mode) == 0o600


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give files away")
def test_owner_follows_source_unless_o(built, ours):
    nobody = pwd.getpwnam("nobody")
    ours.copy("access")
    os.chown(ours.path("access"), nobody.pw_uid, nobody.pw_gid)
    ok(ours.run("postmap", "-w", "{dir}/access"))
    st = ours.path("access.db").stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    ok(ours.run("postmap", "-w", "-o", "{dir}/access"))
    st = ours.path("access.db").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give files away")
def test_postalias_owner_follows_source(built, ours):
    nobody = pwd.getpwnam("nobody")
    ours.copy("aliases")
    os.chown(ours.path("aliases"), nobody.pw_uid, nobody.pw_gid)
    ok(ours.run("postalias", "-w", "{dir}/aliases"))
    assert ours.path("aliases.db").stat().st_uid == nobody.pw_uid
    ok(ours.run("postalias", "-w", "-o", "{dir}/aliases"))
    assert ours.path("aliases.db").stat().st_uid == 0
