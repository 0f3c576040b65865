"""Run the benchmarks: ``python -m bench [--full] [--only SECTION ...]`` from the repository root.

The run starts its own redis-server on a free loopback port, measures each section,
writes docs/benchmarks.md and prints the ratio lines last.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

from bench.report import results_block, write_page
from bench.results import Results
from bench.suite import RATIOS, SECTIONS, Context, Options, run_sections
from tests.servers import RedisServer

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="also run the long parts: more jobs and the 100,000-run storage measurement",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="raw arq jobs per throughput measurement (default 2000, 10000 with --full)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="taskgate runs per throughput measurement (default 300, 2000 with --full)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="SECTION",
        choices=[name for name, _, _ in SECTIONS],
        help="run only these sections: " + ", ".join(name for name, _, _ in SECTIONS),
    )
    parser.add_argument(
        "--postgres-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="libpq URL of a loopback PostgreSQL where the user may create databases; "
        "'none' skips PostgreSQL",
    )
    parser.add_argument(
        "--scale-runs",
        type=int,
        default=None,
        help="runs inserted for the storage measurement (default 20000, 100000 with --full)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the service and a worker with py-spy during the SQLite one-worker run",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the results without writing the page"
    )
    arguments = parser.parse_args(argv)

    options = Options(
        full=arguments.full,
        jobs=arguments.jobs or (10_000 if arguments.full else 2000),
        taskgate_runs=arguments.runs or (2000 if arguments.full else 300),
        postgres_admin_url=(
            None if arguments.postgres_admin_url == "none" else arguments.postgres_admin_url
        ),
        scale_runs=arguments.scale_runs or (100_000 if arguments.full else 20_000),
        profile=arguments.profile,
        sections=arguments.only,
        write_page=not arguments.no_write,
    )
    return options


def exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit, so every started process is stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    options = parse_options(argv)
    command = shlex.join(["python", "-m", "bench", *argv])
    started = time.monotonic()

    server = RedisServer().start()
    try:
        context = Context(options=options, redis_url=server.url, results=Results())
        with context.redis() as client:
            redis_version = client.info("server")["redis_version"]
        run_sections(context)
    finally:
        server.stop()

    ratio_lines = context.results.ratio_lines(RATIOS)
    target_lines = context.target_lines()
    if options.write_page:
        block = results_block(
            context.results,
            command,
            target_lines + ratio_lines,
            redis_version,
            context.postgres_version,
            time.monotonic() - started,
        )
        write_page(PAGE, block)
        print(f"\nwrote {PAGE}")
    print()
    for line in target_lines + ratio_lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
