"""`taskgate server`, `taskgate worker` and `taskgate dev`."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import time
from typing import Annotated, Any

import typer

from queue_server.cli.config import check_redis_reachable, load_settings
from queue_server.cli.errors import CliError
from queue_server.cli.stack import LocalStack
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


def run_maybe_async(result: Any) -> Any:
    """Run the result to completion if an entry point returned a coroutine."""
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def use_service_logging(settings: Settings) -> None:
    """Log at TASKGATE_LOG_LEVEL (INFO by default), as a long-running process should."""
    level = settings.log_level.upper()
    if level in logging.getLevelNamesMapping() and not logging.getLogger().isEnabledFor(
        logging.DEBUG
    ):
        logging.getLogger().setLevel(level)


def require_redis_url(settings: Settings, command: str) -> str:
    """Return TASKGATE_REDIS_URL once a PING to it succeeds; fail if it is unset."""
    if not settings.redis_url:
        raise CliError(
            f"TASKGATE_REDIS_URL is not set; `taskgate {command}` needs a shared Redis: set it "
            "(for example redis://127.0.0.1:6379/0) or run `taskgate dev` for an embedded one"
        )
    check_redis_reachable(settings.redis_url)
    return settings.redis_url


def check_task_modules(modules: list[str]) -> None:
    """Import each task module once, so a wrong name fails here in one line."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise CliError(
                f"task module {module!r} not found; check the dotted name and run from the "
                "folder that contains it, or add that folder to PYTHONPATH"
            )
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any import-time failure is the user's to fix
            raise CliError(
                f"task module {module!r} failed to import: {type(error).__name__}: {error}; "
                "fix the module so `python -c 'import "
                f"{module}'` works"
            ) from None


def server(
    http_port: Annotated[
        int | None, typer.Option(help="Port of the operator HTTP API (TASKGATE_HTTP_PORT).")
    ] = None,
) -> None:
    """Run the transition service: the request loop, the background loops and the HTTP API."""
    settings = load_settings(http_port=http_port)
    require_redis_url(settings, "server")
    use_service_logging(settings)
    from queue_server.app import serve  # noqa: PLC0415

    run_maybe_async(serve(settings))


def worker(
    modules: Annotated[list[str], typer.Argument(help="Modules that define the tasks to serve.")],
    processes: Annotated[
        int, typer.Option("--processes", "-p", min=1, help="Worker processes to start.")
    ] = 1,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Runs each process executes at once (TASKGATE_WORKER_CONCURRENCY)."
        ),
    ] = None,
    task_keys: Annotated[
        list[str] | None,
        typer.Option("--task-key", "-k", help="Serve only this task key; repeat for several."),
    ] = None,
) -> None:
    """Run worker processes that execute the tasks defined in MODULES."""
    settings = load_settings(worker_concurrency=concurrency)
    require_redis_url(settings, "worker")
    check_task_modules(modules)
    check_task_keys(modules, task_keys)
    use_service_logging(settings)
    if processes == 1:
        from workers.runtime import run_worker  # noqa: PLC0415

        run_maybe_async(
            run_worker(
                modules,
                concurrency=settings.worker_concurrency,
                task_keys=task_keys or None,
                settings=settings,
            )
        )
        return
    from workers.supervisor import run_supervisor  # noqa: PLC0415

    run_maybe_async(
        run_supervisor(
            modules,
            processes=processes,
            concurrency=settings.worker_concurrency,
            task_keys=task_keys or None,
            settings=settings,
        )
    )


def check_task_keys(modules: list[str], task_keys: list[str] | None) -> None:
    """Fail in one line when the modules define no task or not a requested task key."""
    from workers.registry import REGISTRY  # noqa: PLC0415
    from workers.runtime import select_task_keys  # noqa: PLC0415

    try:
        select_task_keys(modules, task_keys, REGISTRY)
    except (ValueError, ImportError) as error:
        fix = "pass --task-key values the modules define" if task_keys else "fix the modules"
        raise CliError(f"{error}; {fix}") from None


def dev(
    modules: Annotated[
        list[str] | None,
        typer.Argument(help="Modules that define the tasks to serve (default: the demo tasks)."),
    ] = None,
    processes: Annotated[
        int, typer.Option("--processes", "-p", min=1, help="Worker processes to start.")
    ] = 1,
) -> None:
    """Run Redis (embedded unless TASKGATE_REDIS_URL is set), SQL, one service and workers.

    Ctrl-C stops the workers, the service and the embedded Redis, in that order.
    """
    settings = load_settings()
    task_modules = modules or ["examples.stdlib_stats"]
    check_task_modules(task_modules)
    check_task_keys(task_modules, None)
    if settings.redis_url:
        check_redis_reachable(settings.redis_url)
    use_service_logging(settings)

    from queue_server.cli.database import upgrade_database  # noqa: PLC0415
    from queue_server.cli.readiness import wait_until_ready  # noqa: PLC0415

    upgrade_database(settings)
    stop_requested = _install_stop_handlers()
    with LocalStack(settings=settings, log_folder=settings.home_path / "logs") as stack:
        redis_url = stack.start_redis()
        stack.spawn("service", ["server"])
        stack.spawn("workers", ["worker", *task_modules, "--processes", str(processes)])
        wait_until_ready(stack, workers=processes, stop_requested=stop_requested)
        if stop_requested:
            typer.echo("stopping before the stack was ready...")
            return
        typer.echo(
            f"taskgate dev is ready: Redis {_shown(redis_url)}, database "
            f"{_shown(settings.resolved_database_url())}, {processes} worker process(es) "
            f"serving {', '.join(task_modules)}. Press Ctrl-C to stop."
        )
        _wait_for_stop(stack, stop_requested)
        typer.echo("stopping workers, service and Redis...")
    typer.echo("taskgate dev stopped.")


def _shown(url: str) -> str:
    from queue_server.cli.config import masked  # noqa: PLC0415

    return masked(url)


def _install_stop_handlers() -> list[int]:
    """Record SIGINT and SIGTERM instead of raising, so the stack stops in order."""
    received: list[int] = []

    def record(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, record)
    signal.signal(signal.SIGTERM, record)
    return received


def _wait_for_stop(stack: LocalStack, stop_requested: list[int]) -> None:
    while not stop_requested:
        exited = stack.exited_child()
        if exited is not None:
            raise CliError(
                f"{exited.name} (pid {exited.pid}) exited with code {exited.process.returncode}; "
                "stopped the rest; see its output above"
            )
        time.sleep(POLL_SECONDS)
    logger.info("received %s", signal.Signals(stop_requested[0]).name)
