"""The `taskgate` command line; `app` is the console script's entry point."""

from queue_server.cli.app import app

__all__ = ["app"]
