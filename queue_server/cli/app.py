"""The `taskgate` command: one Typer app with a subcommand per job."""

from __future__ import annotations

import logging
from typing import Any

import typer

from queue_server.cli import database, inspect, limits, processes, runs
from queue_server.cli.errors import CliError, exit_with


class TaskgateApp(typer.Typer):
    """A Typer app that reports a CliError as one line on stderr, never a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CliError as error:
            exit_with(error)
        except KeyboardInterrupt:
            exit_with(CliError("interrupted", exit_code=130))


app = TaskgateApp(
    name="taskgate",
    help="taskgate: a background-task queue whose every state change passes a server-side policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def configure_logging(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    """Set up logging: warnings only for operator commands, unless -v or TASKGATE_LOG_LEVEL.

    The long-running commands (server, worker, dev) raise the level to
    TASKGATE_LOG_LEVEL (INFO by default) themselves.
    """
    import os  # noqa: PLC0415

    level = "DEBUG" if verbose else os.environ.get("TASKGATE_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "WARNING",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.command()(processes.server)
app.command()(processes.worker)
app.command()(processes.dev)
app.command()(runs.cancel)
app.add_typer(inspect.app, name="inspect")
app.add_typer(limits.app, name="concurrency-limit")
app.add_typer(database.app, name="db")


@app.command()
def demo(
    files: str = typer.Option(
        None, "--files", help="Folder of Python files to analyse (default: the standard library)."
    ),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Worker processes to start."),
) -> None:
    """Analyse every Python file of a folder with one background task per file."""
    from queue_server.cli.demo import run_demo  # noqa: PLC0415

    run_demo(files=files, workers=workers)
