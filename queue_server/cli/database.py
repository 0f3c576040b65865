"""`taskgate db upgrade`: bring the SQL schema to the newest migration."""

from __future__ import annotations

import logging

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from queue_server.cli.config import load_settings
from queue_server.cli.errors import CliError
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

app = typer.Typer(help="Manage the SQL schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Migration revision to upgrade to."),
) -> None:
    """Apply every migration up to REVISION (default: the newest) to TASKGATE_DATABASE_URL."""
    settings = load_settings()
    upgrade_database(settings, revision)
    typer.echo(f"database {shown_database_url(settings)} is at revision {revision}")


def shown_database_url(settings: Settings) -> str:
    """Return the database URL with its password hidden."""
    return make_url(settings.resolved_database_url()).render_as_string(hide_password=True)


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Run the Alembic migrations on the settings' database, creating the SQLite folder."""
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        settings.home_path.mkdir(parents=True, exist_ok=True)
    try:
        from queue_server.db.migrate import upgrade_database_sync  # noqa: PLC0415

        upgrade_database_sync(url, revision)
    except (OperationalError, DBAPIError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise CliError(
            f"cannot migrate the database at {shown_database_url(settings)} ({reason}); "
            "check that it runs and that TASKGATE_DATABASE_URL is right"
        ) from None
