"""State builders and models: validation where states are built, none on assignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pendulum
import pytest
from pydantic import ValidationError

from policy.states import Pending, Running, Scheduled, State, StateDetails, StateType
from tests.policy.harness import T0


def test_naive_scheduled_time_is_rejected():
    with pytest.raises(ValidationError, match="has no timezone"):
        Scheduled(datetime(2026, 1, 1, 12, 0))


def test_aware_times_become_pendulum_utc():
    berlin = timezone(timedelta(hours=1))
    local = datetime(2026, 1, 1, 13, 0, tzinfo=berlin)

    state = Scheduled(local, timestamp=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    assert state.state_details.scheduled_time == T0
    assert isinstance(state.state_details.scheduled_time, pendulum.DateTime)
    assert state.state_details.scheduled_time.tzinfo is pendulum.UTC
    assert isinstance(state.timestamp, pendulum.DateTime)
    assert state.timestamp.tzinfo is pendulum.UTC


def test_pendulum_utc_time_is_kept():
    state = Running(timestamp=T0)

    assert state.timestamp is T0


def test_builder_fills_given_details_in_place():
    details = StateDetails(deferred=True)
    claimed = uuid4()

    state = Pending(state_details=details, claimed_state_id=str(claimed))

    assert state.state_details is details
    assert details.claimed_state_id == claimed
    assert isinstance(details.claimed_state_id, UUID)
    assert details.deferred is True


def test_builder_validates_given_details():
    with pytest.raises(ValidationError):
        Pending(state_details=StateDetails(), claimed_state_id="not a uuid")


def test_builder_validates_new_details():
    with pytest.raises(ValidationError):
        Running(claim_token="not a uuid")


def test_assignment_is_not_validated():
    # The engine assigns values taken from validated states, so assignments are stored
    # as given. Input is validated where states are built.
    state = Running(timestamp=T0)

    state.state_details.task_parameters_id = "kept as given"
    state.name = "Renamed"

    assert state.state_details.task_parameters_id == "kept as given"
    assert state.name == "Renamed"
    assert "name" in state.model_fields_set


def test_state_type_hash_matches_value():
    for state_type in StateType:
        assert hash(state_type) == hash(state_type.value)
        assert state_type in {state_type.value}
    assert StateType("RUNNING") is StateType.RUNNING


def test_scheduled_time_defaults_to_timestamp():
    state = State(type=StateType.SCHEDULED, timestamp=T0)

    assert state.name == "Scheduled"
    assert state.state_details.scheduled_time == T0
