"""Tag concurrency limits, read and changed in SQL through the TransitionService."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from queue_server.cli.sql_access import with_service
from queue_server.settings import Settings

console = Console(width=200)


def set_limit(settings: Settings, tag: str, limit: int) -> None:
    """Create the tag's limit, or change it."""
    with_service(settings, lambda service: service.create_limit(tag, limit))


def create_limit(settings: Settings, tag: str, limit: int) -> None:
    """Create or change the tag's limit and print it."""
    set_limit(settings, tag, limit)
    console.print(f"tag {tag!r}: at most {limit} run(s) in Running at once")


def print_limits(settings: Settings) -> None:
    """Print every tag limit with the runs holding its slots."""
    limits = with_service(settings, lambda service: service.list_limits())
    table = Table(title="tag concurrency limits")
    for column in ("tag", "limit", "slots taken", "holders"):
        table.add_column(column)
    for limit in limits:
        holders = ", ".join(sorted(str(run_id) for run_id in limit.holders)) or "-"
        table.add_row(limit.tag, str(limit.limit), str(len(limit.holders)), holders)
    console.print(table)
    if not limits:
        console.print("no tag concurrency limits")


def remove_limit(settings: Settings, tag: str) -> None:
    """Delete the tag's limit and release its slots."""
    with_service(settings, lambda service: service.delete_limit(tag))
    console.print(f"removed the concurrency limit of tag {tag!r}")


def reset_limit(settings: Settings, tag: str) -> None:
    """Release every slot of the tag's limit."""
    limit = with_service(settings, lambda service: service.reset_limit(tag))
    console.print(f"released every slot of tag {tag!r} (limit {limit.limit})")
