"""Command line: `python -m bench NAME [--quick]` prints JSON lines; `python -m bench --list`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import IO, Any

from bench import UnknownBench, load, names
from bench.harness import SUMMARY_KEYS

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run a Bookwarden benchmark.")
    parser.add_argument("name", nargs="?", help="benchmark to run (see --list)")
    parser.add_argument("--quick", action="store_true", help="small data set; well under a minute")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    return parser


def _json_stdout() -> IO[str]:
    """A private handle on stdout for JSON lines; fd 1 itself is pointed at stderr.

    Anything else that writes to stdout (a stray print, a child process such as pg_ctl, a library
    logging to stdout) then lands on stderr, so stdout stays pure JSON lines.
    """
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


def _emit(out: IO[str], line: dict[str, Any]) -> None:
    out.write(json.dumps(line, default=str) + "\n")
    out.flush()


def run(name: str, quick: bool) -> int:
    try:
        bench = load(name)
    except UnknownBench:
        print(f"unknown benchmark {name!r}; available: {', '.join(names()) or 'none'}", file=sys.stderr)
        return EXIT_USAGE
    out = _json_stdout()
    last: dict[str, Any] | None = None
    for line in bench(quick):
        _emit(out, line)
        last = line
    if last is None or not all(key in last for key in SUMMARY_KEYS):
        print(f"benchmark {name!r} ended without a summary line", file=sys.stderr)
        return 1
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the harness still stops its embedded server and drops its database."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(names()))
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print("a benchmark name is required (see --list)", file=sys.stderr)
        return EXIT_USAGE
    return run(args.name, args.quick)


if __name__ == "__main__":
    sys.exit(main())
