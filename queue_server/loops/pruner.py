"""The decision pruner: keep the last decisions of each run and forget old transition ids.

A decision is deleted when it is older than ``transition_retention`` seconds and not
among its run's last ``decisions_kept``. A younger decision stays whatever the count,
because a sender may still resend its transition id and must get the same answer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from policy.states import utc_now
from queue_server.db.decisions import prune_decisions
from queue_server.db.engine import Database
from queue_server.errors import StorageFault
from queue_server.loops.periodic import sleep_or_stop
from queue_server.settings import Settings

logger = logging.getLogger(__name__)

# Seconds between pruning passes: pruning is cheap to delay and costly to repeat.
PRUNE_INTERVAL_SECONDS = 300.0


class DecisionPruner:
    """Deletes expired decisions every few minutes."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        interval: float = PRUNE_INTERVAL_SECONDS,
    ) -> None:
        self.database = database
        self.settings = settings
        self.interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        """Prune every `interval` seconds until `stop` is set."""
        logger.info("decision pruner started; interval %.0f s", self.interval)
        while not await sleep_or_stop(stop, self.interval):
            try:
                await self.prune_once()
            except (SQLAlchemyError, OSError, StorageFault) as error:
                logger.warning("decision pruning failed: %s; retrying next pass", error)
        logger.info("decision pruner stopped")

    async def prune_once(self) -> int:
        """Delete the expired decisions; return how many were deleted."""
        forget_before = utc_now() - timedelta(seconds=self.settings.transition_retention)
        async with self.database.write_session() as session:
            deleted = await prune_decisions(
                session, keep=self.settings.decisions_kept, forget_before=forget_before
            )
            await session.commit()
        if deleted:
            logger.info("pruned %d expired decisions", deleted)
        return deleted
