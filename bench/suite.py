"""The benchmark sections of one `python -m bench` run, in the order they run.

Each section adds measurements to the shared `Results`. A section that fails is
recorded as skipped with its error, so one missing piece never hides the others.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from bench import arq_raw, end_to_end
from bench.arq_raw import STOCK, TUNED, ArqConfig
from bench.databases import PostgresDatabase, SqliteDatabase
from bench.results import Measurement, Ratio, Results, Target


@dataclass
class Options:
    """Choices from the command line; counts are numbers of runs or jobs."""

    full: bool = False
    jobs: int = 2000  # raw arq jobs per throughput run
    taskgate_runs: int = 300  # taskgate runs per throughput run
    latency_runs: int = 200
    rate_per_second: float = 200.0
    rate_seconds: float = 5.0
    postgres_admin_url: str | None = "postgresql://postgres@127.0.0.1:5432/postgres"
    scale_runs: int = 20_000
    profile: bool = False
    sections: list[str] = field(default_factory=list)
    write_page: bool = True


@dataclass
class Context:
    """State every section shares: options, the private Redis and the results so far."""

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

# Seconds py-spy samples each process; the default 300 runs take longer than this.
PROFILE_SECONDS = 8

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
                f"N={jobs}, max_jobs {config.max_jobs}, poll_delay {config.poll_delay} s, "
                f"{run.redis_commands / jobs:.1f} Redis commands per job",
            )
        )


def raw_arq_latency(context: Context) -> None:
    # Stock arq waits about half a second per job here, so it gets fewer runs.
    for key, config, runs in (("arq.stock", STOCK, 20), ("arq.tuned", TUNED, 100)):
        latency = arq_raw.measure_latency(context.redis_url, config, runs)
        for series, label in (("to_start_ms", "to start"), ("to_finish_ms", "to result")):
            for fraction, name in ((0.5, "p50"), (0.99, "p99")):
                context.results.add(
                    Measurement(
                        LATENCY,
                        f"{key}.one.{series}.{name}",
                        f"arq {config.label}, one at a time, enqueue {label} {name}",
                        latency.p(series, fraction),
                        "ms",
                        f"{runs} jobs; arq's timestamps have 1 ms resolution",
                    )
                )


def databases(context: Context) -> list:
    """Return a fresh SQLite database and, unless disabled, a fresh PostgreSQL one."""
    found: list = [SqliteDatabase()]
    if context.options.postgres_admin_url:
        postgres = PostgresDatabase(context.options.postgres_admin_url)
        context.postgres_version = postgres.version()
        found.append(postgres)
    return found


# Processes whose CPU time each end-to-end run reports, with the name the table gives.
CPU_USERS = (
    ("service", "service"),
    ("worker", "worker"),
    ("client", "submitting process"),
    ("redis", "redis-server"),
)


def add_end_to_end(context: Context, section: str, key: str, label: str, run) -> None:
    results = context.results
    detail = f"N={run.runs}"
    results.add(Measurement(section, key, label, run.per_second, "runs/s", detail))
    for process, process_label in CPU_USERS:
        results.add(
            Measurement(
                section,
                f"{key}.cpu.{process}",
                f"{label}: {process_label} CPU per run",
                run.cpu_ms_per_run(process),
                "ms",
                "user + system time over the timed runs"
                + (", all workers" if process == "worker" else ""),
            )
        )
    busiest = sorted(run.redis_calls.items(), key=lambda item: -item[1])[:6]
    results.add(
        Measurement(
            section,
            f"{key}.redis.calls",
            f"{label}: Redis commands per run",
            sum(run.redis_calls.values()) / run.runs,
            "commands",
            "most called: "
            + ", ".join(f"{name} {calls / run.runs:.1f}" for name, calls in busiest),
        )
    )
    results.add(
        Measurement(
            section,
            f"{key}.rss.service",
            f"{label}: service peak RSS",
            run.service_peak_rss / 1e6,
            "MB",
        )
    )
    results.add(
        Measurement(
            section,
            f"{key}.rss.worker",
            f"{label}: worker peak RSS",
            run.worker_peak_rss / 1e6,
            "MB",
            "largest of the worker processes",
        )
    )


def taskgate_throughput(context: Context, workers: int, section: str) -> None:
    runs = context.options.taskgate_runs
    for database in databases(context):
        key = f"tg.{database.label.lower()}.{workers}"
        config = end_to_end.stack_config(context.redis_url, database, workers=workers)
        profile = context.options.profile and workers == 1 and database.label == "SQLite"
        run = end_to_end.measure_throughput(
            config, runs, profile_seconds=PROFILE_SECONDS if profile else None
        )
        for summary in run.profiles:
            lines = summary.lines()
            print("\n".join(lines), flush=True)
            context.results.profiles.extend(lines)
        label = f"taskgate on {database.label}, {workers} worker process" + (
            "es" if workers > 1 else ""
        )
        add_end_to_end(context, section, key, label, run)


def taskgate_one_worker(context: Context) -> None:
    taskgate_throughput(context, 1, END_TO_END)


def taskgate_four_workers(context: Context) -> None:
    taskgate_throughput(context, 4, END_TO_END_4)


def taskgate_latency(context: Context) -> None:
    options = context.options
    rate = options.rate_per_second
    measured = context.results.get("tg.sqlite.1")
    if measured is not None and measured.value * 0.5 < rate:
        # A rate above what the stack sustains measures a growing backlog, not latency.
        rate = max(1.0, round(measured.value * 0.5))
    config = end_to_end.stack_config(context.redis_url, SqliteDatabase())
    single, paced = end_to_end.measure_latency(
        config, options.latency_runs, rate, options.rate_seconds
    )
    for samples, mode, detail in (
        (single, "one", f"{options.latency_runs} runs one at a time"),
        (paced, "rate", f"{int(rate * options.rate_seconds)} runs at {rate:g}/s"),
    ):
        name = "one at a time" if mode == "one" else f"at {rate:g} runs/s"
        note = detail
        if samples.completed_per_second is not None:
            note += f", {samples.completed_per_second:.1f}/s completed"
        if samples.missing_running:
            note += f"; Running not heard for {samples.missing_running}"
        series_names = (
            ("to_accepted_ms", "accepted", ".delay() call to return"),
            ("to_running_ms", "running", ".delay() to Running"),
            ("to_result_ms", "result", ".delay() to the result"),
        )
        for series, target, reached in series_names:
            for fraction, quantile in ((0.5, "p50"), (0.99, "p99")):
                context.results.add(
                    Measurement(
                        LATENCY,
                        f"tg.{mode}.{target}.{quantile}",
                        f"taskgate on SQLite, {name}, {reached} {quantile}",
                        samples.p(series, fraction),
                        "ms",
                        note,
                    )
                )


def policy_engine(context: Context) -> None:
    from bench import policy_engine as engine  # noqa: PLC0415

    runs = 20_000 if context.options.full else 5000
    rate = engine.measure_transitions_per_second(runs)
    if context.options.profile:
        lines = engine.profile_lines(1000)
        print("\n".join(lines), flush=True)
        context.results.profiles.extend(lines)
    context.results.add(
        Measurement(
            POLICY,
            "policy.transitions",
            "background policy, in memory, one process",
            rate,
            "transitions/s",
            f"{runs} runs x Scheduled, Pending, Running, Completed",
        )
    )


def task_key_scaling(context: Context) -> None:
    from bench.tasks import KEYED_NOOPS  # noqa: PLC0415

    runs = context.options.taskgate_runs
    for count in (1, 10, 100):
        tasks = KEYED_NOOPS[:count]
        config = end_to_end.stack_config(context.redis_url, SqliteDatabase())
        config.task_keys = [item.task_key for item in tasks]
        run = end_to_end.measure_throughput(config, runs, tasks=tasks)
        context.results.add(
            Measurement(
                SCALING,
                f"scale.keys.{count}",
                f"taskgate on SQLite, {count} task key{'s' if count > 1 else ''}, one worker",
                run.per_second,
                "runs/s",
                f"N={runs}, round-robin over the keys",
            )
        )


def storage_scale(context: Context) -> None:
    from bench.storage_scale import measure_storage  # noqa: PLC0415

    runs = context.options.scale_runs
    for database in databases(context):
        stored = measure_storage(context.redis_url, database, runs)
        label = database.label
        detail = f"{stored.queued_runs:,} queued + {stored.finished_runs:,} finished runs"
        add = context.results.add
        add(
            Measurement(
                SCALING,
                f"scale.bytes.queued.{label.lower()}",
                f"{label} bytes per queued run",
                stored.bytes_per_queued_run,
                "bytes",
                detail,
            )
        )
        add(
            Measurement(
                SCALING,
                f"scale.bytes.finished.{label.lower()}",
                f"{label} bytes per finished run",
                stored.bytes_per_finished_run,
                "bytes",
                detail,
            )
        )
        add(
            Measurement(
                SCALING,
                f"scale.service.rss.{label.lower()}",
                f"service RSS with the runs stored, on {label}",
                stored.service_rss / 1e6,
                "MB",
                detail + "; after the reconciler queued every Scheduled run",
            )
        )
        add(
            Measurement(
                SCALING,
                f"scale.service.peak.{label.lower()}",
                f"service peak RSS with the runs stored, on {label}",
                stored.service_peak_rss / 1e6,
                "MB",
                detail,
            )
        )
        add(
            Measurement(
                SCALING,
                f"scale.redis.queued.{label.lower()}",
                f"Redis bytes per queued run, on {label}",
                stored.redis_bytes_per_queued_run,
                "bytes",
                "used_memory growth while the reconciler restored the queue",
            )
        )


Section = Callable[[Context], None]

SECTIONS: list[tuple[str, str, Section]] = [
    ("arq", RAW_ARQ, raw_arq_throughput),
    ("taskgate", END_TO_END, taskgate_one_worker),
    ("taskgate-4", END_TO_END_4, taskgate_four_workers),
    ("arq-latency", LATENCY, raw_arq_latency),
    ("latency", LATENCY, taskgate_latency),
    ("policy", POLICY, policy_engine),
    ("keys", SCALING, task_key_scaling),
    ("storage", SCALING, storage_scale),
]

TARGETS = [
    Target("policy engine transitions per second", "policy.transitions", 20_000, at_most=False),
    Target("one at a time, .delay() to Running p50 (ms)", "tg.one.running.p50", 5, at_most=True),
    Target("one at a time, .delay() to result p50 (ms)", "tg.one.result.p50", 10, at_most=True),
    Target("one at a time, .delay() to result p99 (ms)", "tg.one.result.p99", 50, at_most=True),
    Target(
        "service peak RSS with the stored runs, SQLite (MB)",
        "scale.service.peak.sqlite",
        150,
        at_most=True,
    ),
]

RATIOS = [
    Ratio("taskgate SQLite 1 worker / tuned raw arq", "tg.sqlite.1", "arq.tuned", 0.5),
    Ratio("taskgate PostgreSQL 1 worker / tuned raw arq", "tg.postgresql.1", "arq.tuned", 0.5),
    Ratio("taskgate SQLite 4 workers / raw arq 4 workers", "tg.sqlite.4", "arq.tuned.4", 0.5),
    Ratio(
        "taskgate PostgreSQL 4 workers / raw arq 4 workers", "tg.postgresql.4", "arq.tuned.4", 0.5
    ),
    Ratio("100 task keys / 1 task key, one worker", "scale.keys.100", "scale.keys.1", 0.8),
]


def run_sections(context: Context) -> None:
    """Run the chosen sections in order; record a failing one as skipped and go on."""
    chosen = context.options.sections
    for name, title, section in SECTIONS:
        if chosen and name not in chosen:
            continue
        load = os.getloadavg()[0]
        print(f"\n== {title} ({name}); 1-minute load average {load:.1f}", flush=True)
        context.results.notes.append(
            f"{title} ({name}) started at a 1-minute load average of {load:.1f} "
            f"on {os.cpu_count()} cores"
        )
        try:
            section(context)
        # A benchmark run reports what it could measure. Any failure of one section,
        # even an import error, is recorded as a skip with its message, and the run
        # goes on to the next section.
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            context.results.skip(title, name, f"{type(error).__name__}: {error}")
