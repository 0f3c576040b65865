"""Result caching by cache key: reuse, isolation while running, and insertion."""

from __future__ import annotations

from policy.context import TaskOrchestrationContext
from policy.rule import ALL, BaseOrchestrationRule, states
from policy.states import State, StateType


class CacheRetrieval(BaseOrchestrationRule):
    """Reject Running into a Cached copy of a completed state stored under the same cache key.

    The newest cache entry whose expiration is unset or still ahead wins, whichever run
    wrote it. A proposal with `refresh_cache` skips the look-up, and so does a run that
    is Completed with a persisted result, because that result is kept (by
    HandleTaskTerminalStateTransitions) rather than replaced by a Cached copy. The copy
    keeps the proposal's claim token, so the worker that proposed Running may act on
    the result.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        details = proposed_state.state_details
        if not details.cache_key or details.refresh_cache:
            return
        current = initial_state
        if current is not None and current.is_completed() and current.has_persisted_result():
            return

        cached = await context.cache.lookup(details.cache_key, context.clock.now())
        if cached is None:
            return

        cached_copy = cached.fresh_copy(now=context.clock.now(), name="Cached")
        cached_copy.state_details.claim_token = details.claim_token
        cached_copy.state_details.claimed_state_id = None
        cached_copy.state_details.claimed_state_name = None
        cached_copy.state_details.transition_id = None
        await self.reject_transition(cached_copy, "Retrieved state from cache.")


class CacheIsolation(BaseOrchestrationRule):
    """Hand a run back while another run holds its cache key in Running.

    Only for runs whose task asked for cache isolation: the second run waits instead of
    computing the same result again, then finds the first run's Completed state in the
    cache. The worker answers the WAIT by handing the run back to its queue.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.RUNNING)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        cache_key = proposed_state.state_details.cache_key
        if not context.run.empirical_policy.cache_isolation or not cache_key:
            return

        if await context.cache.is_held_running(cache_key, other_than=context.run.id):
            await self.delay_transition(
                context.settings.cache_isolation_wait_seconds,
                "Another run is computing the result of this cache key.",
            )


class CacheInsertion(BaseOrchestrationRule):
    """Store a validated Completed state under its cache key.

    A cache key longer than the configured maximum is aborted before anything is
    written, so a run never completes with a key the cache would not accept.
    """

    FROM_STATES = ALL
    TO_STATES = states(StateType.COMPLETED)

    async def before_transition(
        self,
        initial_state: State | None,
        proposed_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        cache_key = proposed_state.state_details.cache_key
        maximum = context.settings.max_cache_key_length
        if cache_key and len(cache_key) > maximum:
            await self.abort_transition(
                f"The cache key is {len(cache_key)} characters long; the maximum is {maximum}. "
                "Use a shorter cache key, for example a hash of the inputs."
            )

    async def after_transition(
        self,
        initial_state: State | None,
        validated_state: State | None,
        context: TaskOrchestrationContext,
    ) -> None:
        details = validated_state.state_details
        if details.cache_key:
            await context.cache.insert(details.cache_key, details.cache_expiration, validated_state)
