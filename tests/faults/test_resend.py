"""A sender waiting on a stalled service does not flood it with copies of its requests.

A service working through a backlog longer than the request timeout has not yet read
the requests it is late on. Resending each of them once per timeout would fill the
stream with copies and only lengthen the backlog, so a sender resends only a request
that no replica can still answer. Here the service is frozen with SIGSTOP while a
client with a short request timeout submits runs; the client times out many times, and
the stream must still hold exactly one entry per request.
"""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from tests.faults import tasks
from tests.faults.harness import Stack, wait_until
from workers import TaskFuture

pytestmark = pytest.mark.faults

RUNS = 20
TIMEOUTS_PER_REQUEST = 3


def test_stalled_service_gets_no_copies(stack: Stack, execution_log, caplog) -> None:
    service = stack.start_service()
    client = stack.client(request_timeout=0.5)
    caplog.set_level(logging.DEBUG, logger="queue_server.transport_client")
    requests_key = f"{stack.key_prefix}:requests"
    with stack.redis() as connection:
        length_before = connection.xlen(requests_key)

    futures: list[TaskFuture] = []
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            futures.extend(
                tasks.takes_one_argument.map(
                    [str(execution_log)] * RUNS,
                    [f"r{index}" for index in range(RUNS)],
                    client=client,
                )
            )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    service.signal(signal.SIGSTOP)
    try:
        submitter = threading.Thread(target=submit, name="submitter", daemon=True)
        submitter.start()

        def waited_again() -> bool:
            notes = [
                record
                for record in caplog.records
                if "still queued or held by a replica" in record.getMessage()
            ]
            return len(notes) >= RUNS * TIMEOUTS_PER_REQUEST

        wait_until(waited_again, 120, "the client to time out several times per request")
    finally:
        service.signal(signal.SIGCONT)

    submitter.join(timeout=120)
    assert not submitter.is_alive()
    assert failures == []
    assert len(futures) == RUNS
    with stack.redis() as connection:
        assert connection.xlen(requests_key) == length_before + RUNS
    resent = [record for record in caplog.records if "sending it again" in record.getMessage()]
    assert resent == []
    assert stack.sql("SELECT count(*) FROM task_runs")[0][0] == RUNS
