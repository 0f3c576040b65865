"""taskgate end to end: `.delay()` in this process, one service process, worker processes.

Every run takes the full path: the create request over the Redis transport, the
background policy for Scheduled, the SQL commit, the enqueue, the worker's claim
and Running, the no-op call, Completed, and the future learning of the result.

Throughput counts from the first `.delay()` to the last `.result()` returning.
Latency takes the moment `.delay()` is called as zero. It stops one clock when
`.delay()` returns (the service accepted the run), one when this process hears the
Running event on the events channel, and one when `.result()` returns.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from bench.databases import BenchDatabase
from bench.harness import BenchmarkError, Deadline, ProcessGroup, percentile
from bench.profiling import finish_recording, start_recording
from bench.stack import KEY_PREFIX, Stack, StackConfig, start_stack

# Threads that call `.delay()` at once in a throughput run, as a web server's
# request threads would. The calls share the process's one client connection.
SUBMITTING_THREADS = 16
RESULT_TIMEOUT_SECONDS = 120.0


def configure_client(redis_url: str) -> None:
    """Point this process's taskgate client at the benchmark's Redis."""
    from queue_server.settings import Settings  # noqa: PLC0415
    from workers.client import configure  # noqa: PLC0415

    os.environ["TASKGATE_REDIS_URL"] = redis_url
    os.environ["TASKGATE_KEY_PREFIX"] = KEY_PREFIX
    configure(Settings(redis_url=redis_url, key_prefix=KEY_PREFIX))


def close_client() -> None:
    """Close this process's taskgate client, so its reply reader stops before Redis does."""
    from workers.client import get_client  # noqa: PLC0415

    get_client().close()


@dataclass(frozen=True)
class EndToEndRun:
    runs: int
    seconds: float
    service_peak_rss: int
    worker_peak_rss: int
    service_cpu_seconds: float  # user + system CPU time the service used during the timed runs
    worker_cpu_seconds: float  # the same, summed over the worker processes
    client_cpu_seconds: float  # the same for this process, which submits and waits
    redis_cpu_seconds: float  # the redis-server's, from INFO's used_cpu_sys and used_cpu_user
    profiles: list = field(default_factory=list)  # py-spy summaries, when asked for
    # Redis commands of every process during the timed runs, by command name.
    redis_calls: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds

    def cpu_ms_per_run(self, which: str) -> float:
        return getattr(self, f"{which}_cpu_seconds") * 1000 / self.runs


@dataclass
class LatencySamples:
    to_accepted_ms: list[float] = field(default_factory=list)  # until .delay() returned
    to_running_ms: list[float] = field(default_factory=list)
    to_result_ms: list[float] = field(default_factory=list)
    missing_running: int = 0  # runs whose Running event this process did not hear
    completed_per_second: float | None = None  # set by a paced run

    def p(self, series: str, fraction: float) -> float:
        return percentile(getattr(self, series), fraction)


