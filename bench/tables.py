#!/usr/bin/env python3
"""Table speed, ours against Debian's postmap (not a test; `make bench`).

Generates a source file of 1,000,000 `key<N>@example<M>.com value ...`
lines, builds it as hash: with Debian's /usr/sbin/postmap and with ours
(target/release/postmap), each in a directory of its own (Debian's .db is
Berkeley DB, ours CDB), then looks up 1,000,000 random keys, half of them
present, through `postmap -q - hash:FILE > /dev/null` with each.

For every run it reports wall-clock seconds, CPU seconds (user + system)
and peak RSS of the postmap process, taken from wait4(2): the same
accounting as resource.getrusage(RUSAGE_CHILDREN) deltas, but per process,
so the peak RSS is that run's own.

The issue's targets: building at least as fast as Debian's postmap, and at
least 1,000,000 lookups per second on one core.

    python3 bench/tables.py [--lines N] [--lookups N] [--keep]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = REPO / "target" / "release" / "postmap"
DEBIAN = Path("/usr/sbin/postmap")
DOMAINS = 1000


@dataclass
class Run:
    wall: float
    cpu: float
    max_rss_kib: int


def measure(argv: list[str], env: dict, stdin_path: Path | None = None) -> Run:
    """Runs argv (stdout to /dev/null) and returns its resource usage; exits
    the benchmark when it fails."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr = child.stderr.read().decode(errors="replace")
        child.stderr.close()
    finally:
        if stdin_path:
            stdin.close()
    # -q - exits 1 only when no key at all was found: a failure here.
    if child.returncode != 0:
        sys.exit(f"{' '.join(argv)}: exit {child.returncode}\n{stderr}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def env_for(config: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env.update(LC_ALL="C", MAIL_CONFIG=str(config))
    return env


def key(n: int) -> str:
    return f"key{n}@example{n % DOMAINS}.com"


def write_source(path: Path, lines: int) -> None:
    with open(path, "w") as out:
        for n in range(lines):
            out.write(f"{key(n)} value {n} smtp:[relay{n % 97}.example.net]:587\n")


def write_keys(path: Path, lines: int, lookups: int, seed: int = 4711) -> None:
    """Random keys, about half present: a missing one has a number past
    the end or the wrong domain."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        for _ in range(lookups):
            n = rng.randrange(lines)
            if rng.random() < 0.5:
                out.write(key(n) + "\n")
            elif rng.random() < 0.5:
                out.write(key(n + lines) + "\n")
            else:
                out.write(f"key{n}@example{(n + 1) % DOMAINS}.com\n")


def sanity_check(sides: dict, sample: Path) -> None:
    """Both programs answer the same for a sample of the keys."""
    outputs = {}
    for name, (binary, directory) in sides.items():
        with open(sample, "rb") as keys:
            result = subprocess.run(
                [str(binary), "-q", "-", f"hash:{directory}/table"],
                env=env_for(directory / "etc"),
                stdin=keys,
                capture_output=True,
            )
        outputs[name] = result.stdout
    if outputs["ours"] != outputs["debian"]:
        sys.exit("ours and Debian's postmap answer differently for the sample keys")
    if not outputs["ours"]:
        sys.exit("no sample key was found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    for binary, hint in ((OURS, "run `make all`"), (DEBIAN, "install Debian's postfix: `make test-tools`")):
        if not binary.is_file():
            sys.exit(f"{binary} is missing: {hint}")

    work = Path(tempfile.mkdtemp(prefix="postmap-bench-"))
    try:
        print(f"work directory {work}: {args.lines:,} source lines, {args.lookups:,} lookups", flush=True)
        source = work / "source"
        keys = work / "keys"
        sample = work / "sample"
        write_source(source, args.lines)
        write_keys(keys, args.lines, args.lookups)
        write_keys(sample, args.lines, 2000, seed=1)

        sides = {"debian": (DEBIAN, work / "debian"), "ours": (OURS, work / "ours")}
        for binary, directory in sides.values():
            (directory / "etc").mkdir(parents=True)
            (directory / "etc" / "main.cf").write_text("")
            shutil.copyfile(source, directory / "table")

        results: dict[str, dict[str, Run]] = {}
        for name, (binary, directory) in sides.items():
            env = env_for(directory / "etc")
            build = measure([str(binary), f"hash:{directory}/table"], env)
            print(f"  {name:6} build   {build.wall:7.2f} s", flush=True)
            lookup = measure([str(binary), "-q", "-", f"hash:{directory}/table"], env, stdin_path=keys)
            print(f"  {name:6} lookups {lookup.wall:7.2f} s", flush=True)
            results[name] = {"build": build, "lookup": lookup}
        sanity_check(sides, sample)
        report(results, args.lookups)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(results: dict, lookups: int) -> None:
    ours, debian = results["ours"], results["debian"]

    def row(label: str, mine: float, theirs: float, fmt: str) -> None:
        ratio = mine / theirs if theirs else float("nan")
        print(f"{label:28} {format(mine, fmt):>14} {format(theirs, fmt):>14} {ratio:>9.2f}")

    print()
    print(f"{'':28} {'ours':>14} {'Debian':>14} {'ours/Deb':>9}")
    row("build wall (s)", ours["build"].wall, debian["build"].wall, ".2f")
    row("build CPU (s)", ours["build"].cpu, debian["build"].cpu, ".2f")
    row("build peak RSS (MiB)", ours["build"].max_rss_kib / 1024, debian["build"].max_rss_kib / 1024, ".1f")
    row("lookups/s (wall)", lookups / ours["lookup"].wall, lookups / debian["lookup"].wall, ",.0f")
    row("lookups/s (CPU)", lookups / ours["lookup"].cpu, lookups / debian["lookup"].cpu, ",.0f")
    row("lookup peak RSS (MiB)", ours["lookup"].max_rss_kib / 1024, debian["lookup"].max_rss_kib / 1024, ".1f")
    print()
    build_ok = ours["build"].wall <= debian["build"].wall
    rate = lookups / ours["lookup"].wall
    print(f"target: build at least as fast as Debian's postmap: {'met' if build_ok else 'NOT met'}")
    print(f"target: >= 1,000,000 lookups/s on one core: {'met' if rate >= 1_000_000 else 'NOT met'} ({rate:,.0f}/s)")


if __name__ == "__main__":
    main()
