"""Run the `taskgate` command as `python -m queue_server.cli`."""

from queue_server.cli.app import app

app()
