"""The benchmark sections of one `python -m bench` run, in the order they run.

Each section adds measurements to the shared `Results`. A section that fails is
recorded as skipped with its error, so one missing piece never hides the others.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from bench import arq_raw
from bench.arq_raw import STOCK, TUNED, ArqConfig
from bench.results import Measurement, Ratio, Results, Target


@dataclass
class Options:
    """What the command line chose; counts are numbers of runs or jobs."""

    full: bool = False
    jobs: int = 2000
    latency_runs: int = 200
    rate_per_second: float = 200.0
    rate_seconds: float = 5.0
    postgres_admin_url: str | None = "postgresql://postgres@127.0.0.1:5432/postgres"
    scale_runs: int = 100_000
    profile: bool = False
    sections: list[str] = field(default_factory=list)
    write_page: bool = True


@dataclass
class Context:
    """What every section shares: options, the private Redis and the results so far."""

    options: Options
    redis_url: str
    results: Results
    postgres_version: str | None = None

    def target_lines(self) -> list[str]:
        return self.results.target_lines(TARGETS)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)


RAW_ARQ = "1. raw arq"
END_TO_END = "2. taskgate end to end"
END_TO_END_4 = "3. four workers"
LATENCY = "4. latency"
POLICY = "5. policy engine"
SCALING = "6. scaling"

RAW_ARQ_4 = ArqConfig("tuned", max_jobs=100, poll_delay=0.01, processes=4)


def raw_arq_throughput(context: Context) -> None:
    jobs = context.options.jobs
    for key, config in (("arq.stock", STOCK), ("arq.tuned", TUNED), ("arq.tuned.4", RAW_ARQ_4)):
        run = arq_raw.measure_throughput(context.redis_url, config, jobs)
        context.results.add(
            Measurement(
                RAW_ARQ,
                key,
                f"arq {config.label}, {config.processes} worker process"
                + ("es" if config.processes > 1 else ""),
                run.per_second,
                "jobs/s",
                f"N={jobs}, max_jobs {config.max_jobs}, poll_delay {config.poll_delay} s",
            )
        )


def raw_arq_latency(context: Context) -> None:
    runs = min(context.options.latency_runs, 50)
    for key, config in (("arq.stock", STOCK), ("arq.tuned", TUNED)):
        latency = arq_raw.measure_latency(context.redis_url, config, runs)
        for which, label in (("to_start_ms", "to start"), ("to_finish_ms", "to result")):
            for fraction, name in ((0.5, "p50"), (0.99, "p99")):
                context.results.add(
                    Measurement(
                        LATENCY,
                        f"{key}.one.{which}.{name}",
                        f"arq {config.label}, one at a time, enqueue {label} {name}",
                        latency.p(which, fraction),
                        "ms",
                        f"{runs} jobs; arq's timestamps have 1 ms resolution",
                    )
                )


Section = Callable[[Context], None]

SECTIONS: list[tuple[str, str, Section]] = [
    ("arq", RAW_ARQ, raw_arq_throughput),
    ("arq-latency", LATENCY, raw_arq_latency),
]

TARGETS = [
    Target("policy engine transitions per second", "policy.transitions", 20_000, at_most=False),
    Target("one at a time, .delay() to Running p50 (ms)", "tg.one.running.p50", 5, at_most=True),
    Target("one at a time, .delay() to result p50 (ms)", "tg.one.result.p50", 10, at_most=True),
    Target("one at a time, .delay() to result p99 (ms)", "tg.one.result.p99", 50, at_most=True),
    Target("service RSS with the scale runs stored (MB)", "scale.service.rss", 150, at_most=True),
]

RATIOS = [
    Ratio("taskgate SQLite 1 worker / tuned raw arq", "tg.sqlite.1", "arq.tuned", 0.5),
    Ratio("taskgate PostgreSQL 1 worker / tuned raw arq", "tg.postgres.1", "arq.tuned", 0.5),
    Ratio("taskgate SQLite 4 workers / raw arq 4 workers", "tg.sqlite.4", "arq.tuned.4", 0.5),
    Ratio(
        "taskgate PostgreSQL 4 workers / raw arq 4 workers", "tg.postgres.4", "arq.tuned.4", 0.5
    ),
    Ratio("100 task keys / 1 task key, one worker", "scale.keys.100", "scale.keys.1", 0.8),
]


def run_sections(context: Context) -> None:
    """Run the chosen sections in order; record a failing one as skipped and go on."""
    chosen = context.options.sections
    for name, title, section in SECTIONS:
        if chosen and name not in chosen:
            continue
        print(f"\n== {title} ({name})", flush=True)
        try:
            section(context)
        # A benchmark run reports what it could measure: any failure of one section,
        # including an import error of a part still being built, is written down
        # as a skip with its message and the run goes on to the next section.
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            context.results.skip(title, name, f"{type(error).__name__}: {error}")
