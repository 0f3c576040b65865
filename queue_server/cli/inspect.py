"""`taskgate inspect`: tables of queues, workers, runs and one run's state timeline."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from queue_server.cli.config import load_settings
from queue_server.cli.connections import redis_client, resolve_redis_url
from queue_server.cli.errors import CliError
from queue_server.cli.redis_reads import read_queues, read_workers
from queue_server.keys import Keys

app = typer.Typer(help="Show queues, workers and runs.", no_args_is_help=True)
console = Console(width=200)


@app.command("queues")
def queues() -> None:
    """Show each task key's queue: runs due now, runs due later and workers serving it."""
    settings = load_settings()
    url = resolve_redis_url(settings)
    keys = Keys(settings.key_prefix)
    depths = asyncio.run(_with_client(url, lambda client: read_queues(client, keys)))
    table = Table(title="queues")
    for column in ("task key", "waiting (due now)", "scheduled (due later)", "total", "workers"):
        table.add_column(column, justify="left" if column == "task key" else "right")
    for depth in depths:
        workers = str(depth.workers) if depth.workers else "none"
        counts = (str(depth.due_now), str(depth.due_later), str(depth.total))
        table.add_row(depth.task_key, *counts, workers)
    console.print(table)
    if not depths:
        console.print("no queued runs")


@app.command("workers")
def workers(
    host: Annotated[
        str | None,
        typer.Option(help="Show only workers on this host; exit 1 if it has none (health checks)."),
    ] = None,
) -> None:
    """Show every worker process with a live heartbeat."""
    settings = load_settings()
    url = resolve_redis_url(settings)
    keys = Keys(settings.key_prefix)
    beats = asyncio.run(_with_client(url, lambda client: read_workers(client, keys)))
    if host is not None:
        beats = [beat for beat in beats if beat.host == host]
        if not beats:
            raise CliError(f"no live worker heartbeat from host {host!r}; is the worker running?")
    table = Table(title="workers")
    for column in ("worker id", "host", "pid", "runs held", "task keys", "last beat", "expires in"):
        table.add_column(column)
    for beat in beats:
        table.add_row(
            beat.worker_id,
            beat.host,
            str(beat.pid or "?"),
            str(beat.runs),
            ", ".join(beat.task_keys) or "-",
            beat.beat_at,
            f"{beat.seconds_left:.1f} s",
        )
    console.print(table)
    if not beats:
        console.print("no live workers")


@app.command("runs")
def runs(
    task_key: Annotated[str | None, typer.Option(help="Show only runs of this task key.")] = None,
    state: Annotated[
        str | None, typer.Option(help="Show only runs in this state type (COMPLETED, FAILED, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent runs to show.")] = 50,
) -> None:
    """Show the most recent task runs with their current state."""
    from queue_server.cli.run_reads import print_runs  # noqa: PLC0415

    print_runs(console, load_settings(), task_key=task_key, state=state, limit=limit)


@app.command("run")
def run(run_id: Annotated[str, typer.Argument(help="Id of the task run.")]) -> None:
    """Show one run: its state timeline and every decision with its status, rule and reason."""
    from queue_server.cli.run_reads import print_run  # noqa: PLC0415

    print_run(console, load_settings(), run_id)


async def _with_client(url: str, read: Any) -> Any:
    client = redis_client(url)
    try:
        return await read(client)
    finally:
        await client.aclose()
