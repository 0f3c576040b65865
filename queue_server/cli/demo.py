"""`taskgate demo`: analyse every Python file of a folder with one background task per file.

The demo starts a whole taskgate (Redis, one service, N worker processes), submits
`examples.stdlib_stats.analyse_file` for each file, then `aggregate_stats` over chunks
of the results under a tag concurrency limit, and prints a summary. SQLite in the data
folder keeps the cache between runs, so a second run over the same files is served
from the cache.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from queue_server.cli.config import check_redis_reachable, load_settings
from queue_server.cli.database import upgrade_database
from queue_server.cli.errors import CliError
from queue_server.cli.readiness import wait_until_ready
from queue_server.cli.stack import LocalStack
from queue_server.embedded import free_loopback_port
from queue_server.protocol import TaskRunView
from queue_server.settings import Settings

AGGREGATE_CHUNK_SIZE = 200
AGGREGATE_TAG_LIMIT = 1
# A full tag limit hands a run back for about this many seconds; the production
# default is longer than this demo's whole aggregation step.
DEMO_SLOT_WAIT_SECONDS = "0.5"
# Workers resend a request after this many seconds without a reply. On a loaded
# machine the production default of 10 s makes them resend requests the service is
# still working through, which adds to its backlog.
DEMO_REQUEST_TIMEOUT_SECONDS = "30"
RESULT_TIMEOUT_SECONDS = 60.0
READ_BATCH = 500
SUBMIT_CHUNK = 100
PROGRESS_POLL_SECONDS = 0.25
# A run whose final view is missing from the Redis result cache is read from the
# service: every SERVICE_READ_SECONDS, at most SERVICE_READ_MAX runs at a time.
SERVICE_READ_SECONDS = 30.0
SERVICE_READ_MAX = 100

console = Console()


@dataclass
class DemoInput:
    """The files to analyse and the content hash of each."""

    folder: Path
    paths: list[Path]
    hashes: list[str]


@dataclass
class DemoOutcome:
    """Final views of one demo's runs and the totals the aggregating runs computed."""

    file_views: list[TaskRunView]
    aggregate_views: list[TaskRunView]
    totals: dict[str, int]
    processing_seconds: float


def run_demo(files: str | None, workers: int) -> None:
    """Run the demo end to end and print its summary."""
    started = time.monotonic()
    settings = load_settings()
    demo_input = collect_input(files)
    if settings.redis_url:
        check_redis_reachable(settings.redis_url)
    upgrade_database(settings)

    faults_folder = settings.home_path / "demo" / "faults" / uuid.uuid4().hex
    faults_folder.mkdir(parents=True)
    stack = LocalStack(
        settings=settings,
        log_folder=settings.home_path / "logs" / "demo",
        quiet=True,
        extra_environment=demo_environment(faults_folder),
    )
    with stack:
        redis_url = stack.start_redis()
        stack.spawn("service", ["server"])
        stack.spawn("workers", ["worker", "examples.stdlib_stats", "--processes", str(workers)])
        with console.status(f"starting Redis, the service and {workers} worker process(es)"):
            wait_until_ready(stack, workers=workers)
        client_settings = settings.model_copy(
            update={
                "redis_url": redis_url,
                "request_timeout": float(demo_environment_value("TASKGATE_REQUEST_TIMEOUT")),
            }
        )
        with client_log(settings.home_path / "logs" / "demo" / "client.log"):
            outcome = analyse(client_settings, demo_input)
    print_summary(demo_input, outcome, workers, time.monotonic() - started)
    _remove_markers(faults_folder)


def demo_environment_value(name: str) -> str:
    """Return a setting the demo's processes run with: the environment's, else the demo's."""
    defaults = {"TASKGATE_REQUEST_TIMEOUT": DEMO_REQUEST_TIMEOUT_SECONDS}
    return os.environ.get(name, defaults[name])


@contextmanager
def client_log(path: Path) -> Iterator[None]:
    """Send this process's log records to a file while the progress bars run."""
    root = logging.getLogger()
    terminal_handlers = [handler for handler in root.handlers if _is_terminal(handler)]
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in terminal_handlers:
        root.removeHandler(handler)
    root.addHandler(file_handler)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        for handler in terminal_handlers:
            root.addHandler(handler)


