"""Fixtures of the workers tests: a running service on a private prefix, and a configured client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import workers.client
from tests.e2e_helpers import Stack


@pytest.fixture
def stack(redis_url: str, tmp_path) -> Iterator[Stack]:
    """A service process on its own key prefix and SQLite file, and a client pointed at it."""
    yield from _running_stack(
        redis_url, f"sqlite+aiosqlite:///{tmp_path / 'taskgate.db'}", tmp_path
    )


@pytest.fixture
def postgres_stack(redis_url: str, postgres_url: str, tmp_path) -> Iterator[Stack]:
    """The same as `stack`, on a fresh PostgreSQL database."""
    yield from _running_stack(redis_url, postgres_url, tmp_path)


def _running_stack(redis_url: str, database_url: str, tmp_path) -> Iterator[Stack]:
    home = tmp_path / "home"
    home.mkdir()
    built = Stack(
        redis_url=redis_url,
        database_url=database_url,
        home=home,
        overrides={"TG_TEST_OUTPUT": str(home)},
    )
    try:
        built.start_service()
        workers.client.configure(built.settings())
        yield built
    finally:
        built.stop_all()
