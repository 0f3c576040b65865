"""The decision pruner: keep the last decisions of each run and forget old transition ids.

The service deletes a decision when it is older than ``transition_retention`` seconds
and not among its run's last ``decisions_kept``. A younger decision stays whatever the
count, because a sender may still resend its transition id and must get the same reply.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from queue_server.errors import StorageFault
from queue_server.loops.periodic import sleep_or_stop

logger = logging.getLogger(__name__)

# Seconds between pruning passes: pruning is cheap to delay and costly to repeat.
PRUNE_INTERVAL_SECONDS = 300.0


class DecisionPruning(Protocol):
    """The part of TransitionService the pruner calls."""

    async def prune_decisions(self) -> int: ...


class DecisionPruner:
    """Asks the service to delete expired decisions every few minutes."""

    def __init__(self, service: DecisionPruning, interval: float = PRUNE_INTERVAL_SECONDS) -> None:
        self.service = service
        self.interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        """Prune every `interval` seconds until `stop` is set."""
        logger.info("decision pruner started; interval %.0f s", self.interval)
        while not await sleep_or_stop(stop, self.interval):
            try:
                deleted = await self.service.prune_decisions()
            except StorageFault as error:
                logger.warning("decision pruning failed: %s; retrying next pass", error)
                continue
            if deleted:
                logger.info("pruned %d expired decisions", deleted)
        logger.info("decision pruner stopped")