def _is_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def demo_environment(faults_folder: Path) -> dict[str, str]:
    """Return the settings the demo's service and workers run with."""
    from examples.stdlib_stats import FAULTS_FOLDER_VARIABLE  # noqa: PLC0415

    return {
        FAULTS_FOLDER_VARIABLE: str(faults_folder),
        "TASKGATE_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": os.environ.get(
            "TASKGATE_TAG_CONCURRENCY_SLOT_WAIT_SECONDS", DEMO_SLOT_WAIT_SECONDS
        ),
        # The demo needs no operator API; a free port keeps it clear of a running service.
        "TASKGATE_HTTP_PORT": str(free_loopback_port()),
        "TASKGATE_REQUEST_TIMEOUT": demo_environment_value("TASKGATE_REQUEST_TIMEOUT"),
    }


def collect_input(files: str | None) -> DemoInput:
    """Find the Python files to analyse and hash each one."""
    from examples.stdlib_stats import (  # noqa: PLC0415
        content_hash,
        find_python_files,
        standard_library_folder,
    )

    folder = Path(files).expanduser().resolve() if files else standard_library_folder()
    if not folder.is_dir():
        raise CliError(f"--files {files!r} is not a folder; pass a folder of Python files")
    paths = find_python_files(folder)
    if not paths:
        raise CliError(f"no *.py files under {folder}; pass a folder of Python files to --files")
    hashes = []
    for path in paths:
        try:
            hashes.append(content_hash(path.read_bytes()))
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror}; fix its permissions") from None
    return DemoInput(folder=folder, paths=paths, hashes=hashes)


def analyse(settings: Settings, demo_input: DemoInput) -> DemoOutcome:
    """Submit the file runs and the aggregating runs, and wait for all of them."""
    from examples.stdlib_stats import AGGREGATE_TAG, aggregate_stats, analyse_file  # noqa: PLC0415
    from queue_server.cli.limit_store import set_limit  # noqa: PLC0415
    from workers.client import configure  # noqa: PLC0415

    set_limit(settings, AGGREGATE_TAG, AGGREGATE_TAG_LIMIT)
    client = configure(settings)
    try:
        return _analyse_with(client, demo_input, analyse_file, aggregate_stats)
    finally:
        # Close the client's connections before the stack stops Redis under them.
        client.run(lambda: _close_client(client))


async def _close_client(client: Any) -> None:
    await client.waiter.close()
    await client.service.close()
    await client.redis.aclose()


def _analyse_with(
    client: Any, demo_input: DemoInput, analyse_file: Any, aggregate_stats: Any
) -> DemoOutcome:
    processing_started = time.monotonic()
    futures = _submit_in_chunks(client, analyse_file, demo_input)
    final = _wait_with_progress(client, futures, "analysing files")
    file_views = [final[future.run_id] for future in futures]

    results = []
    for future, view in zip(futures, file_views, strict=True):
        if view.state is not None and view.state.type.value == "COMPLETED":
            results.append(future.result(timeout=RESULT_TIMEOUT_SECONDS))
    chunks = [
        results[start : start + AGGREGATE_CHUNK_SIZE]
        for start in range(0, len(results), AGGREGATE_CHUNK_SIZE)
    ]
    aggregate_futures = aggregate_stats.map(chunks, client=client)
    final = _wait_with_progress(
        client, aggregate_futures, f"aggregating (tag limit {AGGREGATE_TAG_LIMIT})"
    )
    aggregate_views = [final[future.run_id] for future in aggregate_futures]
    totals: Counter[str] = Counter()
    for future, view in zip(aggregate_futures, aggregate_views, strict=True):
        if view.state is not None and view.state.type.value == "COMPLETED":
            totals.update(future.result(timeout=RESULT_TIMEOUT_SECONDS))
    return DemoOutcome(
        file_views=file_views,
        aggregate_views=aggregate_views,
        totals=dict(totals),
        processing_seconds=time.monotonic() - processing_started,
    )


def _submit_in_chunks(client: Any, analyse_file: Any, demo_input: DemoInput) -> list[Any]:
    """Create one run per file, SUBMIT_CHUNK at a time, with a progress bar.

    Each chunk waits for the service's replies before the next is sent, so a busy
    service has one chunk of creates in progress and no sender resends them.
    """
    paths = [str(path) for path in demo_input.paths]
    futures: list[Any] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("submitting runs", total=len(paths))
        for start in range(0, len(paths), SUBMIT_CHUNK):
            chunk = slice(start, start + SUBMIT_CHUNK)
            futures += analyse_file.map(paths[chunk], demo_input.hashes[chunk], client=client)
            progress.update(bar, completed=len(futures))
    return futures


