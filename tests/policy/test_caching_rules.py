"""Cache retrieval, cache isolation and cache insertion."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from policy.context import PolicySettings
from policy.policies import OrchestrationPolicy
from policy.result import SetStateStatus
from policy.rules import CacheInsertion, CacheIsolation, CacheRetrieval
from policy.runs import TaskRunPolicy
from policy.states import Completed, Pending, Running, StateType
from tests.policy.harness import T0, Bench, task_run

RESULT = {"type": "result", "serializer": "json", "value": 42}


def only(rule) -> OrchestrationPolicy:
    return OrchestrationPolicy(rule.__name__, (rule,))


async def cache_state(bench: Bench, cache_key: str, expiration=None, value=42):
    state = Completed(
        timestamp=T0,
        data={"type": "result", "value": value},
        cache_key=cache_key,
        cache_expiration=expiration,
        task_run_id=uuid4(),
    )
    await bench.cache.insert(cache_key, expiration, state)
    return state


async def test_cache_hit_rejects_into_cached_copy():
    bench = Bench()
    cached = await cache_state(bench, "add-1-2")
    run = task_run()
    bench.place(run, Pending(timestamp=T0))
    token = uuid4()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2", claim_token=token), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.reason == "Retrieved state from cache."
    assert result.state.type is StateType.COMPLETED
    assert result.state.name == "Cached"
    assert result.state.id != cached.id
    assert result.state.data == cached.data
    assert result.state.state_details.task_run_id == run.id
    assert result.state.state_details.claim_token == token
    assert run.state_type is StateType.COMPLETED


async def test_cache_miss_is_accepted():
    bench = Bench()
    await cache_state(bench, "other")
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_expired_cache_entry_is_ignored():
    bench = Bench()
    await cache_state(bench, "add-1-2", expiration=T0 - timedelta(seconds=1))
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_newest_cache_entry_wins():
    bench = Bench()
    await cache_state(bench, "add-1-2", value=1)
    await cache_state(bench, "add-1-2", expiration=T0 + timedelta(hours=1), value=2)
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheRetrieval)
    )

    assert result.state.data == {"type": "result", "value": 2}


async def test_refresh_cache_skips_lookup():
    bench = Bench()
    await cache_state(bench, "add-1-2")
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2", refresh_cache=True), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.name == "Running"


async def test_persisted_completed_skips_lookup():
    bench = Bench()
    await cache_state(bench, "add-1-2")
    run = task_run()
    current = bench.place(run, Completed(timestamp=T0, data=RESULT, cache_key="add-1-2"))

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert result.state.name == "Running"
    assert bench.written(run)[0] is current


async def test_persisted_completed_kept_under_policy():
    bench = Bench()
    await cache_state(bench, "add-1-2")
    run = task_run(is_background=True)
    current = bench.place(run, Completed(timestamp=T0, data=RESULT, cache_key="add-1-2"))

    result = await bench.propose(run, Running(timestamp=T0, cache_key="add-1-2"), actor="service")

    assert result.status is SetStateStatus.REJECT
    assert result.rule == "HandleTaskTerminalStateTransitions"
    assert result.state.id == current.id
    assert bench.written(run) == [current]


async def test_unpersisted_completed_uses_cache():
    bench = Bench()
    await cache_state(bench, "add-1-2")
    run = task_run()
    bench.place(run, Completed(timestamp=T0, data={"type": "unpersisted"}, cache_key="add-1-2"))

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheRetrieval)
    )

    assert result.status is SetStateStatus.REJECT
    assert result.state.name == "Cached"


async def test_running_without_cache_key_skips_lookup():
    bench = Bench()
    run = task_run()

    result = await bench.propose(run, Running(timestamp=T0), only(CacheRetrieval))

    assert result.status is SetStateStatus.ACCEPT


def isolated_run():
    return task_run(empirical_policy=TaskRunPolicy(cache_isolation=True))


async def test_isolation_waits_while_key_is_running():
    bench = Bench(settings=PolicySettings(cache_isolation_wait_seconds=4))
    first = isolated_run()
    bench.place(first, Running(timestamp=T0, cache_key="add-1-2"))
    second = isolated_run()
    bench.place(second, Pending(timestamp=T0))

    result = await bench.propose(
        second, Running(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation)
    )

    assert result.status is SetStateStatus.WAIT
    assert result.delay_seconds == 4
    assert result.rule == "CacheIsolation"


async def test_isolation_ignores_own_running_key():
    bench = Bench()
    run = isolated_run()
    bench.place(run, Running(timestamp=T0, cache_key="add-1-2"))

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_isolation_passes_free_key():
    bench = Bench()
    other = isolated_run()
    bench.place(other, Running(timestamp=T0, cache_key="different"))
    run = isolated_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_isolation_off_by_default():
    bench = Bench()
    other = task_run()
    bench.place(other, Running(timestamp=T0, cache_key="add-1-2"))
    run = task_run()

    result = await bench.propose(
        run, Running(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_isolation_needs_cache_key():
    bench = Bench()
    run = isolated_run()

    result = await bench.propose(run, Running(timestamp=T0), only(CacheIsolation))

    assert result.status is SetStateStatus.ACCEPT


async def test_isolation_ends_when_holder_completes():
    bench = Bench()
    first = isolated_run()
    bench.place(first, Running(timestamp=T0, cache_key="add-1-2"))
    await bench.propose(first, Completed(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation))
    second = isolated_run()

    result = await bench.propose(
        second, Running(timestamp=T0, cache_key="add-1-2"), only(CacheIsolation)
    )

    assert result.status is SetStateStatus.ACCEPT


async def test_completed_state_is_cached():
    bench = Bench()
    run = task_run()
    bench.place(run, Running(timestamp=T0))
    expiration = T0 + timedelta(days=1)

    result = await bench.propose(
        run,
        Completed(timestamp=T0, data=RESULT, cache_key="add-1-2", cache_expiration=expiration),
        only(CacheInsertion),
    )

    assert result.status is SetStateStatus.ACCEPT
    cached = await bench.cache.lookup("add-1-2", T0)
    assert cached.id == result.state.id
    assert bench.cache.entries[0].expiration == expiration


async def test_completed_without_key_is_not_cached():
    bench = Bench()
    run = task_run()

    await bench.propose(run, Completed(timestamp=T0, data=RESULT), only(CacheInsertion))

    assert bench.cache.entries == []


async def test_overlong_cache_key_aborts_before_writing():
    bench = Bench(settings=PolicySettings(max_cache_key_length=10))
    run = task_run()
    current = bench.place(run, Running(timestamp=T0))

    result = await bench.propose(
        run, Completed(timestamp=T0, data=RESULT, cache_key="k" * 11), only(CacheInsertion)
    )

    assert result.status is SetStateStatus.ABORT
    assert "11 characters" in result.reason
    assert "maximum is 10" in result.reason
    assert bench.written(run) == [current]
    assert bench.cache.entries == []


async def test_cache_key_at_limit_is_cached():
    bench = Bench(settings=PolicySettings(max_cache_key_length=10))
    run = task_run()

    result = await bench.propose(
        run, Completed(timestamp=T0, data=RESULT, cache_key="k" * 10), only(CacheInsertion)
    )

    assert result.status is SetStateStatus.ACCEPT
    assert len(bench.cache.entries) == 1
