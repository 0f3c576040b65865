"""Errors the orchestration engine raises or lets through."""

from __future__ import annotations


class StorageFault(Exception):
    """A failure of the storage layer that must roll back the whole batch.

    The service raises this (or a subclass) from its protocol implementations for a
    lost connection, a deadlock or a serialization failure. The engine never turns it
    into an ABORT: it propagates out of `orchestrate` untouched, so the service can
    roll back every transition of the batch and let the senders resend.
    """


class OrchestrationError(Exception):
    """A rule used the engine wrongly, for example by rejecting after validation."""
