"""Futures of background task runs, and helpers that wait for many at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from uuid import UUID

from policy.states import State
from queue_server.protocol import TaskRunView
from workers.client import TaskgateClient, get_client
from workers.errors import TaskTimeout
from workers.results import is_unpersisted, value_of


class TaskFuture:
    """The future of one background task run, usable from sync and async code.

    Build one from a run id in any process with ``TaskFuture(run_id)``. A future that
    `.delay()` made for a task with ``serializer="pickle"`` unpickles its result; a rebuilt
    one does so only with ``allow_pickle=True``, because unpickling runs code.
    """

    def __init__(
        self,
        run_id: UUID | str,
        *,
        task_key: str | None = None,
        allow_pickle: bool = False,
        client: TaskgateClient | None = None,
    ) -> None:
        self.run_id = run_id if isinstance(run_id, UUID) else UUID(str(run_id))
        self.task_key = task_key
        self.allow_pickle = allow_pickle
        self._client = client
        self._final: TaskRunView | None = None

    def __repr__(self) -> str:
        return f"TaskFuture(run_id={str(self.run_id)!r}, task_key={self.task_key!r})"

    @property
    def client(self) -> TaskgateClient:
        if self._client is None:
            self._client = get_client()
        return self._client

    @property
    def state(self) -> State | None:
        """The run's current state, read from the service now."""
        if self._final is not None:
            return self._final.state
        view = self.client.run(lambda: self.client.waiter.read(self.run_id))
        if view.state is not None and view.state.is_final():
            self._final = view
        return view.state

    def done(self) -> bool:
        """Tell whether the run has reached a final state."""
        state = self.state
        return state is not None and state.is_final()

    def wait(self, timeout: float | None = None) -> State | None:
        """Wait until the run is final or `timeout` seconds passed; return its state then."""
        final = self.client.run(lambda: self._await_final(timeout))
        return final.state if final is not None else self.state

    def result(self, timeout: float | None = None) -> Any:
        """Return the run's value; re-raise its failure; raise TaskTimeout after `timeout` s."""
        return self.client.run(lambda: self._result(timeout))

    async def aresult(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Await the run's value from any event loop; same rules as `result`."""
        return await self.client.run_async(lambda: self._result(timeout))

    async def _await_final(self, limit: float | None) -> TaskRunView | None:
        if self._final is None:
            found = await self.client.waiter.wait([self.run_id], timeout=limit)
            self._final = found.get(self.run_id)
        return self._final

    async def _result(self, limit: float | None) -> Any:
        started = time.monotonic()
        final = await self._await_final(limit)
        if final is None or final.state is None:
            raise TaskTimeout(self.run_id, limit or 0.0)
        state = final.state
        if is_unpersisted(state):
            remaining = None if limit is None else max(0.0, limit - (time.monotonic() - started))
            state = await self._cached_value_state(state, remaining)
        return value_of(state, allow_pickle=self.allow_pickle)

    async def _cached_value_state(self, state: State, limit: float | None) -> State:
        """Read the value of an unpersisted result from the Redis result cache.

        The worker writes the value right after its Completed state is accepted, so it
        may arrive a moment after the state. This waits up to one request timeout for it.
        """
        client = self.client
        limit = client.settings.request_timeout if limit is None else limit
        deadline = time.monotonic() + limit
        while True:
            raw = await client.redis.get(client.keys.result(self.run_id))
            if raw is not None:
                view = TaskRunView.model_validate_json(raw)
                if view.state is not None and not is_unpersisted(view.state):
                    return view.state
            if time.monotonic() >= deadline:
                return state
            await asyncio.sleep(min(0.05, limit))


class DoneAndPending(NamedTuple):
    done: list[TaskFuture]
    pending: list[TaskFuture]


def wait_all(futures: Iterable[TaskFuture], timeout: float | None = None) -> DoneAndPending:
    """Wait until every future's run is final or `timeout` s passed; split them by that."""
    futures = list(futures)
    if not futures:
        return DoneAndPending([], [])
    client = futures[0].client
    return client.run(lambda: await_all(futures, timeout))


async def await_all(
    futures: Iterable[TaskFuture],
    timeout: float | None = None,  # noqa: ASYNC109
) -> DoneAndPending:
    """Await, on the client loop, what `wait_all` waits for."""
    futures = list(futures)
    if not futures:
        return DoneAndPending([], [])
    client = futures[0].client
    waiting = [future for future in futures if future._final is None]
    if waiting:
        found = await client.waiter.wait([future.run_id for future in waiting], timeout=timeout)
        for future in waiting:
            future._final = found.get(future.run_id)
    done = [future for future in futures if future._final is not None]
    pending = [future for future in futures if future._final is None]
    return DoneAndPending(done, pending)


def as_completed(
    futures: Iterable[TaskFuture], timeout: float | None = None
) -> Iterator[TaskFuture]:
    """Yield the futures as their runs end; raise TaskTimeout for the first left after `timeout`."""
    pending = {future.run_id: future for future in futures}
    if not pending:
        return
    client = next(iter(pending.values())).client
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        found = client.run(
            lambda r=remaining: client.waiter.wait(list(pending), timeout=r, first=True)
        )
        if not found:
            raise TaskTimeout(next(iter(pending)), timeout or 0.0)
        for run_id, view in found.items():
            future = pending.pop(run_id)
            future._final = view
            yield future
