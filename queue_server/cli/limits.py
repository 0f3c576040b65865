"""`taskgate concurrency-limit`: tag concurrency limits, kept in SQL."""

from __future__ import annotations

from typing import Annotated

import typer

from queue_server.cli.config import load_settings

app = typer.Typer(
    help="Create, list, remove and reset tag concurrency limits.", no_args_is_help=True
)


@app.command("create")
def create(
    tag: Annotated[str, typer.Argument(help="Tag whose runs share the limit.")],
    limit: Annotated[
        int, typer.Argument(min=0, help="Runs with this tag allowed in Running at once.")
    ],
) -> None:
    """Create a tag concurrency limit, or change the limit of an existing one."""
    from queue_server.cli.limit_store import create_limit  # noqa: PLC0415

    create_limit(load_settings(), tag, limit)


@app.command("ls")
def list_limits() -> None:
    """List every tag concurrency limit with the runs holding its slots."""
    from queue_server.cli.limit_store import print_limits  # noqa: PLC0415

    print_limits(load_settings())


@app.command("rm")
def remove(tag: Annotated[str, typer.Argument(help="Tag of the limit to remove.")]) -> None:
    """Remove a tag concurrency limit; runs with the tag are no longer limited."""
    from queue_server.cli.limit_store import remove_limit  # noqa: PLC0415

    remove_limit(load_settings(), tag)


@app.command("reset")
def reset(tag: Annotated[str, typer.Argument(help="Tag of the limit to reset.")]) -> None:
    """Release every slot of a tag concurrency limit, keeping the limit itself."""
    from queue_server.cli.limit_store import reset_limit  # noqa: PLC0415

    reset_limit(load_settings(), tag)
