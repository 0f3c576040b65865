"""SQL storage of the transition service: models, engine, migrations and repositories."""

from queue_server.db.engine import Database
from queue_server.db.migrate import upgrade_database, upgrade_database_sync

__all__ = ["Database", "upgrade_database", "upgrade_database_sync"]
