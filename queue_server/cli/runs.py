"""`taskgate cancel`: cancel one task run through the service."""

from __future__ import annotations

from typing import Annotated

import typer

from queue_server.cli.config import load_settings


def cancel(run_id: Annotated[str, typer.Argument(help="Id of the task run to cancel.")]) -> None:
    """Cancel a task run: a queued run ends Cancelled, a running one moves to Cancelling."""
    from queue_server.cli.run_reads import cancel_run  # noqa: PLC0415

    cancel_run(load_settings(), run_id)
