"""The task registry: task keys mapped to their tasks, filled by `@task` at import time."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.task import Task

logger = logging.getLogger(__name__)


class DuplicateTaskKey(ValueError):
    """Two different functions were registered under one task key."""


class TaskRegistry:
    """Maps task keys to tasks; a worker serves the tasks registered here."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> None:
        """Add a task; re-registering the same function (a module reloaded) replaces it."""
        existing = self._tasks.get(task.task_key)
        if existing is not None and _origin(existing) != _origin(task):
            raise DuplicateTaskKey(
                f"task key {task.task_key!r} is already used by {_origin(existing)}; "
                f"give {_origin(task)} another task_key"
            )
        self._tasks[task.task_key] = task

    def get(self, task_key: str) -> Task | None:
        return self._tasks.get(task_key)

    def keys(self) -> list[str]:
        return sorted(self._tasks)

    def keys_of_modules(self, modules: Iterable[str]) -> list[str]:
        """Return the task keys of the tasks whose functions are defined in these modules."""
        wanted = set(modules)
        return sorted(key for key, task in self._tasks.items() if task.module in wanted)

    def __contains__(self, task_key: object) -> bool:
        return task_key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def _origin(task: Task) -> str:
    function = task.fn
    return f"{function.__module__}.{function.__qualname__}"


REGISTRY = TaskRegistry()


def load_modules(modules: Iterable[str], registry: TaskRegistry = REGISTRY) -> list[str]:
    """Import the modules so their `@task`s register; return the task keys defined in them.

    Raise ImportError naming a module that cannot be imported.
    """
    names = list(modules)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(f"cannot import task module {name!r}: {error}") from error
    keys = registry.keys_of_modules(names)
    logger.debug("imported %s: task keys %s", ", ".join(names), keys)
    return keys