class RunningListener:
    """Notes, per run id, when this process hears the run's Running event."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(f"{KEY_PREFIX}:events")
        self.heard_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="running-listener", daemon=True)

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            heard_at = time.perf_counter()
            event = json.loads(message["data"])
            if event["state_type"] == "RUNNING":
                self.heard_at.setdefault(event["run_id"], heard_at)

    def __enter__(self) -> RunningListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()
        self.client.close()


def fresh_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


def delay_from_threads(tasks: Sequence, runs: int, group: ProcessGroup) -> list:
    """Call `.delay()` `runs` times from `SUBMITTING_THREADS` daemon threads; return the futures.

    Runs go round-robin over `tasks`. A `.delay()` whose service has died blocks while it
    resends, so the threads are daemons and this call gives up as soon as a process of
    `group` has exited.
    """
    futures: list = [None] * runs
    errors: list[BaseException] = []
    indexes = iter(range(runs))
    lock = threading.Lock()

    def submit() -> None:
        while True:
            with lock:
                index = next(indexes, None)
            if index is None or errors:
                return
            try:
                futures[index] = tasks[index % len(tasks)].delay()
            except Exception as error:  # noqa: BLE001 - handed to the caller below
                errors.append(error)
                return

    threads = [
        threading.Thread(target=submit, name=f"delay-{number}", daemon=True)
        for number in range(SUBMITTING_THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = Deadline(RESULT_TIMEOUT_SECONDS, f"{runs} .delay() calls")
    for thread in threads:
        while thread.is_alive():
            group.check_running()
            deadline.check()
            thread.join(timeout=0.5)
    if errors:
        raise BenchmarkError(f".delay() failed: {type(errors[0]).__name__}: {errors[0]}")
    return futures


def wait_for_results(futures: list, group: ProcessGroup) -> None:
    """Wait until every run is final, checking every second that the stack still runs."""
    from workers import wait_all  # noqa: PLC0415

    deadline = Deadline(RESULT_TIMEOUT_SECONDS, f"the results of {len(futures)} runs")
    pending = futures
    while pending:
        group.check_running()
        deadline.check()
        _, pending = wait_all(pending, timeout=1.0)
    for future in futures:
        future.result(timeout=RESULT_TIMEOUT_SECONDS)


def submit_and_collect(tasks: Sequence, runs: int, group: ProcessGroup) -> float:
    """Submit `runs` runs and wait for every result; return seconds from first call to last."""
    started = time.perf_counter()
    futures = delay_from_threads(tasks, runs, group)
    wait_for_results(futures, group)
    return time.perf_counter() - started


def measure_throughput(
    config: StackConfig,
    runs: int,
    tasks: Sequence | None = None,
    warmup: int = 50,
    profile_seconds: int | None = None,
) -> EndToEndRun:
    """Time `runs` no-op runs through a fresh stack; peak RSS is read before it stops.

    With `profile_seconds`, py-spy samples the service and the first worker for that
    many seconds from the start of the timed runs. Keep it shorter than the runs take.
    """
    from bench.tasks import noop  # noqa: PLC0415

    tasks = tasks or [noop]
    fresh_redis(config.redis_url)
    config.database.create()
    try:
        with ProcessGroup() as group:
            stack = start_stack(group, config)
            configure_client(config.redis_url)
            submit_and_collect(tasks, warmup, group)
            service_cpu = stack.service.cpu_seconds()
            worker_cpu = sum(worker.cpu_seconds() for worker in stack.workers)
            stats_client = redis.Redis.from_url(config.redis_url)
            stats_client.config_resetstat()
            recordings = []
            if profile_seconds:
                for process in (stack.service, stack.workers[0]):
                    recorder, output = start_recording(process.name, process.pid, profile_seconds)
                    recordings.append((process.name, recorder, output))
            client_cpu = process_cpu_seconds()
            redis_cpu = redis_cpu_seconds(stats_client)
            seconds = submit_and_collect(tasks, runs, group)
            client_cpu = process_cpu_seconds() - client_cpu
            redis_cpu = redis_cpu_seconds(stats_client) - redis_cpu
            redis_calls = command_calls(stats_client)
            stats_client.close()
            profiles = [finish_recording(*recording) for recording in recordings]
            return EndToEndRun(
                runs=runs,
                seconds=seconds,
                service_peak_rss=stack.service.peak_rss_bytes(),
                worker_peak_rss=max(worker.peak_rss_bytes() for worker in stack.workers),
                service_cpu_seconds=stack.service.cpu_seconds() - service_cpu,
                worker_cpu_seconds=sum(worker.cpu_seconds() for worker in stack.workers)
                - worker_cpu,
                client_cpu_seconds=client_cpu,
                redis_cpu_seconds=redis_cpu,
                profiles=profiles,
                redis_calls=redis_calls,
            )
    finally:
        close_client()
        config.database.drop()


def process_cpu_seconds() -> float:
    """User and system CPU time of this process, every thread included."""
    times = os.times()
    return times.user + times.system


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Return Redis's count of calls per command since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): values["calls"]
        for name, values in stats.items()
        if name != "cmdstat_config" and name != "cmdstat_info"
    }


def timed_run(listener: RunningListener, samples: LatencySamples) -> None:
    """Submit one run, wait for its result, and add its two latencies to `samples`."""
    from bench.tasks import noop  # noqa: PLC0415

    called = time.perf_counter()
    future = noop.delay()
    accepted = time.perf_counter()
    future.result(timeout=RESULT_TIMEOUT_SECONDS)
    returned = time.perf_counter()
    samples.to_accepted_ms.append((accepted - called) * 1000)
    samples.to_result_ms.append((returned - called) * 1000)

    # The Running event may be heard a moment after the result on a loaded machine.
    deadline = time.monotonic() + 1.0
    while str(future.run_id) not in listener.heard_at and time.monotonic() < deadline:
        time.sleep(0.001)
    running_heard_at = listener.heard_at.get(str(future.run_id))
    if running_heard_at is None:
        samples.missing_running += 1
    else:
        samples.to_running_ms.append((running_heard_at - called) * 1000)


def measure_latency(
    config: StackConfig, one_at_a_time: int, rate_per_second: float, rate_seconds: float
) -> tuple[LatencySamples, LatencySamples]:
    """Measure runs one at a time, then at a fixed rate; return both sets of samples."""
    fresh_redis(config.redis_url)
    config.database.create()
    try:
        with ProcessGroup() as group, RunningListener(config.redis_url) as listener:
            start_stack(group, config)
            configure_client(config.redis_url)
            warm = LatencySamples()
            for _ in range(20):
                timed_run(listener, warm)

            single = LatencySamples()
            for _ in range(one_at_a_time):
                group.check_running()
                timed_run(listener, single)

            paced = LatencySamples()
            submit_at_rate(listener, paced, rate_per_second, rate_seconds)
            group.check_running()
            return single, paced
    finally:
        close_client()
        config.database.drop()


def submit_at_rate(
    listener: RunningListener, samples: LatencySamples, rate: float, seconds: float
) -> None:
    """Start one timed run every 1/rate seconds for `seconds`, each on a pool thread.

    Sets `samples.completed_per_second`: the runs divided by the time until the last
    result, lower than `rate` when the stack cannot keep up.
    """
    count = int(rate * seconds)
    interval = 1.0 / rate
    started = time.perf_counter()
    with ThreadPoolExecutor(64) as pool:
        pending = []
        for index in range(count):
            delay = started + index * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pending.append(pool.submit(timed_run, listener, samples))
        for item in pending:
            item.result(timeout=RESULT_TIMEOUT_SECONDS)
    samples.completed_per_second = count / (time.perf_counter() - started)


def service_pid(stack: Stack) -> int:
    return stack.service.pid


def stack_config(
    redis_url: str, database: BenchDatabase, workers: int = 1, **settings: str
) -> StackConfig:
    return StackConfig(
        redis_url=redis_url,
        database=database,
        workers=workers,
        settings={f"TASKGATE_{name.upper()}": value for name, value in settings.items()},
    )
