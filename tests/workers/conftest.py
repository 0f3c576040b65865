"""Fixtures of the workers tests: a running service on a private prefix, and a configured client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import workers.client
from tests.e2e_helpers import Stack


@pytest.fixture
def stack(redis_url: str, tmp_path) -> Iterator[Stack]:
    """A service process on its own key prefix and SQLite file, and a client pointed at it."""
    home = tmp_path / "home"
    home.mkdir()
    built = Stack(
        redis_url=redis_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'taskgate.db'}",
        home=home,
        overrides={"TG_TEST_OUTPUT": str(home)},
    )
    try:
        built.start_service()
        workers.client.configure(built.settings())
        yield built
    finally:
        built.stop_all()