def _wait_with_progress(
    client: Any, futures: list[Any], description: str
) -> dict[uuid.UUID, TaskRunView]:
    """Show a progress bar until every future's run is final; return the final views.

    The views come from the Redis result cache, which contains the final view of every
    finished run. Only a run missing from it for a while is read from the service, a
    few at a time. Waiting on the futures one by one instead would ask the service
    about every pending run each time one finishes, which swamps it.
    """
    pending = [future.run_id for future in futures]
    final: dict[uuid.UUID, TaskRunView] = {}
    # NOTE: the limit only guards against a stalled stack; it is not a speed target.
    timeout = 600.0 + len(pending)
    deadline = time.monotonic() + timeout
    next_service_read = time.monotonic() + SERVICE_READ_SECONDS
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(description, total=len(pending))
        while pending:
            final.update(client.run(lambda waiting=pending: _final_in_cache(client, waiting)))
            if time.monotonic() >= next_service_read:
                oldest = [run_id for run_id in pending if run_id not in final][:SERVICE_READ_MAX]
                views = read_views(client, oldest)
                final.update({view.id: view for view in views if _is_final(view)})
                next_service_read = time.monotonic() + SERVICE_READ_SECONDS
            pending = [run_id for run_id in pending if run_id not in final]
            progress.update(bar, completed=len(futures) - len(pending))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise CliError(
                    f"{description}: {len(pending)} runs were not final after {timeout:.0f} s; "
                    "see the service and worker logs under <TASKGATE_HOME>/logs/demo"
                )
            time.sleep(PROGRESS_POLL_SECONDS)
    return final


async def _final_in_cache(client: Any, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, TaskRunView]:
    final: dict[uuid.UUID, TaskRunView] = {}
    for start in range(0, len(run_ids), READ_BATCH):
        batch = run_ids[start : start + READ_BATCH]
        cached = await client.redis.mget([client.keys.result(run_id) for run_id in batch])
        for run_id, raw in zip(batch, cached, strict=True):
            if raw is None:
                continue
            view = TaskRunView.model_validate_json(raw)
            if _is_final(view):
                final[run_id] = view
    return final


def _is_final(view: TaskRunView) -> bool:
    return view.state is not None and view.state.is_final()


def read_views(client: Any, run_ids: list[uuid.UUID]) -> list[TaskRunView]:
    """Read the runs' final views from the service, in the order of `run_ids`."""
    views: list[TaskRunView] = []
    if not run_ids:
        return views
    for start in range(0, len(run_ids), READ_BATCH):
        batch = [str(run_id) for run_id in run_ids[start : start + READ_BATCH]]
        found = client.request("read_runs", {"run_ids": batch})
        views.extend(TaskRunView.model_validate(item) for item in found)
    return views


def state_label(view: TaskRunView) -> str:
    """Return the state a summary counts a run under: its name (Completed, Cached, ...)."""
    if view.state is None:
        return "(no state)"
    return view.state.name or view.state.type.value.title()


def print_summary(demo_input: DemoInput, outcome: DemoOutcome, workers: int, wall: float) -> None:
    """Print the summary table and the totals the aggregating runs computed."""
    file_states = Counter(state_label(view) for view in outcome.file_views)
    aggregate_states = Counter(state_label(view) for view in outcome.aggregate_views)
    retries = sum(max(view.run_count - 1, 0) for view in outcome.file_views)
    cache_hits = file_states.get("Cached", 0)
    run_total = len(outcome.file_views) + len(outcome.aggregate_views)
    per_second = run_total / outcome.processing_seconds if outcome.processing_seconds else 0.0

    summary = Table(title=f"taskgate demo: {demo_input.folder}", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("files", str(len(demo_input.paths)))
    for name, count in sorted(file_states.items()):
        summary.add_row(f"file runs {name}", str(count))
    summary.add_row("retries", str(retries))
    summary.add_row("cache hits", str(cache_hits))
    for name, count in sorted(aggregate_states.items()):
        summary.add_row(f"aggregating runs {name}", str(count))
    summary.add_row("worker processes", str(workers))
    summary.add_row("tasks per second", f"{per_second:.1f}")
    summary.add_row("wall time", f"{wall:.1f} s")
    console.print(summary)

    totals = Table(title="what the files contain", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    for name in ("lines", "functions", "classes", "imports", "syntax_errors", "bytes"):
        totals.add_row(name.replace("_", " "), f"{outcome.totals.get(name, 0):,}")
    console.print(totals)


def _remove_markers(folder: Path) -> None:
    for marker in folder.iterdir():
        marker.unlink(missing_ok=True)
    folder.rmdir()

